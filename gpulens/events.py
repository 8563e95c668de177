"""Typed events: what the exporters and the probe saw happen, as ECS documents on stdout and to Elasticsearch.

One call from a component:

    from gpulens import events
    events.emit(events.xid(events.Gpu(3, "GPU-…"), 79, pod=events.Pod("models", "llama-0", "kserve-container")))

writes one ECS JSON line to stdout (through the ECS log handler, for Filebeat/Fluent Bit users) and,
when a `Shipper` is attached (`events.attach(shipper)`), queues the same document for Elasticsearch.
Neither path blocks: the shipper's `submit` only appends to a bounded queue.

    {"@timestamp":"…","log.level":"critical","message":"XID 79 on GPU 3 (GPU-…): GPU has fallen off the bus",
     "event":{"action":"gpu.xid","category":["host","driver"],"code":"79","kind":"alert","severity":4,…},
     "gpu":{"index":3,"uuid":"GPU-…"},"workload":{"namespace":"models","pod":"llama-0",…},…}

Field choices: ECS `event.*`, `service.*`, `host.*`, `orchestrator.*`/`kubernetes.*` (this process's
own pod, from the downward API), `trace.id`/`span.id`, `url.*`; gpulens' own `gpu.*` (the GPU's
identity), `workload.*` (the pod holding the GPU or serving the model) and `inferenceservice.*`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpulens import logs

# ECS event.severity is source-specific: ours, with the log level each maps to.
SEVERITY = {"info": 1, "warning": 2, "error": 3, "critical": 4}
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
DATASET = "gpulens"

ACTIONS = ("gpu.xid", "gpu.lost", "gpu.recovered", "gpu.throttle.start", "gpu.throttle.stop",
           "inferenceservice.ready_changed", "probe.failed")

# XIDs after which the GPU or its workload is gone (NVIDIA's XID catalogue): critical, not error.
CRITICAL_XIDS = frozenset({48, 62, 64, 74, 79, 95, 119, 120})


@dataclass(frozen=True)
class Gpu:
    """Which GPU: its index on the node and UUID, and when known the model, PCI bus id and MIG instance."""

    index: int
    uuid: str
    name: str = ""
    pci_bus_id: str = ""
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    mig_profile: str = ""

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "uuid": self.uuid}
        for key in ("name", "pci_bus_id", "mig_profile"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in ("gpu_instance_id", "compute_instance_id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Pod:
    """The workload a GPU or model belongs to (from kubelet PodResources or the Kubernetes API)."""

    namespace: str
    name: str
    container: str = ""

    def fields(self) -> dict[str, Any]:
        out = {"namespace": self.namespace, "pod": self.name}
        if self.container:
            out["container"] = self.container
        return out


@dataclass(frozen=True)
class Event:
    """One typed event: `action` is one of ACTIONS; the rest maps onto ECS `event.*` plus `fields`."""

    action: str
    message: str
    kind: str  # ECS event.kind: alert (needs a look) | event | state
    category: tuple[str, ...]
    type: tuple[str, ...]
    severity: str = "info"  # a key of SEVERITY; also the log level
    code: str = ""
    outcome: str = ""  # ECS event.outcome: success | failure | unknown
    reason: str = ""
    duration_seconds: float | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    trace: Mapping[str, Any] = field(default_factory=logs.trace_ids)  # the span current where it was created

    def document(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The ECS document: process context, then the event (what the event says wins)."""
        event: dict[str, Any] = {"kind": self.kind, "category": list(self.category), "type": list(self.type),
                                 "action": self.action, "dataset": DATASET, "severity": SEVERITY[self.severity],
                                 "created": logs.timestamp(self.timestamp)}
        for key in ("code", "outcome", "reason"):
            if getattr(self, key):
                event[key] = getattr(self, key)
        if self.duration_seconds is not None:
            event["duration"] = int(self.duration_seconds * 1e9)  # ECS: nanoseconds
        doc: dict[str, Any] = {"@timestamp": logs.timestamp(self.timestamp), "log": {"level": self.severity,
                               "logger": "gpulens.events"}, "message": self.message, "ecs": {"version": logs.ECS_VERSION}}
        logs.merge(doc, context)
        logs.merge(doc, self.trace)
        logs.merge(doc, self.fields)
        doc["event"] = event
        return doc


# --- constructors, one per action ----------------------------------------------------------------
def _gpu_fields(gpu: Gpu, pod: Pod | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"gpu": logs.merge(gpu.fields(), extra or {})}
    if pod is not None:
        out["workload"] = pod.fields()
    return out


