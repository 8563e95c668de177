"""What one probe returns (never a registry write: the caller records it), and the response checks."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpulens.probes.inference.config import OutputExpectation, Target
from gpulens.probes.inference.transport import PhaseClock, ProbeFailure, Response, parse_server_timing, traceparent_trace_id


@dataclass
class LlmStats:
    """Streaming figures of an `openai` probe: seconds from probe start, and token counts."""

    ttft: float | None = None
    inter_token: list[float] = field(default_factory=list)
    output_tokens: int = 0  # content chunks seen
    tokens_per_second: float | None = None  # (tokens - 1) / (last token - first token): decode speed after TTFT
    prompt_tokens: int | None = None  # from `usage`
    completion_tokens: int | None = None
    finish_reason: str | None = None
    response_id: str = ""  # the completion id (the demo LLM puts the trace id it received in it)


@dataclass
class ProbeResult:
    """One probe: success, reason, seconds per phase reached, the trace id it sent, what the server said."""

    success: bool
    reason: str | None
    message: str
    phases: dict[str, float]
    duration: float
    trace_id: str
    status: int = 0
    server_timing: dict[str, float] = field(default_factory=dict)
    marks: list[tuple[str, int, int]] = field(default_factory=list)  # (phase, start, end) epoch ns, for spans
    start_ns: int = 0
    end_ns: int = 0
    llm: LlmStats | None = None
    span_id: str = ""  # the root span's, set by otel.Tracing
    received_traceparent: str = ""  # what a demo server echoed back (tests)


def measure(target: Target, headers: Mapping[str, str], exchange: Callable[[PhaseClock], Response | None],
            llm: LlmStats | None = None) -> ProbeResult:
    """Run `exchange` (the protocol's request, read and checks) on a fresh PhaseClock; a ProbeFailure
    becomes the result's reason. Every prober's body is one `measure` call, so all share one shape."""
    clock = PhaseClock()
    response: Response | None = None
    reason, message = None, "ok"
    try:
        response = exchange(clock)
    except ProbeFailure as failure:
        reason, message = failure.reason, str(failure)
        response = getattr(failure, "response", None)
    end = time.perf_counter_ns()
    return ProbeResult(
        success=reason is None, reason=reason, message=message, phases=clock.seconds(), duration=(end - clock.perf0) / 1e9,
        trace_id=traceparent_trace_id(headers), status=response.status if response is not None else 0,
        server_timing=parse_server_timing(response.headers.get("server-timing", "")) if response is not None else {},
        marks=[(name, clock.epoch_ns(s), clock.epoch_ns(e)) for name, s, e in clock.marks],
        start_ns=clock.wall0, end_ns=clock.epoch_ns(end), llm=llm,
        received_traceparent=response.headers.get("x-received-traceparent", "") if response is not None else "",
    )


def failed(target: Target, headers: Mapping[str, str], failure: ProbeFailure) -> ProbeResult:
    """The result of a probe that failed before its timed exchange (the v2 metadata lookup)."""

    def exchange(clock: PhaseClock) -> Response:
        raise failure

    return measure(target, headers, exchange)


def fail(reason: str, message: str, response: Response | None = None) -> ProbeFailure:
    failure = ProbeFailure(reason, message)
    failure.response = response  # type: ignore[attr-defined]  # keeps status and Server-Timing for the result
    return failure


def check_status(target: Target, response: Response) -> None:
    if response.status != target.expect_status:
        from gpulens.probes.inference.transport import status_reason

        raise fail(status_reason(response.status) or "validation",
                   f"HTTP {response.status} (expected {target.expect_status}): {response.body[:200]!r}", response)


def decode_json(response: Response) -> Any:
    try:
        return json.loads(response.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail("decode", f"response is not JSON: {err}: {response.body[:100]!r}", response) from err


def shape_of(value: Any) -> tuple[int, ...]:
    """The shape of a nested list (the first element's, at each depth)."""
    dims = []
    while isinstance(value, list):
        dims.append(len(value))
        value = value[0] if value else None
    return tuple(dims)


def flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for item in value for x in flatten(item)]
    return [value]


def check_output(expect: OutputExpectation, name: str, datatype: str, shape: Sequence[int], values: Sequence[Any],
                 response: Response) -> None:
    """One output against its expectation: datatype, shape (-1 matches any size), count, value range."""
    where = f"output {name or '0'}"
    if expect.datatype and datatype and datatype != expect.datatype:
        raise fail("validation", f"{where}: datatype {datatype} (expected {expect.datatype})", response)
    if expect.shape is not None and (len(shape) != len(expect.shape)
                                     or any(e not in (-1, s) for e, s in zip(expect.shape, shape, strict=True))):
        raise fail("validation", f"{where}: shape {list(shape)} (expected {list(expect.shape)})", response)
    if math.prod(shape) != len(values):
        raise fail("validation", f"{where}: {len(values)} values for shape {list(shape)}", response)
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if expect.min is not None and numbers and min(numbers) < expect.min:
        raise fail("validation", f"{where}: value {min(numbers)} below {expect.min}", response)
    if expect.max is not None and numbers and max(numbers) > expect.max:
        raise fail("validation", f"{where}: value {max(numbers)} above {expect.max}", response)
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        raise fail("validation", f"{where}: non-finite value", response)
