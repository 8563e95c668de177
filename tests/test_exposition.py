"""The cached renderer is byte-for-byte prometheus_client's output, in both formats."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
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
    gauge = GaugeMetricFamily("g", "g", labels=["pod"])
    gauge.add_metric(["a"], 1)
    renderer.render([gauge])
    gauge = GaugeMetricFamily("g", "g", labels=["pod"])
    gauge.add_metric(["b"], 1)
    text, _ = renderer.render([gauge])
    assert b'pod="a"' not in text
    assert len(renderer._prefixes) == 1
