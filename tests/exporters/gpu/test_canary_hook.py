"""`gpulens gpu-exporter --canary`: the torch canary runs inside the exporter and its families join the scrape."""

from __future__ import annotations

import dataclasses

from gpulens.metrics import canary as canary_metrics
from gpulens.sim import SimulatedNVML
from tests.exporters.gpu.test_gpu_exporter import CFG, Clock, _cycles, _exporter, _families


def test_canary_results_are_served_with_the_gpu_families() -> None:
    clock = Clock()
    exporter = _exporter(SimulatedNVML(count=1, clock=clock), clock, dataclasses.replace(CFG, canary=True))
    assert exporter.canary is not None and exporter._canary_loop is not None
    exporter.canary.cfg = dataclasses.replace(exporter.canary.cfg, matmul_size=64, copy_bytes=1 << 16)  # CPU-sized
    exporter.canary.run_once()
    _cycles(exporter, clock, 1)
    samples = _families(exporter)
    assert [s.labels["device"] for s in samples[canary_metrics.SUCCESS.name]] == ["cpu"]
    assert samples[canary_metrics.SUCCESS.name][0].value == 1.0
    assert {s.labels["collector"]: s.value for s in samples["gpulens_collector_success"]}["canary"] == 1.0


def test_without_the_flag_no_torch_is_needed_and_no_canary_series() -> None:
    clock = Clock()
    exporter = _exporter(SimulatedNVML(count=1, clock=clock), clock)
    _cycles(exporter, clock, 1)
    assert exporter.canary is None and canary_metrics.SUCCESS.name not in _families(exporter)
