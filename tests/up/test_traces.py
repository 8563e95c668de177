"""The span ring: the real OTLP/HTTP exporter delivers to `gpulens up`'s endpoint, `gpulens top` reads it back."""

from __future__ import annotations

import json
import urllib.request

import pytest

from gpulens.top.model import PROBE_TARGET_ATTRIBUTE, View, build_traces
from gpulens.top.render import render_plain
from gpulens.up.traces import SpanRing, parse_export
from gpulens.up.webhook import PageReceiver


def test_otlp_http_exporter_delivers_spans_into_the_ring() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    receiver = PageReceiver("127.0.0.1", 0, spans=SpanRing()).start()
    provider = TracerProvider(resource=Resource.create({"service.name": "gpulens-probe"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.url + "v1/traces")))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("probe classifier", attributes={PROBE_TARGET_ATTRIBUTE: "classifier-v2"}) as root:
            with tracer.start_as_current_span("POST"):
                pass
            trace_id = format(root.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("probe classifier", attributes={PROBE_TARGET_ATTRIBUTE: "classifier-v1"}) as bad:
            bad.set_status(Status(StatusCode.ERROR))
        provider.force_flush()
        with urllib.request.urlopen(receiver.url + "spans", timeout=5) as resp:
            spans = json.load(resp)
    finally:
        provider.shutdown()
        receiver.stop()
    assert [s["name"] for s in spans] == ["POST", "probe classifier", "probe classifier"]
    assert spans[1]["trace_id"] == trace_id and spans[0]["parent_span_id"] == spans[1]["span_id"]
    assert spans[1]["service"] == "gpulens-probe"
    rows = build_traces(spans)
    assert [(r.target, r.ok) for r in rows] == [("classifier-v1", False), ("classifier-v2", True)]  # roots, newest first
    out = render_plain(View("prometheus", traces=rows))
    assert "Recent probe traces (2)" in out and trace_id in out and "FAIL" in out


def test_ring_keeps_only_the_newest_spans() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(5):
        span = spans.add()
        span.trace_id, span.span_id, span.name = bytes([i]) * 16, bytes([i]) * 8, f"s{i}"
    ring = SpanRing(capacity=3)
    assert ring.receive(request.SerializeToString(), "application/x-protobuf") == 5
    assert [s["name"] for s in ring.recent()] == ["s2", "s3", "s4"]


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError, match="not an OTLP traces export"):
        parse_export(b"\xff\xff not protobuf", "application/x-protobuf")
