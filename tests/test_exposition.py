"""The cached renderer is byte-for-byte prometheus_client's output, in both formats."""

from __future__ import annotations

import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    Exemplar,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exposition import EOF, MetricFamily, Renderer
from gpulens.sim import SimulatedNVML


class _Registry:
    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _families() -> list[Metric]:
    counter = CounterMetricFamily("x_total", 'help with \\ and "quotes"\nand a newline', labels=["a"])
    counter.add_metric(['v"1\n\\'], 3)
    counter.add_metric(["plain"], 1.5e20)
    histogram = HistogramMetricFamily("h_seconds", "a histogram")
    histogram.add_metric([], [("0.1", 1), ("+Inf", 2)], 0.3)
    gauge = GaugeMetricFamily("g", "a gauge", labels=["a", "b"])
    gauge.add_metric(["1", "2"], float("nan"))
    gauge.add_metric(["1", "3"], 1e-7)
    gauge.add_metric(["1", "4"], float("-inf"))
    unlabelled = GaugeMetricFamily("u", "no labels")
    unlabelled.add_metric([], 42)
    return [counter, histogram, gauge, unlabelled]


def _assert_same(renderer: Renderer, families: list[Metric]) -> None:
    text, om = renderer.render(families)
    assert text == generate_latest(_Registry(families))  # type: ignore[arg-type]
    assert om + EOF == generate_openmetrics(_Registry(families))  # type: ignore[arg-type]


def test_edge_cases_match_prometheus_client() -> None:
    renderer = Renderer()
    _assert_same(renderer, _families())
    _assert_same(renderer, _families())  # second render comes from the caches


def test_fast_families_match_prometheus_client() -> None:
    counter = MetricFamily("x_total", "counter", 'help with \\ and "quotes"', ["a", "b"])
    counter.add_metric(['v"1\n\\', "z"], 3)
    gauge = MetricFamily("g_ratio", "gauge", "a gauge", ["zeta", "alpha"])  # label order != sorted order
    gauge.add_metric(["1", "2"], 0.25)
    gauge.add_metric(["1", "3"], float("nan"))
    fast = [counter, gauge]
    text, om = Renderer().render(fast)
    assert text == generate_latest(_Registry([f.to_metric() for f in fast]))  # type: ignore[arg-type]
    assert om + EOF == generate_openmetrics(_Registry([f.to_metric() for f in fast]))  # type: ignore[arg-type]


def test_whole_exporter_output_matches_prometheus_client() -> None:
    nv = SimulatedNVML(count=4, model="h100", mig="3g.40gb+2x2g.20gb")
    exporter = GpuExporter(GpuExporterConfig(pod_attribution=False, xid_events=False, compat="dcgm"), nv, "simulated")
    exporter.sampler.cycle()
    snapshot = exporter.sampler.snapshot
    families = [f for name, collect in exporter._collectors(snapshot).items() for f in collect() if f.samples]
    library = [f.to_metric() if isinstance(f, MetricFamily) else f for f in families]
    renderer = Renderer()
    for _ in range(3):
        text, om = renderer.render(families)
        assert text == generate_latest(_Registry(library))  # type: ignore[arg-type]
        assert om + EOF == generate_openmetrics(_Registry(library))  # type: ignore[arg-type]


def test_cache_forgets_vanished_series() -> None:
    renderer = Renderer()
    gauge = MetricFamily("g", "gauge", "g", ["pod"])
    gauge.add_metric(["a"], 1)
    renderer.render([gauge])
    gauge = MetricFamily("g", "gauge", "g", ["pod"])
    gauge.add_metric(["b"], 1)
    text, _ = renderer.render([gauge])
    assert b'pod="a"' not in text
    assert len(renderer._prefixes) == 1


def _library_cases() -> list[Metric]:
    """Everything the fast path does not write: exemplars, timestamps, _created, UTF-8 names, units, info."""
    histogram = HistogramMetricFamily("probe_duration_seconds", "latency", labels=["target"], unit="seconds")
    histogram.add_metric(["a"], [("0.1", 1, Exemplar({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}, 0.05, 1700000000.5)),
                                 ("+Inf", 3, None)], 0.9, timestamp=1700000001.25)
    counter = CounterMetricFamily("requests", "requests", labels=["code"], created=1700000000.0)
    counter.add_metric(["200"], 7, created=1700000000.0, timestamp=1700000002)
    with_exemplar = CounterMetricFamily("probe_requests", "with exemplar", labels=["code"])
    with_exemplar.add_metric(["200"], 7, exemplar=Exemplar({"trace_id": "abc"}, 1.0))
    gauge = GaugeMetricFamily("g_bytes", "timestamped", labels=["x"], unit="bytes")
    gauge.add_metric(["1"], 3, timestamp=1700000003.5)
    utf8 = GaugeMetricFamily("my.dotted.gauge", "UTF-8 name", labels=["label.with.dot"])
    utf8.add_metric(["v"], 1)
    summary = SummaryMetricFamily("s_seconds", "summary", labels=["q"], unit="seconds")
    summary.add_metric(["x"], 2, 0.5)
    info = InfoMetricFamily("build", "build info", labels=["v"])
    info.add_metric(["1"], {"version": "1.0"})
    return [histogram, counter, with_exemplar, gauge, utf8, summary, info]


def test_library_families_match_prometheus_client_byte_for_byte() -> None:
    renderer = Renderer()
    cases = _library_cases()
    for family in cases:
        _assert_same(renderer, [family])
    _assert_same(renderer, cases)
    text, om = renderer.render(cases)
    assert b"trace_id" in om and b"# UNIT g_bytes bytes" in om  # exemplars and units survive (OpenMetrics only)
    assert b"# HELP requests_created" in text  # _created is its own family in text format, as promtool wants


def test_fast_family_with_units_and_bad_rows() -> None:
    gauge = MetricFamily("x_bytes", "gauge", "bytes", ["a"], unit="bytes")
    gauge.add_metric(["1"], 2)
    text, om = Renderer().render([gauge])
    assert text == generate_latest(_Registry([gauge.to_metric()]))  # type: ignore[arg-type]
    assert om + EOF == generate_openmetrics(_Registry([gauge.to_metric()]))  # type: ignore[arg-type]
    assert b"# UNIT x_bytes bytes" in om
    bad = MetricFamily("y", "gauge", "y", ["a", "b"])
    bad.add_metric(["only-one"], 1)
    with pytest.raises(ValueError, match="label values"):
        Renderer().render([bad])


def test_catalogue_new_gives_fast_rows_or_library_families() -> None:
    from gpulens.metrics import gpu as c
    from gpulens.metrics.family import Family

    assert isinstance(c.POWER.new(), MetricFamily)
    hist = Family("h_seconds", "histogram", "h", ("a",), unit="seconds").new()
    hist.add_metric(["x"], [("1.0", 1), ("+Inf", 1)], 0.5)
    _, om = Renderer().render([hist])  # type: ignore[list-item]
    assert b"# UNIT h_seconds seconds" in om
    stamped = c.POWER.new_library()
    stamped.add_metric(["0", "u", "", "", ""], 1.0, timestamp=5)
    assert b" 1.0 5000" in Renderer().render([stamped])[0]  # type: ignore[list-item]
    with pytest.raises(ValueError, match="end with its unit"):
        Family("x_total", "counter", "x", unit="bytes")
