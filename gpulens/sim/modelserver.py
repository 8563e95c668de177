"""The demo model server: the real KServe ModelServer serving a small torch classifier, plus broken variants.

Used by `make run` (the local stack) and by the integration tests of the KServe exporter and the
probe, so both measure a real server: KServe's v1/v2 REST endpoints, its `/metrics` histograms and
its error mapping (400 bad input, 404 unknown model, 500 model error). Nothing is downloaded: the
model's weights come from a fixed seed.

Models (`--models`, comma-separated; each `kind` or `name=kind`):
  classifier   a few conv/linear layers, input FP32 [N,1,8,8] → output FP32 [N,4] (softmax)
  slow         the classifier after sleeping `--delay-seconds` (latency injection)
  broken       raises → HTTP 500 (a model that errors)
  wrong-shape  answers FP32 [N,3] where its metadata promises [N,4]
  llm          a tiny character-level torch generator (fixed random weights) behind KServe's OpenAI
               endpoints (`/openai/v1/completions`, `/openai/v1/chat/completions`, SSE streaming,
               `usage`, `[DONE]`), sleeping `--token-delay-seconds` before each token

Every v1/v2 model sets `Server-Timing: predict;dur=<ms>` so a probe can separate server time, and echoes
the request's W3C `traceparent` in `X-Received-Traceparent`; the llm model puts the received trace id
in its completion id (`cmpl-<trace id>`), so tests can check the trace reached the server.

Run: `python -m gpulens.sim.modelserver --http-port 8080 --models classifier,slow` (binds 127.0.0.1
unless `--host` says otherwise; KServe itself always binds 0.0.0.0, see `_bind`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

INPUT_SHAPE = (1, 8, 8)
CLASSES = 4
SEED = 20261201
KINDS = ("classifier", "slow", "broken", "wrong-shape", "llm")
VOCAB = " abcdefghijklmnopqrstuvwxyz.,!?"


def build_net() -> Any:
    """The torch classifier: conv → relu → pool → linear → relu → linear, weights from a fixed seed."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    net = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, CLASSES), nn.Softmax(dim=1),
    )
    net.eval()
    return net


def sample_input(batch: int = 1) -> list[Any]:
    """A deterministic valid input (nested lists, shape [batch,1,8,8]) for v1 `instances` or v2 `data`."""
    return [[[[((b + r * 8 + c) % 7) / 7.0 for c in range(8)] for r in range(8)]] for b in range(batch)]


def _model_class() -> type:
    """Built lazily: importing kserve costs ~1 s and needs the `modelserver` extra."""
    import kserve
    import numpy as np
    import torch
    from kserve.errors import InferenceError, InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class DemoModel(kserve.Model):  # type: ignore[misc]
        """One demo model; `kind` picks its behaviour (see the module docstring)."""

        def __init__(self, name: str, kind: str, delay_seconds: float):
            super().__init__(name, return_response_headers=True)
            self.kind = kind
            self.delay_seconds = delay_seconds
            self.net: Any = None

        def load(self) -> bool:
            self.net = build_net()
            self.ready = True
            return True

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": "input-0", "datatype": "FP32", "shape": [-1, *INPUT_SHAPE]}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [{"name": "output-0", "datatype": "FP32", "shape": [-1, CLASSES]}]

        async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> Any:
            started = time.perf_counter()
            v2 = isinstance(payload, InferRequest)
            try:
                array = payload.inputs[0].as_numpy() if v2 else np.asarray(payload["instances"], dtype=np.float32)
                array = array.astype(np.float32).reshape((-1, *INPUT_SHAPE))
            except (KeyError, IndexError, TypeError, ValueError) as err:
                raise InvalidInput(f"expected FP32 input of shape [N,{','.join(map(str, INPUT_SHAPE))}]: {err}") from err
            if self.kind == "slow" and self.delay_seconds > 0:
                await asyncio.sleep(self.delay_seconds)
            if self.kind == "broken":
                raise InferenceError("demo model 'broken' fails every request")
            with torch.no_grad():
                out = self.net(torch.from_numpy(array)).numpy()
            if self.kind == "wrong-shape":
                out = out[:, : CLASSES - 1]
            if response_headers is not None:
                received = {k.lower(): v for k, v in (headers or {}).items()}.get("traceparent")
                if received:
                    response_headers["X-Received-Traceparent"] = received
                response_headers["Server-Timing"] = f"predict;dur={(time.perf_counter() - started) * 1000:.3f}"
            if not v2:
                return {"predictions": out.tolist()}
            output = InferOutput(name="output-0", shape=list(out.shape), datatype="FP32")
            output.set_data_from_numpy(out, binary_data=False)  # JSON outputs, readable by any client
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])

    return DemoModel


