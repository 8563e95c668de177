"""OpenTelemetry for the probe: one trace per probe, exported with the official OTLP exporter (Jaeger).

Trace shape: a root span `probe <model>` (INTERNAL) with the HTTP client span (CLIENT, whose context
goes out in the W3C `traceparent` header so the server's spans join the trace) and one child span
per phase reached, timed from the PhaseClock marks. Export runs on the BatchSpanProcessor's thread;
a failed export is counted (`gpulens_probe_span_export_errors_total`) and never delays a probe.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.propagators.textmap import default_setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gpulens import __version__
from gpulens.probes.inference.config import ProbeConfig, Target
from gpulens.probes.inference.result import ProbeResult
from gpulens.probes.inference.transport import Session

Prober = Callable[[Target, Session, Mapping[str, str]], ProbeResult]
_LOG = logging.getLogger(__name__)

# Kubernetes downward-API variables (k8s/ manifests set them) → OTel resource semantic conventions
DOWNWARD_API = {"NODE_NAME": "k8s.node.name", "POD_NAME": "k8s.pod.name", "POD_NAMESPACE": "k8s.namespace.name",
                "POD_UID": "k8s.pod.uid", "CONTAINER_NAME": "k8s.container.name"}


def resource_attributes(service_name: str, env: Mapping[str, str]) -> dict[str, str]:
    attrs = {"service.name": service_name, "service.version": __version__}
    attrs.update({key: env[var] for var, key in DOWNWARD_API.items() if env.get(var)})
    return attrs


def parse_headers(text: str) -> dict[str, str]:
    """`key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS style) → dict; ValueError names the bad item."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        out[key.strip().lower()] = value.strip()
    return out


class CountingExporter(SpanExporter):
    """Delegates to the OTLP exporter and counts spans it could not deliver (failure or exception)."""

    def __init__(self, inner: SpanExporter, on_failure: Callable[[int], None]):
        self.inner = inner
        self._on_failure = on_failure

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as err:  # noqa: BLE001 - an exporter bug must not kill the export thread
            _LOG.debug("span export raised %r", err)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._on_failure(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def otlp_exporter(endpoint: str, protocol: str = "grpc", headers: str = "", insecure: bool = True,
                  timeout: float = 5.0) -> SpanExporter:
    """The official OTLP span exporter (gRPC: host:4317; HTTP: http://host:4318/v1/traces)."""
    parsed = parse_headers(headers)
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if not urlsplit(endpoint).path.strip("/"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint, headers=parsed, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=parsed, timeout=timeout)


def tracer_provider(service_name: str, exporter: SpanExporter | None, on_failure: Callable[[int], None],
                    timeout: float = 5.0, env: Mapping[str, str] | None = None,
                    schedule_delay_millis: int = 1000) -> TracerProvider:
    """A TracerProvider with the k8s resource attributes and, given an exporter, a counting batch processor."""
    provider = TracerProvider(resource=Resource.create(resource_attributes(service_name, os.environ if env is None else env)))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(
            CountingExporter(exporter, on_failure), schedule_delay_millis=schedule_delay_millis,
            export_timeout_millis=int(timeout * 1000)))
    return provider


class Tracing:
    """The probe's tracer: `run(target, prober, session)` wraps one probe in its trace.

    Without an exporter the spans are still created (their ids go out in `traceparent` and into
    exemplars, so server logs can be joined) but nothing is sent.
    """

    def __init__(self, cfg: ProbeConfig, exporter: SpanExporter | None = None, env: Mapping[str, str] | None = None,
                 schedule_delay_millis: int = 1000):
        self.export_errors = 0
        self.on_export_failure: Callable[[int], None] | None = None
        self._lock = threading.Lock()
        if exporter is None and cfg.otlp_endpoint:
            exporter = otlp_exporter(cfg.otlp_endpoint, cfg.otlp_protocol, cfg.otlp_headers, cfg.otlp_insecure,
                                     cfg.otlp_timeout_seconds)
        self.provider = tracer_provider(cfg.service_name, exporter, self._failed, cfg.otlp_timeout_seconds, env,
                                        schedule_delay_millis)
        self.tracer = self.provider.get_tracer("gpulens.probe", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def _failed(self, spans: int) -> None:
        with self._lock:
            self.export_errors += spans
        if self.on_export_failure is not None:
            self.on_export_failure(spans)

    def run(self, target: Target, prober: Prober, session: Session, protocol: str) -> ProbeResult:
        labels: dict[str, Any] = {"gpulens.probe.target": target.name, "gpulens.probe.protocol": protocol,
                                  "gpulens.probe.connection": target.connection, "gen_ai.request.model": target.model}
        root = self.tracer.start_span(f"probe {target.model}", kind=SpanKind.INTERNAL, attributes=labels)
        in_root = set_span_in_context(root)
        parts = urlsplit(target.url)
        client = self.tracer.start_span("POST", context=in_root, kind=SpanKind.CLIENT, attributes={
            "http.request.method": "POST", "server.address": parts.hostname or "", "server.port": session.port,
            "url.full": target.url})
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=set_span_in_context(client), setter=default_setter)
        try:
            result = prober(target, session, carrier)
        except BaseException as err:
            client.end()
            root.record_exception(err)
            root.set_status(Status(StatusCode.ERROR, f"probe raised {type(err).__name__}"))
            root.end()
            raise
        for phase, start, end in result.marks:
            self.tracer.start_span(phase, context=in_root, start_time=start, attributes={"gpulens.probe.phase": phase}).end(end_time=end)
        if result.status:
            client.set_attribute("http.response.status_code", result.status)
        for metric, seconds in result.server_timing.items():
            client.set_attribute(f"gpulens.server_timing.{metric}", seconds)
        root.set_attribute("gpulens.probe.success", result.success)
        root.set_attribute("gpulens.probe.duration", result.duration)
        if result.llm is not None:
            llm = result.llm
            for key, value in (("gpulens.llm.ttft", llm.ttft), ("gpulens.llm.output_tokens", llm.output_tokens),
                               ("gen_ai.usage.input_tokens", llm.prompt_tokens), ("gen_ai.usage.output_tokens", llm.completion_tokens),
                               ("gen_ai.response.finish_reasons", [llm.finish_reason] if llm.finish_reason else None)):
                if value is not None:
                    root.set_attribute(key, value)
        if not result.success:
            root.set_attribute("error.type", result.reason or "")
            root.set_status(Status(StatusCode.ERROR, f"{result.reason}: {result.message}"))
            client.set_status(Status(StatusCode.ERROR, f"{result.reason}: {result.message}"))
        client.end(end_time=result.end_ns)
        root.end(end_time=max(result.end_ns, result.start_ns))
        result.span_id = format(root.get_span_context().span_id, "016x")
        return result

    def shutdown(self, timeout_millis: int = 5000) -> None:
        """Flush what is queued (bounded), then stop the export thread."""
        self.provider.force_flush(timeout_millis)
        self.provider.shutdown()
