"""The NVML reader's error accounting and counter handling (issue 6 §2), on the simulated NVML."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pynvml

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.gpu.nvml import Caller
from gpulens.metrics import gpu as c
from gpulens.sim import SimulatedNVML
from tests.exporters.gpu.test_gpu_exporter import Clock, _families, _value

CFG = GpuExporterConfig(xid_events=False, pod_attribution=False)


def _errors(exporter: GpuExporter) -> dict[tuple[str, str], float]:
    return {(s.labels["function"], s.labels["error"]): s.value for s in _families(exporter).get(c.NVML_ERRORS.name, [])}


def _run(nv: SimulatedNVML, clock: Clock, cycles: int, cfg: GpuExporterConfig = CFG, step: float = 10.0) -> GpuExporter:
    exporter = GpuExporter(cfg, nv, "simulated", clock=clock)
    for _ in range(cycles):
        exporter.sampler.cycle()
        clock.tick(step)
    return exporter


def test_a_healthy_mig_node_grows_no_errors() -> None:
    clock = Clock()
    nv = SimulatedNVML(count=2, model="h100", mig="3g.40gb", clock=clock)
    exporter = _run(nv, clock, 60)  # 600 s: ten MIG rescans of six empty slots each
    first = _errors(exporter)
    assert not any(error == "NotFound" for _, error in first), first
    for _ in range(30):
        exporter.sampler.cycle()
        clock.tick(10.0)
    assert _errors(exporter) == first  # nothing grows on a healthy node


def test_not_supported_counted_once_per_gpu_and_function() -> None:
    clock = Clock()
    exporter = _run(SimulatedNVML(count=2, model="h100", clock=clock), clock, 5)
    errors = _errors(exporter)
    assert errors[("nvmlDeviceGetRetiredPages", "NotSupported")] == 2  # two causes asked, once per GPU
    assert errors[("nvmlDeviceGetFanSpeed", "NotSupported")] == 2


def test_gpm_failures_counted_once_per_run_under_the_failing_call() -> None:
    clock = Clock()
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    exporter = GpuExporter(CFG, nv, "simulated", clock=clock)
    exporter.sampler.cycle()
    nv.set_error("nvmlGpmSampleGet", pynvml.NVML_ERROR_UNKNOWN)
    for _ in range(20):
        clock.tick(1.0)
        exporter.sampler.cycle()
    errors = _errors(exporter)
    assert errors[("nvmlGpmSampleGet", "Unknown")] == 1
    assert ("nvmlGpmMetricsGet", "Unknown") not in errors
    nv.clear_error("nvmlGpmSampleGet")
    for _ in range(3):
        clock.tick(1.0)
        exporter.sampler.cycle()
    assert c.GPM_SM.name in _families(exporter)


class _FakeNvml:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> str:
        self.calls[handle] += 1
        if handle == "mig-a":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return "ok"

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        raise AttributeError("'c_nvmlFoo_t' object has no attribute 'bar'")  # a bug inside a binding


def test_not_supported_memory_is_per_handle_and_attribute_errors_are_not_function_not_found() -> None:
    fake, errors = _FakeNvml(), Counter[tuple[str, str]]()
    call = Caller(fake, errors)
    for _ in range(3):
        assert call("nvmlDeviceGetMemoryInfo", "mig-a") is None
        assert call("nvmlDeviceGetMemoryInfo", "mig-b") == "ok"  # another instance keeps answering
    assert fake.calls == {"mig-a": 1, "mig-b": 3}
    for _ in range(3):
        assert call("nvmlDeviceGetPowerUsage", "gpu") is None
    assert errors[("nvmlDeviceGetPowerUsage", "AttributeError")] == 3  # asked again each time, not remembered
    assert ("nvmlDeviceGetPowerUsage", "FunctionNotFound") not in errors
    assert call("nvmlDeviceGetNoSuchBinding", "gpu") is None
    assert errors[("nvmlDeviceGetNoSuchBinding", "FunctionNotFound")] == 1


def test_pcie_counters_stay_monotonic_across_wraps() -> None:
    clock = Clock()
    nv = SimulatedNVML(count=1, model="h100", clock=clock, pcie_counter_bits=34)
    nv.nvmlInit()
    nv.set_load(0, 1.0)
    exporter = GpuExporter(CFG, nv, "simulated", clock=clock)
    seen = []
    for _ in range(12):
        exporter.sampler.cycle()
        seen.append(_value(_families(exporter), c.PCIE_RX.name, gpu="0"))
        clock.tick(1.0)
    assert seen == sorted(seen) and seen[-1] > 1 << 34  # past the raw counter's range, never back


def test_processes_under_mig_without_root() -> None:
    clock = Clock()
    nv = SimulatedNVML(count=1, model="h100", mig="3g.40gb+2x2g.20gb", clock=clock)  # unprivileged
    exporter = _run(nv, clock, 2, replace(CFG, processes=True), step=1.0)
    s = _families(exporter)
    assert len(s[c.PROCESS_MEMORY.name]) == 3  # one inference process per instance
    assert not any(e == "NoPermission" for _, e in _errors(exporter))