def xid(gpu: Gpu, code: int, pod: Pod | None = None, timestamp: float | None = None, meaning: str = "") -> Event:
    """An NVML XID critical error on `gpu` (nvmlEventTypeXidCriticalError, eventData = the XID)."""
    if not meaning:
        from gpulens.exporters.gpu.events import XID_MEANINGS  # the one XID table; lazy: NVML bindings load on first XID

        meaning = XID_MEANINGS.get(code, "see NVIDIA's XID catalogue")
    return Event("gpu.xid", f"XID {code} on GPU {gpu.index} ({gpu.uuid}): {meaning}", "alert", ("host", "driver"), ("error",),
                 "critical" if code in CRITICAL_XIDS else "error", code=str(code), reason=meaning,
                 fields=_gpu_fields(gpu, pod, {"xid": code}), **_at(timestamp))


def gpu_lost(gpu: Gpu, reason: str, pod: Pod | None = None, timestamp: float | None = None) -> Event:
    """The GPU stopped answering NVML (GpuIsLost, fallen off the bus, driver unloaded): `reason` is the NVML error."""
    return Event("gpu.lost", f"GPU {gpu.index} ({gpu.uuid}) lost: {reason}", "alert", ("host", "driver"), ("error",),
                 "critical", code=reason, outcome="failure", reason=reason, fields=_gpu_fields(gpu, pod), **_at(timestamp))


def gpu_recovered(gpu: Gpu, down_seconds: float | None = None, pod: Pod | None = None,
                  timestamp: float | None = None) -> Event:
    """A lost GPU answers NVML again; `down_seconds` is how long it was gone, when known."""
    return Event("gpu.recovered", f"GPU {gpu.index} ({gpu.uuid}) recovered", "event", ("host", "driver"), ("info",),
                 "info", outcome="success", duration_seconds=down_seconds, fields=_gpu_fields(gpu, pod), **_at(timestamp))


def throttle_start(gpu: Gpu, reasons: tuple[str, ...], pod: Pod | None = None, timestamp: float | None = None) -> Event:
    """Clocks started being held down (NVML clocks-event reasons, e.g. hw_thermal_slowdown, sw_power_cap)."""
    text = ",".join(sorted(reasons))
    return Event("gpu.throttle.start", f"GPU {gpu.index} ({gpu.uuid}) throttling: {text}", "event", ("host",), ("start",),
                 "warning", code=text, reason=text, fields=_gpu_fields(gpu, pod, {"throttle": {"reasons": sorted(reasons)}}),
                 **_at(timestamp))


def throttle_stop(gpu: Gpu, reasons: tuple[str, ...], duration_seconds: float | None = None, pod: Pod | None = None,
                  timestamp: float | None = None) -> Event:
    """The throttling episode that `throttle_start` opened is over; `duration_seconds` is its length."""
    text = ",".join(sorted(reasons))
    return Event("gpu.throttle.stop", f"GPU {gpu.index} ({gpu.uuid}) stopped throttling: {text}", "event", ("host",),
                 ("end",), "info", code=text, reason=text, duration_seconds=duration_seconds,
                 fields=_gpu_fields(gpu, pod, {"throttle": {"reasons": sorted(reasons)}}), **_at(timestamp))


def inferenceservice_ready_changed(namespace: str, name: str, ready: bool, reason: str = "", url: str = "",
                                   timestamp: float | None = None) -> Event:
    """An InferenceService's Ready condition flipped; `reason` is the condition's reason (e.g. PredictorNotReady)."""
    state = "ready" if ready else "not ready"
    fields: dict[str, Any] = {"inferenceservice": {"namespace": namespace, "name": name, "ready": ready},
                              "workload": {"namespace": namespace}}
    if url:
        fields["url"] = {"full": url}
    return Event("inferenceservice.ready_changed", f"InferenceService {namespace}/{name} is {state}"
                 + (f": {reason}" if reason else ""), "state" if ready else "alert", ("web",), ("change",),
                 "info" if ready else "warning", code="Ready" if ready else "NotReady",
                 outcome="success" if ready else "failure", reason=reason, fields=fields, **_at(timestamp))