class CharNet:
    """The tiny generator: embedding → GRU → linear over `VOCAB`, greedy decoding, fixed random weights."""

    def __init__(self) -> None:
        import torch
        from torch import nn

        torch.manual_seed(SEED + 1)
        self.embed = nn.Embedding(len(VOCAB), 16)
        self.gru = nn.GRU(16, 32, batch_first=True)
        self.head = nn.Linear(32, len(VOCAB))

    def tokens(self, prompt: str) -> list[int]:
        return [VOCAB.index(ch) if ch in VOCAB else 0 for ch in prompt.lower()] or [0]

    def generate(self, prompt: str, max_tokens: int) -> Any:
        """Yield `max_tokens` characters, one forward step each."""
        import torch

        with torch.no_grad():
            out, state = self.gru(self.embed(torch.tensor([self.tokens(prompt)])))
            for _ in range(max_tokens):
                token = int(self.head(out[0, -1]).argmax())
                yield VOCAB[token]
                out, state = self.gru(self.embed(torch.tensor([[token]])), state)


def _llm_class() -> type:
    """Built lazily, after `vllm_protocol.install()`: KServe's OpenAI types need vLLM's module paths."""
    from gpulens.sim import vllm_protocol

    vllm_protocol.install()
    from kserve.protocol.rest.openai import OpenAIGenerativeModel
    from kserve.protocol.rest.openai.types import (
        ChatCompletion,
        ChatCompletionChoice,
        ChatCompletionChunk,
        ChatMessage,
        ChoiceDelta,
        ChunkChoice,
        Completion,
        CompletionChoice,
        CompletionChunk,
        CompletionChunkChoice,
        UsageInfo,
    )

    class DemoLLM(OpenAIGenerativeModel):  # type: ignore[misc]
        """The `llm` demo model: OpenAI completions and chat completions, streamed token by token."""

        def __init__(self, name: str, token_delay_seconds: float):
            super().__init__(name)
            self.token_delay_seconds = token_delay_seconds
            self.net = CharNet()
            self.ready = True

        def _ids(self, context: dict[str, Any] | None) -> str:
            received = ((context or {}).get("headers") or {}).get("traceparent", "")
            parts = received.split("-")
            return f"cmpl-{parts[1]}" if len(parts) == 4 else f"cmpl-{os.urandom(16).hex()}"

        async def _tokens(self, prompt: str, max_tokens: int) -> Any:
            for ch in self.net.generate(prompt, max_tokens):
                if self.token_delay_seconds > 0:
                    await asyncio.sleep(self.token_delay_seconds)
                yield ch

        async def create_completion(self, request: Any, raw_request: Any = None, context: Any = None) -> Any:
            prompt = request.prompt if isinstance(request.prompt, str) else "".join(map(str, request.prompt or []))
            max_tokens = request.max_tokens or 16
            cid, created = self._ids(context), int(time.time())
            usage = UsageInfo(prompt_tokens=len(self.net.tokens(prompt)), completion_tokens=max_tokens,
                              total_tokens=len(self.net.tokens(prompt)) + max_tokens)
            if not request.stream:
                text = "".join([ch async for ch in self._tokens(prompt, max_tokens)])
                return Completion(id=cid, created=created, model=self.name, usage=usage,
                                  choices=[CompletionChoice(index=0, text=text, finish_reason="length")])

            async def stream() -> Any:
                n = 0
                async for ch in self._tokens(prompt, max_tokens):
                    n += 1
                    choice = CompletionChunkChoice(index=0, text=ch, finish_reason="length" if n == max_tokens else None)
                    yield f"data: {CompletionChunk(id=cid, created=created, model=self.name, choices=[choice]).model_dump_json()}\n\n"
                if request.stream_options and request.stream_options.include_usage:
                    chunk = CompletionChunk(id=cid, created=created, model=self.name, choices=[], usage=usage)
                    yield f"data: {chunk.model_dump_json()}\n\n"
                yield "data: [DONE]\n\n"

            return stream()

        async def create_chat_completion(self, request: Any, raw_request: Any = None, context: Any = None) -> Any:
            prompt = " ".join(str(m.get("content", "")) for m in request.messages)
            max_tokens = request.max_completion_tokens or request.max_tokens or 16
            cid, created = self._ids(context), int(time.time())
            usage = UsageInfo(prompt_tokens=len(self.net.tokens(prompt)), completion_tokens=max_tokens,
                              total_tokens=len(self.net.tokens(prompt)) + max_tokens)
            if not request.stream:
                text = "".join([ch async for ch in self._tokens(prompt, max_tokens)])
                choice = ChatCompletionChoice(index=0, message=ChatMessage(role="assistant", content=text), finish_reason="length")
                return ChatCompletion(id=cid, created=created, model=self.name, choices=[choice], usage=usage)

            def chunk(delta: Any, finish: str | None = None, usage_info: Any = None) -> str:
                choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
                body = ChatCompletionChunk(id=cid, created=created, model=self.name, choices=choices, usage=usage_info)
                return f"data: {body.model_dump_json()}\n\n"

            async def stream() -> Any:
                yield chunk(ChoiceDelta(role="assistant", content=""))  # vLLM's first chunk: the role, no token
                n = 0
                async for ch in self._tokens(prompt, max_tokens):
                    n += 1
                    yield chunk(ChoiceDelta(content=ch), "length" if n == max_tokens else None)
                if request.stream_options and request.stream_options.include_usage:
                    yield chunk(None, usage_info=usage)
                yield "data: [DONE]\n\n"

            return stream()

    return DemoLLM


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str


