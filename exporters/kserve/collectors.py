"""Turn discovered InferenceServices, pods and scraped model servers into gpulens families.

Three parts, each testable without a server:
- `endpoints_from_kube` / `endpoints_from_static`: what to scrape (one model-server endpoint per pod,
  plus the queue-proxy's in serverless pods);
- `Totals`: per-endpoint raw counters/histograms → monotonic per-InferenceService totals. A counter
  that goes backwards (a restarted pod, a KServe worker answering) is a reset: its new value is
  the increase. Totals of pods that went away stay in the sum, so Prometheus never sees a drop.
- `collect_state` / `collect_models`: the families, built fresh on each render (nothing lingers
  for a deleted InferenceService).

Sample lines:
    gpulens_inferenceservice_ready{inferenceservice="llama",namespace="models"} 1
    gpulens_model_requests_total{inferenceservice="llama",model="llama",namespace="models",outcome="error",server="queue-proxy"} 3
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gpulens.exporters.kserve.discovery import InferenceService, Pod, StaticTarget
from gpulens.exporters.kserve.servers import Hist, Key, Normalised
from gpulens.exposition import ExpositionFamily
from gpulens.metrics import kserve as k

CONDITION_STATUSES = ("true", "false", "unknown")
DEGRADED_REASONS = ("crash_loop", "pods_not_ready", "model_not_ready", "no_pods")
COLD_START_PHASES = ("scheduled", "initialized", "container_started", "ready")
COLD_START_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"))  # 8: 4 phases × 10 series per ISVC
MAX_FAMILIES = {k.KV_CACHE.name}  # gauges where the InferenceService's value is the busiest pod's, not the sum


@dataclass(frozen=True)
class Endpoint:
    """One model-server /metrics to scrape (and, unless a queue-proxy, models to ask for readiness)."""

    namespace: str
    inferenceservice: str
    server: str
    name: str  # the `endpoint` label: pod name, or the static target's host:port
    metrics_url: str
    base_url: str = ""  # v1/v2 API root for readiness; "" → no readiness probe
    protocol: str = "v1"
    models: tuple[str, ...] = ()
    count_requests: bool = True  # False for a model server behind a queue-proxy: requests come from the proxy


def endpoints_from_kube(isvcs: Iterable[InferenceService], pods: Iterable[Pod], queue_proxy_port: int = 9091) -> list[Endpoint]:
    """One endpoint per running pod of a known InferenceService (+ one for its queue-proxy)."""
    by_isvc = {(i.namespace, i.name): i for i in isvcs}
    out = []
    for pod in pods:
        isvc = by_isvc.get((pod.namespace, pod.inferenceservice))
        if isvc is None or not pod.ip or pod.phase != "Running" or pod.deleting or pod.component != "predictor":
            continue
        out.append(Endpoint(pod.namespace, isvc.name, isvc.server, pod.name,
                            f"http://{pod.ip}:{pod.metrics_port}{pod.metrics_path}", f"http://{pod.ip}:{pod.http_port}",
                            isvc.protocol, (isvc.name,), count_requests=not pod.queue_proxy))
        if pod.queue_proxy:
            out.append(Endpoint(pod.namespace, isvc.name, "queue-proxy", f"{pod.name}:queue-proxy",
                                f"http://{pod.ip}:{queue_proxy_port}/metrics", models=(isvc.name,)))
    return out


def endpoints_from_static(targets: Iterable[StaticTarget]) -> list[Endpoint]:
    out = []
    for t in targets:
        host = t.metrics_url.split("://", 1)[-1].split("/", 1)[0]
        out.append(Endpoint(t.namespace, t.name, t.server, host, t.metrics_url, t.url, t.protocol, t.models))
    return out


SeriesKey = tuple[str, str, str, Key]  # (namespace, inferenceservice, server, (family, model, outcome))


def _hist_delta(new: Hist, old: Hist | None) -> Hist:
    if old is None or new.count < old.count or any(v < old.buckets.get(b, 0.0) for b, v in new.buckets.items()):
        return new  # first sight, or a reset: everything counted since the restart is new
    return Hist({b: v - old.buckets.get(b, 0.0) for b, v in new.buckets.items()}, new.sum - old.sum, new.count - old.count)


@dataclass
class Totals:
    """Monotonic totals per InferenceService from per-endpoint raw values (see the module docstring)."""

    counters: dict[SeriesKey, float] = field(default_factory=dict)
    histograms: dict[SeriesKey, Hist] = field(default_factory=dict)
    _last: dict[tuple[str, Key], float] = field(default_factory=dict)
    _last_hist: dict[tuple[str, Key], Hist] = field(default_factory=dict)
    _gauges: dict[str, tuple[Endpoint, dict[Key, float]]] = field(default_factory=dict)
    resets: int = 0

    @staticmethod
    def endpoint_id(ep: Endpoint) -> str:
        """Per InferenceService and server: two static targets may share one URL."""
        return f"{ep.namespace}/{ep.inferenceservice}/{ep.server}/{ep.metrics_url}"

    def add(self, ep: Endpoint, scraped: Normalised) -> None:
        eid = self.endpoint_id(ep)
        for key, value in scraped.counters.items():
            if key[0] == k.REQUESTS.name and not ep.count_requests:
                continue
            prev = self._last.get((eid, key))
            if prev is not None and value < prev:
                self.resets += 1
            delta = value if prev is None or value < prev else value - prev
            self._last[(eid, key)] = value
            skey = (ep.namespace, ep.inferenceservice, ep.server, key)
            self.counters[skey] = self.counters.get(skey, 0.0) + delta
        for key, hist in scraped.histograms.items():
            prev_hist = self._last_hist.get((eid, key))
            delta_hist = _hist_delta(hist, prev_hist)
            if prev_hist is not None and delta_hist is hist:
                self.resets += 1
            self._last_hist[(eid, key)] = hist
            skey = (ep.namespace, ep.inferenceservice, ep.server, key)
            total = self.histograms.setdefault(skey, Hist())
            for bound, v in delta_hist.buckets.items():
                total.buckets[bound] = total.buckets.get(bound, 0.0) + v
            total.sum += delta_hist.sum
            total.count += delta_hist.count
        self._gauges[eid] = (ep, dict(scraped.gauges))

    def keep(self, endpoints: Iterable[Endpoint], isvcs: set[tuple[str, str]]) -> None:
        """Forget endpoints that went away (their totals stay) and InferenceServices that went away (all gone)."""
        live = {self.endpoint_id(e) for e in endpoints}
        for d in (self._last, self._last_hist):
            for key in [key for key in d if key[0] not in live]:
                del d[key]
        for eid in [eid for eid in self._gauges if eid not in live]:
            del self._gauges[eid]
        for d2 in (self.counters, self.histograms):
            for skey in [skey for skey in d2 if (skey[0], skey[1]) not in isvcs]:
                del d2[skey]

    def gauges(self) -> dict[SeriesKey, float]:
        out: dict[SeriesKey, float] = {}
        for ep, values in self._gauges.values():
            for key, v in values.items():
                skey = (ep.namespace, ep.inferenceservice, ep.server, key)
                if key[0] in MAX_FAMILIES:
                    out[skey] = max(out.get(skey, v), v)
                else:
                    out[skey] = out.get(skey, 0.0) + v
        return out


@dataclass
class ColdStarts:
    """Pod start phases per InferenceService, observed once per pod when it is Ready (histograms)."""

    hist: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)  # (ns, isvc, phase) → bucket counts + sum
    observed: int = 0  # pods observed so far: a change means the histograms changed
    _seen: set[str] = field(default_factory=set)

    def observe(self, pods: Iterable[Pod]) -> None:
        live = set()
        for pod in pods:
            live.add(pod.uid)
            if pod.uid in self._seen or pod.ready_at is None or pod.created is None:
                continue
            self._seen.add(pod.uid)
            self.observed += 1
            times = {"scheduled": pod.scheduled, "initialized": pod.initialized, "container_started": pod.started,
                     "ready": pod.ready_at}
            for phase, at in times.items():
                if at is None:
                    continue
                seconds = max(0.0, at - pod.created)
                counts = self.hist.setdefault((pod.namespace, pod.inferenceservice, phase), [0.0] * (len(COLD_START_BUCKETS) + 1))
                for i, bound in enumerate(COLD_START_BUCKETS):
                    if seconds <= bound:
                        counts[i] += 1
                counts[-1] += seconds
        self._seen &= live  # a deleted pod's uid is never seen again

    def keep(self, isvcs: set[tuple[str, str]]) -> None:
        for key in [key for key in self.hist if (key[0], key[1]) not in isvcs]:
            del self.hist[key]


def _buckets(hist: Hist) -> list[tuple[str, float]]:
    bounds = sorted(hist.buckets)
    if not bounds or bounds[-1] != float("inf"):
        bounds.append(float("inf"))
    return [("+Inf" if b == float("inf") else repr(b), hist.buckets.get(b, hist.count)) for b in bounds]


ModelReady = dict[tuple[str, str], dict[tuple[str, str, str], bool]]  # (ns, isvc) → (model, server, endpoint) → ready


def degraded(isvc: InferenceService, pods: list[Pod], model_ready: dict[tuple[str, str, str], bool], grace: float,
             now: float) -> dict[str, bool]:
    """"Ready but broken": per reason, whether it holds while the Ready condition says True."""
    out = dict.fromkeys(DEGRADED_REASONS, False)
    if isvc.ready is not True:
        return out
    running = [p for p in pods if not p.deleting]
    out["crash_loop"] = any(p.crash_looping for p in running)
    out["pods_not_ready"] = any(not p.ready and p.created is not None and now - p.created > grace for p in running)
    out["model_not_ready"] = any(not ok for ok in model_ready.values())
    out["no_pods"] = not running and isvc.deployment_mode == "RawDeployment"  # serverless may scale to zero
    return out


def _pods_by(pods: Iterable[Pod]) -> dict[tuple[str, str], list[Pod]]:
    out: dict[tuple[str, str], list[Pod]] = {}
    for p in pods:
        out.setdefault((p.namespace, p.inferenceservice), []).append(p)
    return out


def collect_degraded(isvcs: list[InferenceService], pods: list[Pod], model_ready: ModelReady, grace: float,
                     now: float | None = None) -> Iterator[ExpositionFamily]:
    """`gpulens_inferenceservice_degraded{reason}`: changes with time and readiness, so rendered every refresh."""
    now = time.time() if now is None else now
    deg = k.ISVC_DEGRADED.new()
    pods_by = _pods_by(pods)
    for isvc in sorted(isvcs, key=lambda i: (i.namespace, i.name)):
        mine = pods_by.get((isvc.namespace, isvc.name), [])
        for reason, on in degraded(isvc, mine, model_ready.get((isvc.namespace, isvc.name), {}), grace, now).items():
            deg.add_metric([isvc.namespace, isvc.name, reason], 1 if on else 0)
    yield deg


def collect_state(isvcs: list[InferenceService], pods: list[Pod], cold: ColdStarts) -> Iterator[ExpositionFamily]:
    """InferenceService state families (kube-state-metrics style): a function of the API snapshot alone."""
    info, ready, cond, trans = k.ISVC_INFO.new(), k.ISVC_READY.new(), k.ISVC_CONDITION.new(), k.ISVC_CONDITION_TRANSITION.new()
    traffic, mismatch, state, failed = (k.ISVC_TRAFFIC.new(), k.ISVC_REVISION_MISMATCH.new(), k.ISVC_MODEL_STATE.new(),
                                        k.ISVC_MODEL_FAILED_COPIES.new())
    replicas, replicas_ready = k.ISVC_REPLICAS_DESIRED.new(), k.ISVC_REPLICAS_READY.new()
    pods_by = _pods_by(pods)
    for isvc in sorted(isvcs, key=lambda i: (i.namespace, i.name)):
        ids = [isvc.namespace, isvc.name]
        info.add_metric(ids + [isvc.url, isvc.deployment_mode, isvc.model_format, isvc.runtime], 1)
        if isvc.ready is not None:
            ready.add_metric(ids, 1 if isvc.ready else 0)
        for c in isvc.conditions:
            for s in CONDITION_STATUSES:
                cond.add_metric(ids + [c.type, s], 1 if c.status.lower() == s else 0)
            if c.last_transition is not None:
                trans.add_metric(ids + [c.type], c.last_transition)
        for t in isvc.traffic:
            traffic.add_metric(ids + [t.component, t.revision, t.tag, "true" if t.latest else "false"], t.percent / 100)
        for component, created, ready_rev in isvc.revisions:
            mismatch.add_metric(ids + [component], 1 if created and created != ready_rev else 0)
        if isvc.transition_status or isvc.active_model_state:
            state.add_metric(ids + [isvc.transition_status, isvc.active_model_state], 1)
        if isvc.failed_copies is not None:
            failed.add_metric(ids, isvc.failed_copies)
        mine = pods_by.get((isvc.namespace, isvc.name), [])
        counts: dict[str, list[int]] = {}
        for p in mine:
            c2 = counts.setdefault(p.component, [0, 0])
            c2[0] += 1
            c2[1] += p.ready
        for component in sorted(set(counts) | {"predictor"}):
            total, ok = counts.get(component, [0, 0])
            replicas.add_metric(ids + [component], total)
            replicas_ready.add_metric(ids + [component], ok)
    yield from (info, ready, cond, trans, traffic, mismatch, state, failed, replicas, replicas_ready)
    yield collect_cold_starts(cold)


def collect_cold_starts(cold: ColdStarts) -> ExpositionFamily:
    fam = k.ISVC_COLD_START.new()
    for (ns, isvc, phase), counts in sorted(cold.hist.items()):
        buckets = [("+Inf" if b == float("inf") else repr(b), counts[i]) for i, b in enumerate(COLD_START_BUCKETS)]
        fam.add_metric([ns, isvc, phase], buckets, counts[-1])
    return fam


FAMILIES_BY_NAME = {f.name: f for f in (k.REQUESTS, k.REQUEST_DURATION, k.REQUEST_DURATION_SUM, k.QUEUE_DURATION_SUM,
                                         k.COMPUTE_DURATION_SUM, k.IN_FLIGHT, k.PENDING, k.TTFT, k.ITL, k.KV_CACHE)}


def collect_models(totals: Totals, model_ready: ModelReady) -> Iterator[ExpositionFamily]:
    """Normalised model-server families: totals per (namespace, inferenceservice, model, server)."""
    fams = {name: f.new() for name, f in FAMILIES_BY_NAME.items()}
    for (ns, isvc, server, (family, model, outcome)), v in sorted(totals.counters.items()):
        labels = [ns, isvc, model, server] + ([outcome] if family == k.REQUESTS.name else [])
        fams[family].add_metric(labels, v)
    for (ns, isvc, server, (family, model, _)), v in sorted(totals.gauges().items()):
        fams[family].add_metric([ns, isvc, model, server], v)
    for (ns, isvc, server, (family, model, _)), hist in sorted(totals.histograms.items()):
        fams[family].add_metric([ns, isvc, model, server], _buckets(hist), hist.sum)
    ready = k.MODEL_READY.new()
    for (ns, isvc), per in sorted(model_ready.items()):
        for (model, server, endpoint), ok in sorted(per.items()):
            ready.add_metric([ns, isvc, model, server, endpoint], 1 if ok else 0)
    yield from fams.values()
    yield ready
