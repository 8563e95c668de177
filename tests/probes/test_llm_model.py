"""The demo LLM's parts that run without a server: the generator and the vLLM protocol stand-in."""

from __future__ import annotations

import subprocess
import sys

from gpulens.sim.modelserver import VOCAB, CharNet, parse_models


def test_the_generator_is_deterministic_and_speaks_its_vocabulary() -> None:
    a = "".join(CharNet().generate("hello", 12))
    assert a == "".join(CharNet().generate("hello", 12)) and len(a) == 12 and set(a) <= set(VOCAB)
    assert [(m.name, m.kind) for m in parse_models("chat=llm")] == [("chat", "llm")]


def test_the_stand_in_gives_kserve_the_vllm_names_it_imports() -> None:
    # in a child process: the stand-in registers modules named vllm.*, which must not leak into other tests
    code = """
from gpulens.sim import vllm_protocol
vllm_protocol.install()
from kserve.protocol.rest.openai import OpenAIGenerativeModel  # imports every name the stand-in provides
from kserve.protocol.rest.openai.types import CompletionChunk, CompletionChunkChoice, CompletionRequest
request = CompletionRequest.model_validate({"model": "m", "prompt": "hi", "stream": True,
                                            "stream_options": {"include_usage": True}, "top_p": 0.9})
assert request.stream and request.stream_options.include_usage
chunk = CompletionChunk(id="c", created=1, model="m", choices=[CompletionChunkChoice(index=0, text="a")])
print(OpenAIGenerativeModel.__name__, chunk.model_dump_json())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OpenAIGenerativeModel ") and '"object":"text_completion"' in out.stdout
