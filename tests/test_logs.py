"""ECS logging: every line says which service, node and pod wrote it, and inside a span, which trace."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from gpulens import logs

DOWNWARD = {"NODE_NAME": "gpu-node-7", "POD_NAME": "gpulens-gpu-x2k", "POD_NAMESPACE": "gpulens", "POD_UID": "1234-abcd",
            "POD_IP": "10.1.2.3", "CONTAINER_NAME": "exporter", "CLUSTER_NAME": "prod-eu"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_context_from_the_downward_api() -> None:
    ctx = logs.context("gpulens-gpu-exporter", DOWNWARD)
    assert ctx == {
        "service": {"name": "gpulens-gpu-exporter"},
        "host": {"name": "gpu-node-7"},
        "kubernetes": {"node": {"name": "gpu-node-7"}, "namespace": "gpulens", "container": {"name": "exporter"},
                       "pod": {"name": "gpulens-gpu-x2k", "uid": "1234-abcd", "ip": "10.1.2.3"}},
        "orchestrator": {"type": "kubernetes", "namespace": "gpulens", "cluster": {"name": "prod-eu"},
                         "resource": {"type": "pod", "name": "gpulens-gpu-x2k"}},
    }


def test_outside_kubernetes_only_service_and_host() -> None:
    assert logs.context("svc", {}) == {"service": {"name": "svc"}, "host": {"name": socket.gethostname()}}


def test_every_line_is_ecs_json_with_the_context(stream: io.StringIO) -> None:
    log = logs.setup("info", "gpulens-probe", stream=stream, env=DOWNWARD)
    log.info("probe ok", extra={"event": {"action": "probe-ok"}})
    log.debug("not at info")
    [line] = _lines(stream)
    assert list(line)[:3] == ["@timestamp", "log.level", "message"]  # the ECS logging spec's order
    assert line["log.level"] == "info" and line["message"] == "probe ok" and line["ecs.version"]
    assert line["service"]["name"] == "gpulens-probe" and line["host"]["name"] == "gpu-node-7"
    assert line["kubernetes"]["pod"]["name"] == "gpulens-gpu-x2k" and line["orchestrator"]["namespace"] == "gpulens"
    assert line["event"]["action"] == "probe-ok"
    assert "trace" not in line and "span" not in line


def test_trace_and_span_ids_inside_an_opentelemetry_span(stream: io.StringIO) -> None:
    log = logs.setup("info", "gpulens-probe", stream=stream, env={})
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("probe") as span:
        log.error("probe failed")
        ctx = span.get_span_context()
    log.info("after the span")
    inside, after = _lines(stream)
    assert inside["trace"] == {"id": format(ctx.trace_id, "032x")}
    assert inside["span"] == {"id": format(ctx.span_id, "016x")}
    assert "trace" not in after


def test_fields_at_the_call_site_win_over_the_context(stream: io.StringIO) -> None:
    log = logs.setup("info", "svc", stream=stream, env={"NODE_NAME": "n1"})
    log.warning("x", extra={"host": {"name": "other"}, "labels": {"k": "v"}})
    [line] = _lines(stream)
    assert line["host"]["name"] == "other" and line["service"]["name"] == "svc" and line["labels"] == {"k": "v"}


def test_a_complete_document_is_written_as_is(stream: io.StringIO) -> None:
    log = logs.setup("info", "svc", stream=stream, env={})
    doc = {"message": "m", "@timestamp": "2026-12-01T00:00:00.000Z", "log": {"level": "error", "logger": "x"}, "a": {"b": 1}}
    log.error("m", extra={logs.DOCUMENT_ATTR: doc})
    raw = stream.getvalue()
    assert raw.startswith('{"@timestamp":"2026-12-01T00:00:00.000Z","log.level":"error","message":"m",')
    assert json.loads(raw) == {"@timestamp": "2026-12-01T00:00:00.000Z", "log.level": "error", "message": "m",
                               "log": {"logger": "x"}, "a": {"b": 1}}


def test_timestamp_format() -> None:
    assert logs.timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert logs.timestamp(1764547200.123) == "2025-12-01T00:00:00.123Z"
