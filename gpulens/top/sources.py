"""Where `gpulens top` reads: Prometheus' HTTP API, or the exporters' /metrics when there is no Prometheus.

Prometheus computes rates, p99 and the latency history itself; reading the exporters directly, rates
and p99 come from the difference between two scrapes (the first frame shows totals since start).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gpulens.metrics import gpu as g
from gpulens.metrics import kserve as k
from gpulens.metrics import probe as p
from gpulens.top.model import (
    AlertRow,
    ProbeRow,
    ServiceRow,
    Vector,
    View,
    build_gpus,
    histogram_quantile,
    probe_key,
    service_name,
)

GPU_FAMILIES = (g.GPU_INFO, g.GPU_UP, g.GPU_UTIL, g.MEM_USED, g.MEM_TOTAL, g.POWER, g.POWER_LIMIT, g.TEMP, g.CLOCK_EVENT)
SERVICE_BY = "namespace, inferenceservice, model"
PROBE_BY = "target, model, protocol"
HISTORY = 40  # sparkline points
TIMEOUT = 2.0


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        return json.load(resp)


class PrometheusSource:
    """Reads everything from one Prometheus."""

    name = "prometheus"

    def __init__(self, url: str, window: str = "1m", history_seconds: float = 600.0,
                 clock: Callable[[], float] = time.time):
        self.url = url.rstrip("/")
        self.window = window
        self.history_seconds = history_seconds
        self._clock = clock

    def _api(self, path: str, **params: str) -> Any:
        body = _get_json(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        if body.get("status") != "success":
            raise OSError(f"Prometheus {path}: {body.get('error', body)}")
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._api("query", query=promql)["result"]]

    def reachable(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=TIMEOUT) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def fetch(self) -> View:
        view = View(self.name, alerts=[])
        names = "|".join(f.name for f in GPU_FAMILIES + (g.BUILD_INFO,))
        try:
            vectors: dict[str, list[tuple[dict[str, str], float]]] = {}
            for labels, value in self.query(f'{{__name__=~"{names}"}}'):
                vectors.setdefault(labels.get("__name__", ""), []).append((labels, value))
            view.gpus = build_gpus(vectors)
            view.simulated = any(lb.get("nvml") == "simulated" for lb, _ in vectors.get(g.BUILD_INFO.name, ()))
        except (OSError, ValueError, KeyError) as err:
            view.problems.append(f"GPUs: {err}")
        try:
            view.services = self._services()
        except (OSError, ValueError, KeyError) as err:
            view.problems.append(f"services: {err}")
        try:
            view.probes = self._probes()
        except (OSError, ValueError, KeyError) as err:
            view.problems.append(f"probes: {err}")
        try:
            view.alerts = self._alerts()
        except (OSError, ValueError, KeyError) as err:
            view.problems.append(f"alerts: {err}")
        return view

    def _services(self) -> list[ServiceRow]:
        w = self.window
        rps = self.query(f"sum by ({SERVICE_BY}) (rate({k.REQUESTS.name}[{w}]))")
        errors = {_key(lb): v for lb, v in self.query(f'sum by ({SERVICE_BY}) (rate({k.REQUESTS.name}{{outcome="error"}}[{w}]))')}
        p99 = {_key(lb): v for lb, v in self.query(
            f"histogram_quantile(0.99, sum by (le, {SERVICE_BY}) (rate({k.REQUEST_DURATION.name}_bucket[{w}])))")}
        rows = []
        for labels, rate in rps:
            key = _key(labels)
            err = errors.get(key, 0.0)
            rows.append(ServiceRow(service_name(labels), labels.get("model", ""), rate,
                                   err / rate if rate > 0 else None, _finite(p99.get(key))))
        return sorted(rows, key=lambda r: (r.name, r.model))

    def _probes(self) -> list[ProbeRow]:
        latency_expr = (f"sum by ({PROBE_BY}) (rate({p.DURATION.name}_sum[{self.window}])) / "
                        f"sum by ({PROBE_BY}) (rate({p.DURATION.name}_count[{self.window}]))")
        latency = {probe_key(lb): v for lb, v in self.query(latency_expr)}
        now = self._clock()
        step = max(self.history_seconds / HISTORY, 1.0)
        history: dict[tuple[str, str, str], tuple[float, ...]] = {}
        for r in self._api("query_range", query=latency_expr, start=f"{now - self.history_seconds:.3f}",
                           end=f"{now:.3f}", step=f"{step:g}")["result"]:
            history[probe_key(r["metric"])] = tuple(v for _, v in ((t, float(x)) for t, x in r["values"]) if math.isfinite(v))
        rows = []
        for labels, value in self.query(p.SUCCESS.name):
            key = probe_key(labels)
            rows.append(ProbeRow(*key, success=value == 1, latency=_finite(latency.get(key)), history=history.get(key, ())))
        return sorted(rows, key=lambda r: (r.target, r.model, r.protocol))

    def _alerts(self) -> list[AlertRow]:
        rows = []
        for alert in self._api("alerts")["alerts"]:
            labels = alert.get("labels", {})
            where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
            rows.append(AlertRow(labels.get("alertname", "?"), labels.get("severity", ""), alert.get("state", ""),
                                 alert.get("annotations", {}).get("summary", ""), where))
        return sorted(rows, key=lambda a: (a.state != "firing", a.severity != "critical", a.name, a.where))


def _key(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(n, "") for n in ("namespace", "inferenceservice", "model"))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition → sample name → instant vector (counters keep their `_total` name)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    req = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return parse_exposition(resp.read().decode("utf-8"))


def _delta(now: Vector, before: Vector | None) -> list[tuple[dict[str, str], float]]:
    """Per-series increase since the previous scrape (a reset counts from zero, as rate() does)."""
    prev = {json.dumps(dict(lb), sort_keys=True): v for lb, v in (before or ())}
    out = []
    for labels, value in now:
        old = prev.get(json.dumps(dict(labels), sort_keys=True))
        out.append((dict(labels), value - old if old is not None and value >= old else value))
    return out


class ExporterSource:
    """Reads the exporters' /metrics directly; no alerts (those need Prometheus)."""

    name = "exporters"

    def __init__(self, gpu_url: str, kserve_url: str, probe_url: str, clock: Callable[[], float] = time.monotonic):
        self.urls = {"GPU exporter": gpu_url, "KServe exporter": kserve_url, "probe": probe_url}
        self._clock = clock
        self._prev: dict[str, list[tuple[dict[str, str], float]]] | None = None
        self._prev_at = 0.0
        self._history: dict[tuple[str, str, str], deque[float]] = {}

    def fetch(self) -> View:
        view = View(self.name)
        vectors: dict[str, list[tuple[dict[str, str], float]]] = {}
        for what, url in self.urls.items():
            if not url:
                continue
            try:
                vectors.update(_scrape(url))
            except (OSError, ValueError) as err:
                view.problems.append(f"{what} {url}: {getattr(err, 'reason', err)}")
        now = self._clock()
        prev, elapsed = self._prev, now - self._prev_at
        self._prev, self._prev_at = vectors, now
        view.gpus = build_gpus(vectors)
        view.simulated = any(lb.get("nvml") == "simulated" for lb, _ in vectors.get(g.BUILD_INFO.name, ()))
        view.services = self._services(vectors, prev, elapsed)
        view.probes = self._probes(vectors, prev)
        return view

    def _services(self, vectors: Mapping[str, Vector], prev: Mapping[str, Vector] | None, elapsed: float) -> list[ServiceRow]:
        requests = _delta(vectors.get(k.REQUESTS.name, ()), prev.get(k.REQUESTS.name) if prev else None)
        counts: dict[tuple[str, ...], list[float]] = {}
        names: dict[tuple[str, ...], tuple[str, str]] = {}
        for labels, value in requests:
            key = _key(labels)
            names[key] = (service_name(labels), labels.get("model", ""))
            total_err = counts.setdefault(key, [0.0, 0.0])
            total_err[0] += value
            if labels.get("outcome") == "error":
                total_err[1] += value
        buckets_now = vectors.get(k.REQUEST_DURATION.name + "_bucket", ())
        buckets_delta = _delta(buckets_now, prev.get(k.REQUEST_DURATION.name + "_bucket") if prev else None)
        buckets: dict[tuple[str, ...], list[tuple[float, float]]] = {}
        for labels, value in buckets_delta:
            buckets.setdefault(_key(labels), []).append((float(labels.get("le", "+Inf")), value))
        rows = []
        for key, (total, errors) in counts.items():
            rate = total / elapsed if prev is not None and elapsed > 0 else None
            rows.append(ServiceRow(*names[key], rps=rate, error_ratio=errors / total if total > 0 else None,
                                   p99=histogram_quantile(0.99, buckets.get(key, []))))
        return sorted(rows, key=lambda r: (r.name, r.model))

    def _probes(self, vectors: Mapping[str, Vector], prev: Mapping[str, Vector] | None) -> list[ProbeRow]:
        sums = {probe_key(lb): v for lb, v in _delta(vectors.get(p.DURATION.name + "_sum", ()),
                                                      prev.get(p.DURATION.name + "_sum") if prev else None)}
        counts = {probe_key(lb): v for lb, v in _delta(vectors.get(p.DURATION.name + "_count", ()),
                                                        prev.get(p.DURATION.name + "_count") if prev else None)}
        rows = []
        for labels, value in vectors.get(p.SUCCESS.name, ()):
            key = probe_key(labels)
            latency = sums[key] / counts[key] if counts.get(key) and key in sums else None
            history = self._history.setdefault(key, deque(maxlen=HISTORY))
            if latency is not None:
                history.append(latency)
            rows.append(ProbeRow(*key, success=value == 1, latency=latency, history=tuple(history)))
        return sorted(rows, key=lambda r: (r.target, r.model, r.protocol))
