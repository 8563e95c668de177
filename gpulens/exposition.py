"""Render metric families to Prometheus text and OpenMetrics, fast, for a series set that rarely changes.

prometheus_client re-validates and re-escapes every label name and value on every render (about
10 µs a line, twice for two formats). An exporter re-rendering the same GPUs every second pays that
for labels that never change, so the escaped `name{labels} ` prefix of each series is cached and
only the value is formatted. HELP/TYPE headers are produced by prometheus_client itself (from an
empty family) and a test pins whole outputs to prometheus_client's byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpulens.metrics.family import Family

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

EOF = b"# EOF\n"


class _One:
    def __init__(self, family: Metric):
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class MetricFamily:
    """A gauge or counter family built for one render: rows of (label values, value), no per-sample dicts.

    Same `add_metric(labels, value)` as prometheus_client's GaugeMetricFamily/CounterMetricFamily,
    which allocate a dict and a Sample per series; `samples` builds those on demand (tests, parsers).
    """

    __slots__ = ("name", "type", "documentation", "labels", "rows", "_sample_name")

    def __init__(self, name: str, kind: str, documentation: str, labels: Sequence[str]):
        self.type = kind
        self.name = name.removesuffix("_total") if kind == "counter" else name  # as prometheus_client names it
        self._sample_name = self.name + "_total" if kind == "counter" else name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.rows: list[tuple[tuple[str, ...], float]] = []

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.rows.append((tuple(labels), value))

    @property
    def samples(self) -> list[Sample]:
        return [Sample(self._sample_name, dict(zip(self.labels, values, strict=True)), value)
                for values, value in self.rows]

    def to_metric(self) -> Metric:
        """The same family as a prometheus_client Metric (for comparing outputs with the library)."""
        metric = Metric(self.name, self.documentation, self.type)
        metric.samples = self.samples
        return metric


class Renderer:
    """Keeps header and series-prefix caches between renders; not thread-safe (one sampler calls it)."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._prefixes: dict[tuple[str, tuple[Any, ...]], str] = {}

    def render(self, families: Iterable[Metric | MetricFamily]) -> tuple[bytes, bytes]:
        """(text 0.0.4, OpenMetrics without the final `# EOF`) for the same families."""
        text: list[str] = []
        om: list[str] = []
        prefixes: dict[tuple[str, tuple[Any, ...]], str] = {}
        for family in families:
            text_header, om_header = self._header(family)
            lines = []
            if isinstance(family, MetricFamily):  # the fast path: label names once, values as a tuple
                name, names = family._sample_name, family.labels
                for values, value in family.rows:
                    key = (name, values)
                    prefix = prefixes.get(key) or self._prefixes.get(key) or self._prefix(name, zip(names, values, strict=True))
                    prefixes[key] = prefix
                    lines.append(prefix + floatToGoString(value) + "\n")
            else:
                for sample in family.samples:
                    pairs = tuple(sample.labels.items())
                    pair_key: tuple[str, tuple[Any, ...]] = (sample.name, pairs)
                    prefix = prefixes.get(pair_key) or self._prefixes.get(pair_key) or self._prefix(sample.name, pairs)
                    prefixes[pair_key] = prefix
                    lines.append(prefix + floatToGoString(sample.value) + "\n")
            body = "".join(lines)
            text.append(text_header + body)
            om.append(om_header + body)
        self._prefixes = prefixes  # keep only live series: vanished pods do not grow the cache
        return "".join(text).encode(), "".join(om).encode()

    def _header(self, family: Metric | MetricFamily) -> tuple[str, str]:
        key = (family.name, family.type, family.documentation)
        header = self._headers.get(key)
        if header is None:
            empty = Metric(family.name, family.documentation, family.type)
            header = (generate_latest(_One(empty)).decode(),  # type: ignore[arg-type]
                      generate_openmetrics(_One(empty)).decode().removesuffix(EOF.decode()))  # type: ignore[arg-type]
            self._headers[key] = header
        return header

    @staticmethod
    def _prefix(name: str, labels: Iterable[tuple[str, str]]) -> str:
        pairs = sorted(labels)  # sorted, as prometheus_client writes them
        if not pairs:
            return name + " "
        return name + "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "} "


AnyFamily = Any  # MetricFamily for gauges/counters, a prometheus_client family otherwise


def new_family(family: Family, extra_labels: tuple[str, ...] = ()) -> AnyFamily:
    """An empty exposition family for a catalogue `Family`: fast rows for gauges/counters, prometheus_client else."""
    labels = list(family.labels + extra_labels)
    if family.kind == "histogram":
        return HistogramMetricFamily(family.name, family.help, labels=labels)
    if family.kind in ("gauge", "counter"):
        return MetricFamily(family.name, family.kind, family.help, labels)
    raise ValueError(f"{family.name}: no fast family for kind {family.kind!r}")
