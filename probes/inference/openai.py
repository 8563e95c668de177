"""OpenAI-compatible LLM prober (KServe's /openai/v1/…, vLLM): a streamed completion, as a chat user feels it.

Sends `stream: true` with `stream_options.include_usage` and reads the Server-Sent Events as they
arrive: time to first token (from the probe's start), the gaps between tokens, decode speed, token
counts from `usage`. The stream must be well-formed (`data:` events of JSON) and end with
`data: [DONE]` (else `stream_broken`), carry some text (else `empty_output`) and finish with
`stop` or `length` (else `finish_reason_error`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from gpulens.probes.inference.config import Target
from gpulens.probes.inference.result import LlmStats, ProbeResult, check_status, fail, measure
from gpulens.probes.inference.transport import PhaseClock, ProbeFailure, Response, Session

PROTOCOL = "openai"
FINISH_OK = ("stop", "length")


def request_body(target: Target) -> dict[str, Any]:
    body: dict[str, Any] = {"model": target.model, "max_tokens": target.max_tokens, "stream": True,
                            "stream_options": {"include_usage": True}}
    if target.openai_endpoint == "chat":
        body["messages"] = [{"role": "user", "content": target.prompt}]
    else:
        body["prompt"] = target.prompt
    return body


def event_text(event: Mapping[str, Any]) -> tuple[str, str | None]:
    """(text, finish_reason) of one chunk: chat `choices[0].delta.content`, completions `choices[0].text`."""
    choices = event.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
    return text or "", choice.get("finish_reason")


def read_stream(clock: PhaseClock, session: Session, response: Response, stats: LlmStats, deadline: float) -> None:
    """Read SSE events until `[DONE]`, timing each token; ProbeFailure on a broken or late stream."""
    raw = response.raw
    assert raw is not None and response.conn is not None and response.conn.sock is not None
    sock = response.conn.sock
    token_times: list[int] = []
    done = False
    data: list[str] = []
    try:
        with clock.phase("read"):
            while not done:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProbeFailure("timeout", f"stream not finished within the timeout ({len(token_times)} tokens)")
                sock.settimeout(left)
                line = raw.readline()
                if not line:
                    raise fail("stream_broken", f"stream ended without [DONE] after {len(token_times)} tokens", response)
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].removeprefix(" "))
                    continue
                if text.startswith(":") or text.split(":", 1)[0] in ("event", "id", "retry"):
                    continue  # SSE comments and fields the OpenAI stream does not use
                if text:
                    raise fail("stream_broken", f"not an SSE line: {text[:80]!r}", response)
                if not data:
                    continue
                payload, data = "\n".join(data), []
                if payload == "[DONE]":
                    raw.read()  # the end of the chunked body, so the connection can be kept
                    done = True
                    break
                try:
                    event = json.loads(payload)
                except json.JSONDecodeError as err:
                    raise fail("stream_broken", f"event is not JSON: {payload[:80]!r}", response) from err
                if not isinstance(event, dict):
                    raise fail("stream_broken", f"event is not a JSON object: {payload[:80]!r}", response)
                if "error" in event:
                    raise fail("finish_reason_error", f"error event: {str(event['error'])[:200]}", response)
                stats.response_id = stats.response_id or str(event.get("id", ""))
                piece, finish = event_text(event)
                if piece:
                    token_times.append(time.perf_counter_ns())
                if finish is not None:
                    stats.finish_reason = finish
                usage = event.get("usage")
                if isinstance(usage, dict):
                    stats.prompt_tokens = usage.get("prompt_tokens")
                    stats.completion_tokens = usage.get("completion_tokens")
    except TimeoutError as err:
        raise fail("timeout", f"stream stalled past the timeout after {len(token_times)} tokens", response) from err
    except OSError as err:
        raise fail("stream_broken", f"connection lost mid-stream after {len(token_times)} tokens: {err}", response) from err
    finally:
        session.finish(response, complete=done)
        stats.output_tokens = len(token_times)
        if token_times:
            stats.ttft = (token_times[0] - clock.perf0) / 1e9
            stats.inter_token = [(b - a) / 1e9 for a, b in zip(token_times, token_times[1:], strict=False)]
            span = (token_times[-1] - token_times[0]) / 1e9
            if len(token_times) > 1 and span > 0:
                stats.tokens_per_second = (len(token_times) - 1) / span


def probe(target: Target, session: Session, headers: Mapping[str, str]) -> ProbeResult:
    """One streamed completion: request → status → SSE tokens → [DONE], finish_reason and output checks."""
    deadline = time.monotonic() + target.timeout_seconds
    path = target.openai_prefix + ("/v1/chat/completions" if target.openai_endpoint == "chat" else "/v1/completions")
    body = json.dumps(request_body(target)).encode()
    send = {**dict(target.headers), **headers, "Content-Type": "application/json", "Accept": "text/event-stream"}
    stats = LlmStats()

    def exchange(clock: PhaseClock) -> Response:
        response = session.request(clock, "POST", path, body, send, deadline, stream=True)
        if response.status != target.expect_status and response.raw is not None:
            response.body = response.raw.read()
            session.finish(response, complete=True)
        check_status(target, response)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            session.finish(response, complete=False)
            raise fail("stream_broken", f"content-type {response.headers.get('content-type')!r}, not text/event-stream", response)
        read_stream(clock, session, response, stats, deadline)
        with clock.phase("decode"):
            if stats.output_tokens == 0:
                raise fail("empty_output", "the stream carried no text", response)
            if stats.finish_reason not in FINISH_OK:
                raise fail("finish_reason_error", f"finish_reason {stats.finish_reason!r} (expected stop or length)", response)
        return response

    return measure(target, headers, exchange, stats)