def parse_models(text: str) -> list[ModelSpec]:
    """`classifier,slow` or `demo=classifier,lag=slow` → specs; ValueError names the allowed kinds."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, kind = item.partition("=")
        kind = kind or name
        if kind not in KINDS:
            raise ValueError(f"unknown demo model kind {kind!r} (allowed: {', '.join(KINDS)})")
        specs.append(ModelSpec(name, kind))
    if not specs:
        raise ValueError(f"no models given (allowed kinds: {', '.join(KINDS)})")
    return specs


def _bind(host: str) -> None:
    """KServe's RESTServer hard-codes host 0.0.0.0; the demo and the tests must stay on loopback."""
    from kserve.protocol.rest import server as rest

    original = rest.RESTServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host = host
        self._server = rest._RefreshingServer(self.config)

    rest.RESTServer.__init__ = init


def serve(http_port: int, models: Sequence[ModelSpec], delay_seconds: float = 0.05, host: str = "127.0.0.1",
          token_delay_seconds: float = 0.02) -> None:
    """Serve `models` on `host:http_port` until SIGTERM/SIGINT (blocks; KServe handles the signals)."""
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import; ours are not its flags
    import kserve

    _bind(host)
    model_class = _model_class()
    instances = []
    for spec in models:
        if spec.kind == "llm":
            instances.append(_llm_class()(spec.name, token_delay_seconds))
            continue
        model = model_class(spec.name, spec.kind, delay_seconds)
        model.load()
        instances.append(model)
    kserve.ModelServer(http_port=http_port, enable_grpc=False, workers=1).start(instances)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ModelServerProcess:
    """A demo model server in a child process (tests, `gpulens up`): start, wait until ready, stop."""

    models: str = "classifier,slow,broken,wrong-shape"
    delay_seconds: float = 0.05
    host: str = "127.0.0.1"
    token_delay_seconds: float = 0.02
    port: int = 0
    log_path: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 90.0) -> ModelServerProcess:
        import urllib.request

        self.port = self.port or free_port(self.host)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpulens.sim.modelserver", "--host", self.host, "--http-port", str(self.port),
             "--models", self.models, "--delay-seconds", str(self.delay_seconds),
             "--token-delay-seconds", str(self.token_delay_seconds)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demo model server exited with {self.proc.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"demo model server not ready on {self.url} after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulens.sim.modelserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--models", default="classifier", help=f"comma-separated kind or name=kind; kinds: {', '.join(KINDS)}")
    parser.add_argument("--delay-seconds", type=float, default=0.05, help="sleep of the 'slow' model")
    parser.add_argument("--token-delay-seconds", type=float, default=0.02, help="sleep of the 'llm' model before each token")
    ns = parser.parse_args(argv)
    try:
        models = parse_models(ns.models)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: --models: {err}\n")
    serve(ns.http_port, models, ns.delay_seconds, ns.host, ns.token_delay_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
