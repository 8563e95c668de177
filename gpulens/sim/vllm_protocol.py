"""A stand-in for vLLM's OpenAI protocol module, so KServe's real OpenAI endpoints import without vLLM.

KServe 0.21 serves `/openai/v1/completions` and `/openai/v1/chat/completions` (its `OpenAIEndpoints`,
`OpenAIDataPlane`, StreamingResponse for SSE), but its `kserve.protocol.rest.openai.types` re-exports
vLLM's pydantic request/response models, and vLLM cannot be installed here (CUDA wheels, KServe's
`llm` extra). `install()` puts minimal pydantic models with vLLM's module paths and class names into
`sys.modules` when the real vLLM is absent; everything else on the request path is KServe's own code.
The models keep the OpenAI wire fields the demo LLM and the probe use and accept any other field.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Open):
    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


class CompletionRequest(_Open):
    model: str | None = None
    prompt: str | list[Any] | None = None
    max_tokens: int | None = 16
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    stop: str | list[str] | None = None


class ChatCompletionRequest(_Open):
    model: str | None = None
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None


class UsageInfo(_Open):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0


class DeltaMessage(_Open):
    role: str | None = None
    content: str | None = None


class ChatMessage(_Open):
    role: str
    content: str | None = None


class CompletionResponseChoice(_Open):
    index: int
    text: str
    logprobs: Any = None
    finish_reason: str | None = None


class CompletionResponseStreamChoice(CompletionResponseChoice):
    pass


class CompletionResponse(_Open):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionResponseChoice]
    usage: UsageInfo | None = None


class CompletionStreamResponse(_Open):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionResponseStreamChoice]
    usage: UsageInfo | None = None


class ChatCompletionResponseChoice(_Open):
    index: int
    message: ChatMessage
    logprobs: Any = None
    finish_reason: str | None = "stop"


class ChatCompletionResponseStreamChoice(_Open):
    index: int
    delta: DeltaMessage
    logprobs: Any = None
    finish_reason: str | None = None


class ChatCompletionResponse(_Open):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionResponseChoice]
    usage: UsageInfo | None = None


class ChatCompletionStreamResponse(_Open):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionResponseStreamChoice]
    usage: UsageInfo | None = None


class ModelCard(_Open):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""


class ModelList(_Open):
    object: str = "list"
    data: list[ModelCard] = []


def with_cancellation(handler: Any) -> Any:
    """vLLM's decorator aborts a handler when the client disconnects; uvicorn cancels ours on its own."""

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await handler(*args, **kwargs)

    return wrapper


# vLLM module path → the names KServe imports from it (kserve/protocol/rest/openai/types/__init__.py, endpoints.py)
_MODULES: dict[str, dict[str, Any]] = {
    "vllm.entrypoints.openai.chat_completion.protocol": {
        "ChatCompletionResponseChoice": ChatCompletionResponseChoice, "ChatCompletionLogProb": _Open,
        "ChatCompletionLogProbs": _Open, "ChatCompletionStreamResponse": ChatCompletionStreamResponse,
        "ChatCompletionResponseStreamChoice": ChatCompletionResponseStreamChoice, "ChatMessage": ChatMessage,
        "ChatCompletionLogProbsContent": _Open, "ChatCompletionRequest": ChatCompletionRequest,
        "ChatCompletionResponse": ChatCompletionResponse,
    },
    "vllm.entrypoints.openai.completion.protocol": {
        "CompletionResponseChoice": CompletionResponseChoice, "CompletionStreamResponse": CompletionStreamResponse,
        "CompletionResponseStreamChoice": CompletionResponseStreamChoice, "CompletionLogProbs": _Open,
        "CompletionRequest": CompletionRequest, "CompletionResponse": CompletionResponse,
    },
    "vllm.entrypoints.openai.engine.protocol": {
        "DeltaMessage": DeltaMessage, "UsageInfo": UsageInfo, "ModelCard": ModelCard, "ModelList": ModelList,
    },
    "vllm.entrypoints.pooling.embed.protocol": {
        "EmbeddingRequest": _Open, "EmbeddingResponse": _Open, "EmbeddingResponseData": _Open,
        "EmbeddingCompletionRequest": _Open,
    },
    "vllm.entrypoints.pooling.scoring.protocol": {"RerankRequest": _Open, "RerankResponse": _Open},
    "vllm.entrypoints.chat_utils": {
        name: dict for name in ("ChatCompletionContentPartParam", "CustomChatCompletionMessageParam",
                                "ChatCompletionMessageParam", "ChatCompletionToolMessageParam",
                                "ChatCompletionContentPartTextParam", "ChatCompletionAssistantMessageParam",
                                "ConversationMessage")
    },
    "vllm.entrypoints.serve.utils.api_utils": {"with_cancellation": with_cancellation},
}


def install() -> bool:
    """Register the stand-in modules unless the real vLLM is importable; returns whether it did."""
    if "vllm" in sys.modules or importlib.util.find_spec("vllm") is not None:
        return False
    for path, names in _MODULES.items():
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                module = types.ModuleType(name, "gpulens stand-in for vLLM's OpenAI protocol (gpulens.sim.vllm_protocol)")
                module.__path__ = []  # a package, so submodules resolve
                sys.modules[name] = module
                if i > 1:
                    setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], module)
        for attr, value in names.items():
            setattr(sys.modules[path], attr, value)
    return True
