"""Probe results → the gpulens_probe_* families, with the probe's trace id as exemplar.

Histograms must keep state across probes, so this uses prometheus_client's own registry and metric
objects (the only place in gpulens that does): `Histogram.observe(v, exemplar={"trace_id": …})`
and its OpenMetrics exposition give Grafana the jump from a slow bucket to the trace. A target that
goes away (discovery) is removed with `forget`, so its series do not linger.

    gpulens_probe_duration_seconds_bucket{le="0.01",model="classifier",protocol="v2",target="classifier"} 3.0 # {trace_id="4bf9…"} 0.0071
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from gpulens.metrics import probe as c
from gpulens.probes.inference.config import Target
from gpulens.probes.inference.result import ProbeResult
from gpulens.probes.inference.transport import LLM_REASONS, PHASES, REASONS

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PHASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def _labels(target: Target, protocol: str) -> tuple[str, str, str]:
    return (target.name, target.model, protocol)


class Recorder:
    """Holds the probe's registry; `record(target, protocol, result)` after each probe, `render` per scrape."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self.success = Gauge(c.SUCCESS.name, c.SUCCESS.help, c.SUCCESS.labels, registry=r)
        self.failures = Counter(c.FAILURES.name, c.FAILURES.help, c.FAILURES.labels, registry=r)
        self.duration = Histogram(c.DURATION.name, c.DURATION.help, c.DURATION.labels, buckets=DURATION_BUCKETS, registry=r)
        self.phase = Histogram(c.PHASE_DURATION.name, c.PHASE_DURATION.help, c.PHASE_DURATION.labels,
                               buckets=PHASE_BUCKETS, registry=r)
        self.server_timing = Gauge(c.SERVER_TIMING.name, c.SERVER_TIMING.help, c.SERVER_TIMING.labels, registry=r)
        self.http_status = Gauge(c.HTTP_STATUS.name, c.HTTP_STATUS.help, c.HTTP_STATUS.labels, registry=r)
        self.last_success = Gauge(c.LAST_SUCCESS.name, c.LAST_SUCCESS.help, c.LAST_SUCCESS.labels, registry=r)
        self.ttft = Histogram(c.TTFT.name, c.TTFT.help, c.TTFT.labels, buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram(c.ITL.name, c.ITL.help, c.ITL.labels, buckets=ITL_BUCKETS, registry=r)
        self.tokens_per_second = Gauge(c.TOKENS_PER_SECOND.name, c.TOKENS_PER_SECOND.help, c.TOKENS_PER_SECOND.labels, registry=r)
        self.tokens = Counter(c.TOKENS.name, c.TOKENS.help, c.TOKENS.labels, registry=r)
        self.span_export_errors = Counter(c.SPAN_EXPORT_ERRORS.name, c.SPAN_EXPORT_ERRORS.help, registry=r)
        self._server_metrics: dict[tuple[str, str, str], set[str]] = {}

    def add(self, target: Target, protocol: str) -> None:
        """Create a target's series up front: every reason at 0 (so rate() works from the first failure)
        and every phase's histogram (the fixed phase list), before its first probe."""
        labels = _labels(target, protocol)
        reasons = REASONS + (LLM_REASONS if protocol == "openai" else ())
        with self._lock:
            for reason in reasons:
                self.failures.labels(*labels, reason)
            for phase in PHASES:
                self.phase.labels(*labels, phase)
            self.duration.labels(*labels)
            if protocol == "openai":
                self.ttft.labels(*labels)
                self.itl.labels(*labels)
                for kind in ("prompt", "completion"):
                    self.tokens.labels(*labels, kind)

    def forget(self, target: Target, protocol: str) -> None:
        """Remove every series of a target that is no longer probed."""
        labels = _labels(target, protocol)
        with self._lock:
            for metric in (self.success, self.duration, self.http_status, self.last_success, self.ttft, self.itl,
                           self.tokens_per_second):
                _remove(metric, labels)
            for reason in REASONS + LLM_REASONS:
                _remove(self.failures, labels + (reason,))
            for phase in PHASES:
                _remove(self.phase, labels + (phase,))
            for kind in ("prompt", "completion"):
                _remove(self.tokens, labels + (kind,))
            for name in self._server_metrics.pop(labels, set()):
                _remove(self.server_timing, labels + (name,))

    def record(self, target: Target, protocol: str, result: ProbeResult) -> None:
        labels = _labels(target, protocol)
        exemplar = {"trace_id": result.trace_id} if result.trace_id else None
        with self._lock:
            self.success.labels(*labels).set(1 if result.success else 0)
            self.http_status.labels(*labels).set(result.status)
            if result.success:
                self.last_success.labels(*labels).set(time.time())
            else:
                self.failures.labels(*labels, result.reason or "validation").inc()
            self.duration.labels(*labels).observe(result.duration, exemplar)
            for phase, seconds in result.phases.items():
                self.phase.labels(*labels, phase).observe(seconds, exemplar)
            seen = self._server_metrics.setdefault(labels, set())
            for name, seconds in result.server_timing.items():
                seen.add(name)
                self.server_timing.labels(*labels, name).set(seconds)
            llm = result.llm
            if llm is not None:
                if llm.ttft is not None:
                    self.ttft.labels(*labels).observe(llm.ttft, exemplar)
                for gap in llm.inter_token:
                    self.itl.labels(*labels).observe(gap, exemplar)
                if llm.tokens_per_second is not None:
                    self.tokens_per_second.labels(*labels).set(llm.tokens_per_second)
                if llm.prompt_tokens:
                    self.tokens.labels(*labels, "prompt").inc(llm.prompt_tokens)
                if llm.completion_tokens:
                    self.tokens.labels(*labels, "completion").inc(llm.completion_tokens)

    def render(self, openmetrics: bool) -> bytes:
        """Text 0.0.4, or OpenMetrics (the format that carries exemplars; ends with `# EOF`)."""
        with self._lock:
            source = _WithoutCreated(self.registry)
            return generate_openmetrics(source) if openmetrics else generate_latest(source)  # type: ignore[arg-type]


class _WithoutCreated:
    """The registry without prometheus_client's `_created` samples (process-wide switch otherwise):
    the catalogue does not list them and the text format would show them as extra gauge families."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def _remove(metric: Gauge | Counter | Histogram, labels: tuple[str, ...]) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
