"""The demo LLM's parts that run without a server: the generator and the vLLM protocol stand-in."""

from __future__ import annotations

import sys

from gpulens.sim import vllm_protocol
from gpulens.sim.modelserver import VOCAB, CharNet, parse_models


def test_the_generator_is_deterministic_and_speaks_its_vocabulary() -> None:
    a = "".join(CharNet().generate("hello", 12))
    assert a == "".join(CharNet().generate("hello", 12)) and len(a) == 12 and set(a) <= set(VOCAB)
    assert [(m.name, m.kind) for m in parse_models("chat=llm")] == [("chat", "llm")]


def test_the_stand_in_gives_kserve_the_vllm_names_it_imports() -> None:
    if "vllm" in sys.modules and not vllm_protocol.install():
        return  # a real vLLM is present: KServe uses it
    vllm_protocol.install()
    from kserve.protocol.rest.openai import OpenAIGenerativeModel  # imports every name the stand-in provides
    from kserve.protocol.rest.openai.types import CompletionChunk, CompletionChunkChoice, CompletionRequest

    assert OpenAIGenerativeModel is not None
    request = CompletionRequest.model_validate({"model": "m", "prompt": "hi", "stream": True,
                                                "stream_options": {"include_usage": True}, "top_p": 0.9})
    assert request.stream and request.stream_options is not None and request.stream_options.include_usage
    chunk = CompletionChunk(id="c", created=1, model="m", choices=[CompletionChunkChoice(index=0, text="a")])
    assert '"object":"text_completion"' in chunk.model_dump_json()
