"""Render metric families to Prometheus text and OpenMetrics, fast, for a series set that rarely changes.

prometheus_client re-validates and re-escapes every label name and value on every render (about
10 µs a line, twice for two formats). An exporter re-rendering the same GPUs every sample pays that
for labels that never change, so the escaped `name{labels} ` prefix of each series is cached and
only the value is formatted — for plain gauges and counters built as `MetricFamily` rows, the only
shape the fast path takes. Every other family (histograms, summaries, info, state sets, anything with
exemplars, timestamps or `_created` samples, names outside the legacy character set) is rendered by
prometheus_client itself, so those are byte for byte the library's output; tests pin both paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from gpulens.metrics.family import Family

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

EOF = b"# EOF\n"
# Names the fast path may write unquoted (classic Prometheus names); anything else goes to the library.
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class ExpositionFamily(Metric):
    """The type `Family.new()` returns: a prometheus_client `Metric` you can `add_metric` rows to.

    At runtime it is a `MetricFamily` (plain gauges and counters, the fast path) or one of
    prometheus_client's `*MetricFamily` classes; this class only names what both offer, for type
    checkers (it is never instantiated). So collectors typed `Iterator[Metric]` keep checking.
    """

    def add_metric(self, labels: Sequence[str], value: Any, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


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
    No exemplars, timestamps or `_created`: families that need them are prometheus_client families.
    """

    __slots__ = ("name", "type", "documentation", "labels", "rows", "unit", "_sample_name")

    def __init__(self, name: str, kind: str, documentation: str, labels: Sequence[str], unit: str = ""):
        self.type = kind
        self.unit = unit
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
        metric = Metric(self.name, self.documentation, self.type, self.unit)
        metric.samples = self.samples
        return metric

    @property
    def fast(self) -> bool:
        """Whether the cached path can write it byte-exact (legacy names; label counts are checked per row)."""
        return _LEGACY_NAME.fullmatch(self._sample_name) is not None and all(_LEGACY_LABEL.fullmatch(n) for n in self.labels)


class Renderer:
    """Keeps header and series-prefix caches between renders; not thread-safe (one caller at a time)."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self._prefixes: dict[tuple[str, tuple[Any, ...]], str] = {}
        self._next: dict[tuple[str, tuple[Any, ...]], str] = {}

    def render(self, families: Iterable[Metric | MetricFamily | ExpositionFamily]) -> tuple[bytes, bytes]:
        """(text 0.0.4, OpenMetrics without the final `# EOF`) for the same families.

        Raises (ValueError) on a malformed family, e.g. a row with the wrong number of label values.
        """
        out = self.render_group(families)
        self.commit()
        return out

    def commit(self) -> None:
        """End a render made of several render_group() calls: the cache keeps only series seen since the last commit."""
        self._prefixes, self._next = self._next, {}

    def render_group(self, families: Iterable[Metric | MetricFamily | ExpositionFamily]) -> tuple[bytes, bytes]:
        """Like render(), for one part of a render (one collector); a part that raises leaves the others intact."""
        text: list[str] = []
        om: list[str] = []
        prefixes = self._next
        for family in families:
            if isinstance(family, MetricFamily) and family.fast:
                text_header, om_header = self._header(family)
                body = self._rows(family, prefixes)
                text.append(text_header + body)
                om.append(om_header + body)
            else:
                metric = family.to_metric() if isinstance(family, MetricFamily) else cast(Metric, family)
                text.append(generate_latest(_One(metric)).decode())  # type: ignore[arg-type]
                om.append(generate_openmetrics(_One(metric)).decode().removesuffix(EOF.decode()))  # type: ignore[arg-type]
        return "".join(text).encode(), "".join(om).encode()

    def _rows(self, family: MetricFamily, prefixes: dict[tuple[str, tuple[Any, ...]], str]) -> str:
        name, names = family._sample_name, family.labels
        lines = []
        for values, value in family.rows:
            key = (name, values)
            prefix = prefixes.get(key) or self._prefixes.get(key)
            if prefix is None:
                if len(values) != len(names):
                    raise ValueError(f"{family.name}: {len(values)} label values for labels {names}")
                prefix = self._prefix(name, zip(names, values, strict=True))
            prefixes[key] = prefix
            lines.append(prefix + floatToGoString(value) + "\n")
        return "".join(lines)

    def _header(self, family: MetricFamily) -> tuple[str, str]:
        key = (family.name, family.type, family.documentation, family.unit)
        header = self._headers.get(key)
        if header is None:
            empty = Metric(family.name, family.documentation, family.type, family.unit)
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


AnyFamily = ExpositionFamily  # kept for callers written against the earlier name


def new_family(family: Family, extra_labels: tuple[str, ...] = ()) -> ExpositionFamily:
    """An empty exposition family for a catalogue `Family`.

    Fast rows for plain gauges/counters; prometheus_client families (exemplars, timestamps and all)
    for histograms, summaries and info. Families that need exemplars or timestamps on a gauge or
    counter use `Family.new_library()`.
    """
    labels = list(family.labels + extra_labels)
    if family.kind in ("gauge", "counter"):
        return cast(ExpositionFamily, MetricFamily(family.name, family.kind, family.help, labels, family.unit))
    return new_library_family(family, extra_labels)


def new_library_family(family: Family, extra_labels: tuple[str, ...] = ()) -> ExpositionFamily:
    """The prometheus_client family for `family` (add_metric takes timestamp=, exemplar= where the library does)."""
    labels = list(family.labels + extra_labels)
    unit = family.unit if family.kind != "info" else ""
    lib: Metric
    if family.kind == "gauge":
        lib = GaugeMetricFamily(family.name, family.help, labels=labels, unit=unit)
    elif family.kind == "counter":
        lib = CounterMetricFamily(family.name, family.help, labels=labels, unit=unit)
    elif family.kind == "histogram":
        lib = HistogramMetricFamily(family.name, family.help, labels=labels, unit=unit)
    elif family.kind == "summary":
        lib = SummaryMetricFamily(family.name, family.help, labels=labels, unit=unit)
    elif family.kind == "info":
        from prometheus_client.core import InfoMetricFamily

        lib = InfoMetricFamily(family.name, family.help, labels=labels)
    else:
        raise ValueError(f"{family.name}: unknown kind {family.kind!r}")
    return cast(ExpositionFamily, lib)
