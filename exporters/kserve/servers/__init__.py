"""Model-server normalisers: one module per server kind, each a `TABLE` of mappings into gpulens families.

A server's /metrics text is parsed by prometheus_client's own parser; `normalise(text, table, model)`
then turns the samples each mapping names into gpulens families, keyed by model (and outcome for
request counts). Values come out in base units (Triton and TorchServe microsecond counters are
scaled to seconds). The README's server mapping table is generated from these tables
(`mapping_table()`), so code and docs cannot disagree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

from prometheus_client.parser import text_string_to_metric_families

from gpulens.metrics.family import Family

# kind → module name (queue-proxy is not a valid module name)
KINDS = {"kserve": "kserve", "triton": "triton", "torchserve": "torchserve", "vllm": "vllm", "queue-proxy": "queue_proxy"}

Outcome = str | Callable[[Mapping[str, str]], str]


@dataclass(frozen=True)
class Rule:
    """One source metric of one server → one gpulens family.

    `how`: counter (the counter's value), gauge, histogram (buckets passed through, `le` scaled),
    histogram_sum / histogram_count (one part of a source histogram, as a counter).
    """

    source: str
    target: Family
    how: str
    model_label: str = ""  # the server's label naming the model; "" → the InferenceService's model
    scale: float = 1.0  # to base units: 1e-6 for µs, 1e-3 for ms
    outcome: Outcome = ""  # requests_total outcome: a fixed value or a function of the sample's labels
    note: str = ""


Key = tuple[str, str, str]  # (gpulens family name, model, outcome or "")


@dataclass
class Hist:
    """One histogram's cumulative buckets (upper bound → count), sum and count."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0


@dataclass
class Normalised:
    """One endpoint's scrape in gpulens terms."""

    counters: dict[Key, float] = field(default_factory=dict)
    gauges: dict[Key, float] = field(default_factory=dict)
    histograms: dict[Key, Hist] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    samples: int = 0  # samples the server exposed (matched or not)


_PARTS = {"counter": ("", "_total"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
          "histogram_sum": ("_sum",), "histogram_count": ("_count",)}


def _index(table: Iterable[Rule]) -> dict[str, list[tuple[Rule, str]]]:
    index: dict[str, list[tuple[Rule, str]]] = {}
    for m in table:
        for part in _PARTS[m.how]:
            index.setdefault(m.source + part, []).append((m, part))
    return index


_INDEXES: dict[int, dict[str, list[tuple[Rule, str]]]] = {}


def _wanted(text: str, index: dict[str, list[tuple[Rule, str]]]) -> str:
    """Only the sample lines a mapping reads (a KServe pod also exposes ~40 process/GC lines, bucket
    lines of histograms only summed, …): prometheus_client's parser costs ~20-100 µs a line."""
    keep = []
    for line in text.splitlines():
        if line and line[0] != "#" and line.partition("{")[0].partition(" ")[0] in index:
            keep.append(line)
    return "\n".join(keep) + "\n" if keep else ""


def normalise(text: str, table: tuple[Rule, ...], default_model: str) -> Normalised:
    """Parse exposition text and map it; ValueError if prometheus_client cannot parse it.

    Lines no mapping reads are skipped before parsing; if none is left, the whole text is parsed,
    so a garbage body is still a ValueError and an empty one has `samples == 0`.
    """
    index = _INDEXES.get(id(table))
    if index is None:
        index = _INDEXES[id(table)] = _index(table)
    out = Normalised()
    wanted = _wanted(text, index)
    if not wanted:
        out.samples = sum(len(f.samples) for f in text_string_to_metric_families(text))
        return out
    for family in text_string_to_metric_families(wanted):
        for sample in family.samples:
            out.samples += 1
            matches = index.get(sample.name)
            if not matches:
                continue
            for m, part in matches:
                _add(out, m, part, sample.labels, float(sample.value), default_model)
    return out


def _add(out: Normalised, m: Rule, part: str, labels: Mapping[str, str], value: float, default_model: str) -> None:
    if value != value:  # NaN: a server with nothing to report yet
        return
    model = labels.get(m.model_label, "") if m.model_label else ""
    model = model or default_model
    out.models.add(model)
    outcome = m.outcome(labels) if callable(m.outcome) else m.outcome
    key = (m.target.name, model, outcome)
    if m.how == "gauge":
        out.gauges[key] = out.gauges.get(key, 0.0) + value * m.scale
    elif m.how in ("counter", "histogram_sum"):
        out.counters[key] = out.counters.get(key, 0.0) + value * m.scale
    elif m.how == "histogram_count":
        out.counters[key] = out.counters.get(key, 0.0) + value
    else:  # histogram: several label sets (versions, workers) of one model add up, bucket by bucket
        hist = out.histograms.setdefault(key, Hist())
        if part == "_bucket":
            le = float(labels.get("le", "+Inf"))
            bound = le * m.scale if le != float("inf") else le
            hist.buckets[bound] = hist.buckets.get(bound, 0.0) + value
        elif part == "_sum":
            hist.sum += value * m.scale
        else:
            hist.count += value


def module(kind: str) -> ModuleType:
    """The normaliser module of a server kind (KeyError for an unknown kind)."""
    return importlib.import_module(f"{__name__}.{KINDS[kind]}")


def table(kind: str) -> tuple[Rule, ...]:
    return module(kind).TABLE  # type: ignore[no-any-return]


def mapping_rows() -> list[tuple[str, str, str, str]]:
    """(server, source metric, gpulens family, how) for every mapping of every server."""
    rows = []
    for kind in KINDS:
        for m in table(kind):
            how = {"counter": "counter", "gauge": "gauge", "histogram": "histogram, buckets passed through",
                   "histogram_sum": "the histogram's `_sum`", "histogram_count": "the histogram's `_count`"}[m.how]
            if m.scale != 1.0:
                how += f", × {m.scale:g}"
            if isinstance(m.outcome, str) and m.outcome:
                how += f", outcome=`{m.outcome}`"
            if m.note:
                how += f"; {m.note}"
            rows.append((kind, m.source, m.target.name, how))
    return rows


BEGIN = "<!-- kserve-mapping:begin (generated from exporters/kserve/servers/) -->"
END = "<!-- kserve-mapping:end -->"


def mapping_table() -> str:
    """The README's server mapping table, between its markers."""
    lines = [BEGIN, "", "| server | server's metric | gpulens family | how |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | `{s}` | `{t}` | {h} |" for k, s, t, h in mapping_rows()]
    return "\n".join(lines + ["", END])


def update_readme(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + mapping_table() + text[end:]


__all__ = ["KINDS", "Hist", "Key", "Rule", "Normalised", "mapping_table", "module", "normalise", "table"]
