"""The local span ring: an OTLP/HTTP traces receiver keeping the probe's last spans when there is no Jaeger.

`gpulens up` points the probe at `POST /v1/traces` on its local endpoint when no OTLP collector is
configured or listening on 127.0.0.1:4317; the last `capacity` spans stay in memory and
`GET /spans` returns them (newest last) for `gpulens top`. Bodies are OTLP protobuf
(`application/x-protobuf`) or OTLP JSON, per the OTLP/HTTP specification.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

CAPACITY = 256
_STATUS = {0: "unset", 1: "ok", 2: "error"}


@dataclass(frozen=True)
class SpanSummary:
    trace_id: str  # 32 hex digits
    span_id: str
    parent_span_id: str
    name: str
    service: str
    start_unix_nano: int
    duration_seconds: float
    status: str  # unset | ok | error
    attributes: dict[str, str]


def _value(any_value: Any) -> str:
    kind = any_value.WhichOneof("value")
    return "" if kind is None else str(getattr(any_value, kind))


def parse_export(body: bytes, content_type: str) -> list[SpanSummary]:
    """An OTLP ExportTraceServiceRequest (protobuf or JSON) → one summary per span; ValueError if unreadable."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        if content_type.split(";")[0].strip() == "application/json":
            json_format.Parse(body.decode("utf-8"), request)
        else:
            request.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as err:
        raise ValueError(f"not an OTLP traces export: {err}") from err
    out = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(SpanSummary(
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                    resource.get("service.name", ""), span.start_time_unix_nano,
                    max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                    _STATUS.get(span.status.code, "unset"),
                    {kv.key: _value(kv.value) for kv in span.attributes}))
    return out


class SpanRing:
    """The last `capacity` spans received, thread-safe."""

    def __init__(self, capacity: int = CAPACITY):
        self._spans: deque[SpanSummary] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def receive(self, body: bytes, content_type: str) -> int:
        spans = parse_export(body, content_type)
        with self._lock:
            self._spans.extend(spans)
        return len(spans)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(s) for s in self._spans]


def export_response(content_type: str) -> tuple[bytes, str]:
    """The OTLP success answer: an empty ExportTraceServiceResponse in the request's encoding."""
    if content_type.split(";")[0].strip() == "application/json":
        return b"{}", "application/json"
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    return ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
