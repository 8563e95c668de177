"""What `gpulens top` shows, as plain data, and the pure functions that build it from instant vectors.

An instant vector is `[(labels, value), …]`, the shape of a Prometheus query result and of one family
parsed from an exporter's /metrics, so both sources share these builders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpulens.metrics import gpu as g

Labels = Mapping[str, str]
Vector = Sequence[tuple[Labels, float]]

# Clock-event reasons shown as flags, in the order a reader cares about them (gpu_idle is not a throttle).
THROTTLE_FLAGS = {
    "hw_thermal_slowdown": "HW-THERMAL",
    "sw_thermal_slowdown": "THERMAL",
    "hw_power_brake_slowdown": "POWER-BRAKE",
    "hw_slowdown": "HW-SLOW",
    "sw_power_cap": "PWR-CAP",
    "sync_boost": "SYNC",
    "applications_clocks_setting": "APP-CLK",
    "display_clock_setting": "DISPLAY",
    "gpu_idle": "idle",
}


@dataclass(frozen=True)
class GpuRow:
    gpu: str
    uuid: str
    name: str = ""
    up: bool = True
    utilization: float | None = None  # 0..1
    memory_used: float | None = None  # bytes
    memory_total: float | None = None
    power: float | None = None  # watts
    power_limit: float | None = None
    temperature: float | None = None  # celsius
    flags: tuple[str, ...] = ()
    pod: str = ""


@dataclass(frozen=True)
class ServiceRow:
    name: str  # namespace/inferenceservice
    model: str
    rps: float | None = None
    error_ratio: float | None = None
    p99: float | None = None  # seconds


@dataclass(frozen=True)
class ProbeRow:
    target: str
    model: str
    protocol: str
    success: bool | None
    latency: float | None = None  # seconds
    history: tuple[float, ...] = ()  # latency, oldest first


@dataclass(frozen=True)
class AlertRow:
    name: str
    severity: str
    state: str  # firing | pending
    summary: str = ""
    where: str = ""


@dataclass(frozen=True)
class TraceRow:
    trace_id: str
    target: str
    duration: float  # seconds
    ok: bool
    start_unix: float


@dataclass
class View:
    source: str
    gpus: list[GpuRow] = field(default_factory=list)
    services: list[ServiceRow] = field(default_factory=list)
    probes: list[ProbeRow] = field(default_factory=list)
    alerts: list[AlertRow] | None = None  # None: this source cannot tell (no Prometheus)
    traces: list[TraceRow] | None = None  # None: no span ring to read
    problems: list[str] = field(default_factory=list)  # what could not be read, one line each
    simulated: bool = False


def _by_gpu(vector: Vector) -> dict[str, float]:
    """uuid → value for whole-GPU series (a GPU with several pod rows keeps the first value)."""
    out: dict[str, float] = {}
    for labels, value in vector:
        out.setdefault(labels.get("uuid", ""), value)
    return out


def _gpu_sort_key(row: GpuRow) -> tuple[int, str]:
    return (int(row.gpu) if row.gpu.isdigit() else 1 << 30, row.uuid)


def build_gpus(vectors: Mapping[str, Vector]) -> list[GpuRow]:
    """GPU rows from the GPU exporter's families (keyed by family name)."""
    ident: dict[str, dict[str, str]] = {}
    for name in (g.GPU_INFO.name, g.GPU_UP.name, g.TEMP.name, g.MEM_TOTAL.name):
        for labels, _ in vectors.get(name, ()):
            entry = ident.setdefault(labels.get("uuid", ""), {"gpu": labels.get("gpu", "")})
            if labels.get("name"):
                entry["name"] = labels["name"]
            if labels.get("pod") and not entry.get("pod"):
                entry["pod"] = f"{labels.get('namespace', '')}/{labels['pod']}"
    util, used, total = (_by_gpu(vectors.get(f.name, ())) for f in (g.GPU_UTIL, g.MEM_USED, g.MEM_TOTAL))
    power, limit, temp, up = (_by_gpu(vectors.get(f.name, ())) for f in (g.POWER, g.POWER_LIMIT, g.TEMP, g.GPU_UP))
    flags: dict[str, list[str]] = {}
    for labels, value in vectors.get(g.CLOCK_EVENT.name, ()):
        reason = labels.get("reason", "")
        if value == 1 and reason in THROTTLE_FLAGS:
            flags.setdefault(labels.get("uuid", ""), []).append(reason)
    order = list(THROTTLE_FLAGS)
    rows = []
    for uuid, entry in ident.items():
        reasons = sorted(set(flags.get(uuid, [])), key=order.index)
        rows.append(GpuRow(entry["gpu"], uuid, entry.get("name", "").removeprefix("NVIDIA "), up.get(uuid, 1.0) == 1.0,
                           util.get(uuid), used.get(uuid), total.get(uuid), power.get(uuid), limit.get(uuid),
                           temp.get(uuid), tuple(THROTTLE_FLAGS[r] for r in reasons), entry.get("pod", "")))
    return sorted(rows, key=_gpu_sort_key)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets; None without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0 or not math.isinf(buckets[-1][0]):
        return None
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # the quantile is above the highest finite bucket
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return None


def service_name(labels: Labels) -> str:
    ns, isvc = labels.get("namespace", ""), labels.get("inferenceservice", "")
    return f"{ns}/{isvc}" if ns else isvc


def probe_key(labels: Labels) -> tuple[str, str, str]:
    return (labels.get("target", ""), labels.get("model", ""), labels.get("protocol", ""))


PROBE_TARGET_ATTRIBUTE = "gpulens.probe.target"  # set by the probe on each probe's root span
SHOWN_TRACES = 5


def build_traces(spans: Sequence[Mapping[str, object]]) -> list[TraceRow]:
    """The newest probe root spans from the span ring's JSON (`gpulens up`'s /spans), newest first."""
    rows = []
    for span in spans:
        attrs = span.get("attributes") or {}
        if span.get("parent_span_id") or not isinstance(attrs, Mapping) or PROBE_TARGET_ATTRIBUTE not in attrs:
            continue
        start = span.get("start_unix_nano", 0)
        duration = span.get("duration_seconds", 0.0)
        rows.append(TraceRow(str(span.get("trace_id", "")), str(attrs[PROBE_TARGET_ATTRIBUTE]),
                             float(duration) if isinstance(duration, (int, float)) else 0.0,
                             span.get("status") != "error",
                             float(start) / 1e9 if isinstance(start, (int, float)) else 0.0))
    return sorted(rows, key=lambda r: r.start_unix, reverse=True)[:SHOWN_TRACES]