def probe_failed(target: str, reason: str, url: str = "", protocol: str = "", status_code: int | None = None,
                 duration_seconds: float | None = None, trace_id: str = "", model: str = "",
                 namespace: str = "", timestamp: float | None = None, span_id: str = "") -> Event:
    """An inference probe failed: `reason` as in gpulens_probe_success's reason label; the span's trace id links to Jaeger."""
    fields: dict[str, Any] = {"probe": {"target": target}}
    if protocol:
        fields["probe"]["protocol"] = protocol
    if model:
        fields["probe"]["model"] = model
    if url:
        fields["url"] = {"full": url}
    if status_code is not None:
        fields["http"] = {"response": {"status_code": status_code}}
    if namespace:
        fields["workload"] = {"namespace": namespace}
    extra: dict[str, Any] = {}
    if trace_id:
        extra["trace"] = {"trace": {"id": trace_id}, **({"span": {"id": span_id}} if span_id else {})}
    return Event("probe.failed", f"probe {target} failed: {reason}", "alert", ("web", "network"), ("error",), "error",
                 code=reason, outcome="failure", reason=reason, duration_seconds=duration_seconds, fields=fields,
                 **_at(timestamp), **extra)


# Clock-event reasons that mean the GPU is being held down; idle, application clocks, sync boost and
# display settings are normal operation, not a throttling episode.
THROTTLE_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


class ThrottleEpisodes:
    """Turns each GPU's clock-event bitmask, sample by sample, into throttle start/stop events.

    `update(gpu, mask, now)` returns `gpu.throttle.start` when a throttling reason appears on a GPU
    that had none, `gpu.throttle.stop` (with the episode's length) when the last one clears, else None.
    `bits` maps reason names to bits (exporters/gpu/nvml.py CLOCK_EVENT_REASONS).
    """

    def __init__(self, bits: Mapping[str, int]):
        self._bits = {name: bits[name] for name in THROTTLE_REASONS if name in bits}
        self._open: dict[str, tuple[float, tuple[str, ...]]] = {}  # uuid -> (start, reasons)

    def update(self, gpu: Gpu, mask: int | None, now: float, pod: Pod | None = None) -> Event | None:
        if mask is None:  # NotSupported or not read: no news
            return None
        reasons = tuple(name for name, bit in self._bits.items() if mask & bit)
        episode = self._open.get(gpu.uuid)
        if reasons and episode is None:
            self._open[gpu.uuid] = (now, reasons)
            return throttle_start(gpu, reasons, pod=pod, timestamp=now)
        if not reasons and episode is not None:
            del self._open[gpu.uuid]
            return throttle_stop(gpu, episode[1], duration_seconds=now - episode[0], pod=pod, timestamp=now)
        return None


def _at(timestamp: float | None) -> dict[str, Any]:
    return {} if timestamp is None else {"timestamp": timestamp}


# --- emitting -----------------------------------------------------------------------------------
class Sink(Protocol):
    def submit(self, document: Mapping[str, Any]) -> str: ...


class Emitter:
    """Writes each event to the `gpulens.events` logger (ECS JSON on stdout) and to the attached shippers."""

    def __init__(self, service: str = "gpulens", env: Mapping[str, str] | None = None,
                 logger: logging.Logger | None = None):
        self.context = logs.context(service, env)
        self.logger = logger or logging.getLogger("gpulens.events")
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()

    def attach(self, sink: Sink) -> None:
        with self._lock:
            self._sinks = [*self._sinks, sink]

    def detach(self, sink: Sink) -> None:
        with self._lock:
            self._sinks = [s for s in self._sinks if s is not sink]

    def emit(self, event: Event) -> dict[str, Any]:
        """Log and ship one event; returns its document. Never raises for a sink's sake."""
        doc = event.document(self.context)
        self.logger.log(_LOG_LEVELS[event.severity], event.message, extra={logs.DOCUMENT_ATTR: doc})
        for sink in self._sinks:
            try:
                sink.submit(doc)
            except Exception:  # noqa: BLE001 - an event must never break the component that saw it
                self.logger.exception("shipping an event failed")
        return doc


_default = Emitter()


def configure(service: str, env: Mapping[str, str] | None = None) -> Emitter:
    """Name the process's service in its events (call once at start-up, after logs.setup); keeps attached sinks."""
    global _default
    sinks = _default._sinks
    _default = Emitter(service, env)
    for sink in sinks:
        _default.attach(sink)
    return _default


def attach(sink: Sink) -> None:
    """Send every event of this process to `sink` as well (a `Shipper`)."""
    _default.attach(sink)


def detach(sink: Sink) -> None:
    _default.detach(sink)


def emit(event: Event) -> dict[str, Any]:
    """Emit one event through the process's emitter: stdout, and the attached shippers."""
    return _default.emit(event)
