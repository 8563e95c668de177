"""SLOs as data: one YAML spec per service → SLI recording rules and multi-window, multi-burn-rate alerts.

Sloth's shape (Google SRE workbook, ch. 5), inference-aware: availability from the normalised
request counter, latency and time-to-first-token as "fraction of requests under T" read straight
off a histogram bucket, which is why T must be a bucket boundary of the source histogram.

    name: llama                      # unique; becomes the `slo` label
    source: server                   # server (the KServe exporter's model families) or probe
    selector: {namespace: models, inferenceservice: llama}
    window: 30d
    availability: 0.999              # objective: fraction of requests that succeed
    latency: {objective: 0.99, threshold_seconds: 0.5}
    ttft: {objective: 0.95, threshold_seconds: 1.0}     # LLM servers only
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpulens.alerts.rule import Alert, Group, Record, seconds, selector
from gpulens.metrics import kserve, probe
from gpulens.metrics.family import Family

# Histogram boundaries the sources expose: prometheus_client's defaults (the KServe Python server and
# the kserve exporter's normalised histogram) plus the LLM range. The probe's buckets include these.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)

ERRORS = "gpulens:slo_errors:ratio_rate{}"
OBJECTIVE = "gpulens:slo_objective:ratio"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# (severity, long window, short window, burn factor, for): page fast and slow burns, ticket the slow leak.
BURN_ALERTS = (
    ("critical", "1h", "5m", 14.4, "2m"),
    ("critical", "6h", "30m", 6.0, "15m"),
    ("warning", "3d", "6h", 1.0, "1h"),
)
KINDS = ("availability", "latency", "ttft")
SOURCES: dict[str, dict[str, Family]] = {
    "server": {"requests": kserve.REQUESTS, "latency": kserve.REQUEST_DURATION, "ttft": kserve.TTFT},
    "probe": {"requests": probe.FAILURES, "latency": probe.DURATION, "ttft": probe.TTFT},
}


class SloError(ValueError):
    """A spec that cannot become rules; the message names the file and the key."""


@dataclass(frozen=True)
class Objective:
    kind: str  # availability | latency | ttft
    objective: float
    threshold_seconds: float | None = None


@dataclass(frozen=True)
class Slo:
    name: str
    source: str
    selector: tuple[tuple[str, str], ...]
    window: str
    objectives: tuple[Objective, ...]


def go_float(x: float) -> str:
    """A bucket bound as Python prometheus_client writes `le` (1 → "1.0", 0.5 → "0.5")."""
    return repr(float(x))


def parse(doc: Any, origin: str) -> Slo:
    """Validate one spec; every problem names `origin` and the key."""
    if not isinstance(doc, dict):
        raise SloError(f"{origin}: expected a mapping")
    unknown = set(doc) - {"name", "source", "selector", "window", *KINDS}
    if unknown:
        raise SloError(f"{origin}: unknown keys {sorted(unknown)} (allowed: name, source, selector, window, {', '.join(KINDS)})")
    name = doc.get("name")
    if not isinstance(name, str) or not name.replace("-", "").isalnum():
        raise SloError(f"{origin}: name must be letters, digits and '-', got {name!r}")
    source = doc.get("source", "server")
    if source not in SOURCES:
        raise SloError(f"{origin}: source must be one of {sorted(SOURCES)}, got {source!r}")
    sel = doc.get("selector") or {}
    labels = set(SOURCES[source]["requests"].labels)
    if not isinstance(sel, dict) or not sel or not set(sel) <= labels:
        raise SloError(f"{origin}: selector must map some of {sorted(labels)} to values, got {sel!r}")
    window = doc.get("window", "30d")
    try:
        seconds(str(window))
    except ValueError as err:
        raise SloError(f"{origin}: window: {err}") from err
    objectives = []
    for kind in KINDS:
        if kind not in doc:
            continue
        spec = doc[kind]
        if kind == "availability":
            objective, threshold = spec, None
        else:
            if not isinstance(spec, dict) or set(spec) != {"objective", "threshold_seconds"}:
                raise SloError(f"{origin}: {kind} needs exactly objective and threshold_seconds")
            objective, threshold = spec["objective"], float(spec["threshold_seconds"])
            buckets = LATENCY_BUCKETS if kind == "latency" else TTFT_BUCKETS
            if threshold not in buckets:
                raise SloError(f"{origin}: {kind}.threshold_seconds {threshold:g} is not a bucket boundary of "
                               f"{SOURCES[source][kind].name} (one of {', '.join(f'{b:g}' for b in buckets)})")
        if not isinstance(objective, (int, float)) or not 0 < objective < 1:
            raise SloError(f"{origin}: {kind} objective must be a fraction in (0, 1), got {objective!r}")
        objectives.append(Objective(kind, float(objective), threshold))
    if not objectives:
        raise SloError(f"{origin}: no objective (one of {', '.join(KINDS)})")
    return Slo(name, source, tuple(sorted((str(k), str(v)) for k, v in sel.items())), str(window), tuple(objectives))


def load(directory: Path) -> list[Slo]:
    slos = [parse(yaml.safe_load(p.read_text()), str(p)) for p in sorted(directory.glob("*.yaml"))]
    names = [s.name for s in slos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SloError(f"{directory}: duplicate SLO names {dupes}")
    return slos


def _sli_errors(slo: Slo, obj: Objective, window: str) -> str:
    """The fraction of bad events over `window`."""
    fam = SOURCES[slo.source]
    sel = dict(slo.selector)
    if obj.kind == "availability":
        if slo.source == "server":
            bad = f'sum(rate({selector(fam["requests"].name, **sel, outcome="error")}[{window}]))'
            total = f"sum(rate({selector(fam['requests'].name, **sel)}[{window}]))"
        else:  # the probe counts failures; every probe lands in the duration histogram
            bad = f"sum(rate({selector(fam['requests'].name, **sel)}[{window}]))"
            total = f"sum(rate({selector(fam['latency'].name + '_count', **sel)}[{window}]))"
        return f"({bad} or vector(0))\n/\n{total}"
    hist = fam[obj.kind].name
    assert obj.threshold_seconds is not None
    good = f"sum(rate({selector(hist + '_bucket', **sel, le=go_float(obj.threshold_seconds))}[{window}]))"
    total = f"sum(rate({selector(hist + '_count', **sel)}[{window}]))"
    return f"1 - ({good}\n/\n{total})"


def _labels(slo: Slo, obj: Objective) -> tuple[tuple[str, str], ...]:
    return (("objective", obj.kind), ("slo", slo.name))


def records(slo: Slo) -> list[Record]:
    out = []
    for obj in slo.objectives:
        labels = _labels(slo, obj)
        out += [Record(ERRORS.format(w), _sli_errors(slo, obj, w), labels) for w in WINDOWS]
        out.append(Record(OBJECTIVE, f"vector({obj.objective:g})", labels))
        # The whole SLO window from the 5m ratio (as Sloth does): cheap, and survives restarts of nothing.
        out.append(Record(ERRORS.format(slo.window),
                          f'avg_over_time({selector(ERRORS.format("5m"), slo=slo.name, objective=obj.kind)}[{slo.window}])',
                          labels))
    return out


def alerts(slo: Slo) -> list[Alert]:
    out = []
    for obj in slo.objectives:
        budget = 1 - obj.objective
        kind = {"availability": "Availability", "latency": "Latency", "ttft": "Ttft"}[obj.kind]
        what = {"availability": "failing requests",
                "latency": f"requests slower than {obj.threshold_seconds or 0:g}s",
                "ttft": f"first tokens later than {obj.threshold_seconds or 0:g}s"}[obj.kind]
        for severity, long, short, factor, for_ in BURN_ALERTS:
            threshold = f"{factor * budget:.6g}"
            expr = (f'{selector(ERRORS.format(long), slo=slo.name, objective=obj.kind)} > {threshold}\n'
                    f'and {selector(ERRORS.format(short), slo=slo.name, objective=obj.kind)} > {threshold}')
            out.append(Alert(
                f"GpulensSlo{kind}BudgetBurn", expr, for_, severity,
                f"SLO {slo.name} {obj.kind}: error budget burning {factor:g}x over {long}",
                f"{{{{ $value | humanizePercentage }}}} {what} over {long} for SLO {slo.name} "
                f"(objective {obj.objective:.4g}, window {slo.window}): at {factor:g}x the budget lasts "
                f"{seconds(slo.window) / factor / 86400:.3g} days.",
                labels=(("long_window", long), ("objective", obj.kind), ("slo", slo.name)),
                runbook="GpulensSloBudgetBurn"))
    return out


def groups(slos: list[Slo]) -> list[Group]:
    out = []
    for slo in slos:
        # Records first in the same group: the burn-rate alerts read this evaluation's ratios.
        out.append(Group(f"gpulens-slo-{slo.name}", "slo", (*records(slo), *alerts(slo))))
    return out
