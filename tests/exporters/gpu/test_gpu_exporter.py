"""The GPU exporter end to end on the simulated NVML: families, conventions, and every failure mode."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.podresources.client import Allocation
from gpulens.metrics import gpu as c
from gpulens.sim import MODELS, SimulatedNVML

CFG = GpuExporterConfig(xid_events=False, pod_attribution=False, processes=True)


class Clock:
    """A manual monotonic clock shared by the simulated NVML and the exporter."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


class Pods:
    """Pod attribution with a fixed mapping (the real watcher has its own tests against a kubelet)."""

    def __init__(self, mapping: dict[str, tuple[Allocation, ...]] | None = None, fail: bool = False):
        self._mapping = mapping or {}
        self._fail = fail

    def mapping(self) -> dict[str, tuple[Allocation, ...]]:
        return self._mapping

    def collect(self):
        if self._fail:
            raise RuntimeError("collector bug")
        return iter(())


def _exporter(nv: SimulatedNVML, clock: Clock, cfg: GpuExporterConfig = CFG, pods=None) -> GpuExporter:
    return GpuExporter(cfg, nv, "simulated", hostname="node-1", pods=pods, clock=clock)


def _cycles(exporter: GpuExporter, clock: Clock, n: int = 3) -> None:
    for _ in range(n):
        exporter.sampler.cycle()
        clock.tick(1.0)


def _families(exporter: GpuExporter) -> dict[str, list]:
    text = exporter.render(False).decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    matches = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_h100_exports_every_supported_family(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    nv.set_processes(0, [(4242, 2 * 1024**3)])
    exporter = _exporter(nv, clock, replace(CFG, nvlink_per_link=True))
    _cycles(exporter, clock)
    samples = _families(exporter)
    # H100 is passively cooled and retires rows instead of pages: those two are absent, never 0.
    absent = {c.FAN.name, c.RETIRED_PAGES.name}
    mig_only = {f.name for f in c.families() if f.subsystem == "mig"}
    expected = [f for f in c.families()
                if f.subsystem in ("gpu", "gpm") and f.name not in absent | mig_only and f is not c.GPU_ALLOCATION]
    for family in expected:
        assert family.name in samples, family.name
    for name in absent:
        assert name not in samples
    assert _value(samples, c.PROCESS_MEMORY.name, gpu="0", pid="4242") == 2 * 1024**3
    assert _value(samples, c.NVML_UP.name) == 1.0
    assert _value(samples, c.BUILD_INFO.name, nvml="simulated") == 1.0


def test_units_and_consistency(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock)
    s = _families(exporter)
    total = _value(s, c.MEM_TOTAL.name, gpu="0")
    assert total == MODELS["h100"].memory_bytes
    assert _value(s, c.MEM_USED.name, gpu="0") <= total
    assert 0 <= _value(s, c.GPU_UTIL.name, gpu="0") <= 1
    assert _value(s, c.POWER.name, gpu="0") <= _value(s, c.POWER_LIMIT.name, gpu="0")
    assert _value(s, c.SM_CLOCK_MAX.name, gpu="0") > 1e9  # hertz, not MHz
    assert 0 <= _value(s, c.GPM_SM.name, gpu="0", gpu_instance_id="") <= 1
    energy_before = _value(s, c.ENERGY.name, gpu="0")
    _cycles(exporter, clock, 2)
    assert _value(_families(exporter), c.ENERGY.name, gpu="0") > energy_before


def test_identity_lives_on_info(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="l4", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 1)
    [info] = _families(exporter)[c.GPU_INFO.name]
    assert info.labels["uuid"].startswith("GPU-sim-")
    assert info.labels["name"] == "NVIDIA L4"
    assert info.labels["driver_version"] and info.labels["cuda_version"]
    assert "name" not in _families(exporter)[c.POWER.name][0].labels


def test_not_supported_is_remembered_not_retried(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 5)
    assert nv.calls["nvmlDeviceGetFanSpeed"] == 2  # once per GPU, then never again
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 10
    s = _families(exporter)
    assert _value(s, c.NVML_ERRORS.name, function="nvmlDeviceGetFanSpeed", error="NotSupported") == 2


def test_not_supported_on_one_gpu_only(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    nv.set_not_supported("nvmlDeviceGetPowerUsage", gpu=1)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock)
    s = _families(exporter)
    assert [x.labels["gpu"] for x in s[c.POWER.name]] == ["0"]


def test_lost_gpu_does_not_blank_the_others_and_comes_back(clock: Clock) -> None:
    nv = SimulatedNVML(count=3, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 2)
    nv.lose_gpu(1)
    _cycles(exporter, clock, 2)
    s = _families(exporter)
    assert _value(s, c.GPU_UP.name, gpu="1") == 0.0
    assert _value(s, c.GPU_UP.name, gpu="0") == 1.0
    assert sorted(x.labels["gpu"] for x in s[c.POWER.name]) == ["0", "2"]
    assert exporter.ready() == (True, "ok")  # one lost GPU is a GPU problem, not an exporter problem
    nv.restore_gpu(1)
    _cycles(exporter, clock, 1)
    s = _families(exporter)
    assert _value(s, c.GPU_UP.name, gpu="1") == 1.0
    assert sorted(x.labels["gpu"] for x in s[c.POWER.name]) == ["0", "1", "2"]


def test_driver_not_loaded_at_start_then_recovers(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    nv.fail_init(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 3)
    s = _families(exporter)
    assert _value(s, c.NVML_UP.name) == 0.0
    ready, reason = exporter.ready()
    assert not ready and "DriverNotLoaded" in reason
    assert c.POWER.name not in s
    attempts = nv.calls["nvmlInit"]
    assert 1 <= attempts < 3  # backoff: not retried on every cycle
    nv.fail_init(None)
    _cycles(exporter, clock, 8)
    s = _families(exporter)
    assert _value(s, c.NVML_UP.name) == 1.0
    assert exporter.ready() == (True, "ok")
    assert len(s[c.POWER.name]) == 2


def test_hung_nvml_call_stalls_only_the_sampler() -> None:
    nv = SimulatedNVML(count=2, model="h100")
    exporter = GpuExporter(replace(CFG, interval_seconds=0.05), nv, "simulated")
    release = threading.Event()
    exporter.start()
    try:
        _wait(lambda: exporter.ready() == (True, "ok"))
        nv.hang("nvmlDeviceGetPowerUsage", release)
        time.sleep(0.5)
        started = time.monotonic()
        body = exporter.render(False)
        assert time.monotonic() - started < 0.5  # served from the snapshot, not blocked on NVML
        age = _value(_families(exporter), c.SAMPLE_AGE.name)
        assert age > 0.2
        assert c.POWER.name.encode() in body
        ready, reason = exporter.ready()
        assert not ready and "stalled" in reason
        release.set()
        _wait(lambda: exporter.ready() == (True, "ok"))
    finally:
        release.set()
        exporter.stop()


def _wait(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_hang_before_the_first_sample_is_visible(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100")
    release = threading.Event()
    nv.hang("nvmlInit", release)
    exporter = GpuExporter(replace(CFG, interval_seconds=0.05, xid_events=True), nv, "simulated", clock=clock)
    exporter.start()
    try:
        clock.tick(30)
        s = _families(exporter)
        assert _value(s, c.NVML_UP.name) == 0.0  # present from the first scrape
        assert _value(s, c.SAMPLE_AGE.name) >= 30  # counted from start, not a fresh 0
        ready, reason = exporter.ready()
        assert not ready and "no sample yet" in reason
    finally:
        release.set()
        exporter.stop()


def test_xids_are_published_while_nvml_hangs() -> None:
    nv = SimulatedNVML(count=2, model="h100")
    exporter = GpuExporter(replace(CFG, interval_seconds=0.05, xid_events=True), nv, "simulated")
    release = threading.Event()
    exporter.start()
    try:
        _wait(lambda: exporter.ready() == (True, "ok") and exporter.events is not None and exporter.events.up)
        nv.hang("nvmlDeviceGetPowerUsage", release)
        time.sleep(0.2)
        nv.inject_xid(1, 79)
        _wait(lambda: any(x.value == 1 for x in _families(exporter).get(c.XID_ERRORS.name, [])))
        assert not exporter.ready()[0]  # the sampler is still stuck: the XID is what explains it
    finally:
        release.set()
        exporter.stop()


def test_render_failure_is_not_served_as_fresh(clock: Clock) -> None:
    class Broken(Pods):
        def collect(self):
            family = c.PODRES_UP.new()
            family.add_metric(["unexpected-label-value"], 1.0)  # wrong label count: fails while rendering
            return iter([family])

    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    exporter = _exporter(nv, clock, pods=Broken())
    _cycles(exporter, clock, 1)
    s = _families(exporter)
    assert _value(s, c.COLLECTOR_SUCCESS.name, collector="podresources") == 0.0
    assert c.POWER.name in s and c.PODRES_UP.name not in s
    ready, reason = exporter.ready()
    assert not ready and "podresources" in reason


def test_collector_failure_is_a_metric_not_an_outage(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    exporter = _exporter(nv, clock, pods=Pods(fail=True))
    _cycles(exporter, clock, 1)
    s = _families(exporter)
    assert _value(s, c.COLLECTOR_SUCCESS.name, collector="podresources") == 0.0
    assert _value(s, c.COLLECTOR_SUCCESS.name, collector="gpu") == 1.0
    assert c.POWER.name in s


def test_pod_labels_single_owner_and_time_sliced(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    nv.nvmlInit()
    uuid0 = nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(0))
    uuid1 = nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(1))
    owner = Allocation("models", "llama-0", "kserve-container", "nvidia.com/gpu")
    shared = (Allocation("dev", "a", "main", "nvidia.com/gpu"), Allocation("dev", "b", "main", "nvidia.com/gpu"))
    exporter = _exporter(nv, clock, pods=Pods({uuid0: (owner,), uuid1: shared}))
    _cycles(exporter, clock, 1)
    s = _families(exporter)
    [p0] = [x for x in s[c.POWER.name] if x.labels["gpu"] == "0"]
    assert (p0.labels["namespace"], p0.labels["pod"], p0.labels["container"]) == ("models", "llama-0", "kserve-container")
    [p1] = [x for x in s[c.POWER.name] if x.labels["gpu"] == "1"]
    assert (p1.labels["namespace"], p1.labels["pod"]) == ("", "")
    holders = sorted(x.labels["pod"] for x in s[c.GPU_ALLOCATION.name] if x.labels["uuid"] == uuid1)
    assert holders == ["a", "b"]


def test_mig_instances_and_absent_parent_families(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", mig="3g.40gb+2x2g.20gb", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 3)
    s = _families(exporter)
    infos = s[c.MIG_INFO.name]
    assert len(infos) == 6
    assert sorted({x.labels["mig_profile"] for x in infos}) == ["2g.20gb", "3g.40gb"]
    assert all(x.labels["uuid"].startswith("MIG-") for x in infos)
    totals = {x.labels["mig_profile"]: x.value for x in s[c.MIG_MEM_TOTAL.name] if x.labels["gpu"] == "0"}
    assert totals["3g.40gb"] == MODELS["h100"].mig_profiles["3g.40gb"].memory_bytes
    assert c.GPU_UTIL.name not in s  # NotSupported under MIG: absent, not 0
    assert c.REMAPPED_ROWS.name not in s
    assert _value(s, c.MIG_MODE.name, gpu="0") == 1.0
    gis = {x.labels["gpu_instance_id"] for x in s[c.GPM_SM.name] if x.labels["gpu"] == "0"}
    assert "" in gis and len(gis) == 4  # whole GPU + three instances
    # empty slots were asked once at the scan, not every cycle
    assert nv.calls["nvmlDeviceGetMigDeviceHandleByIndex"] == 2 * 7


def test_openmetrics_render(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 1)
    body = exporter.render(True)
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1
    assert c.SAMPLE_AGE.name.encode() in body


def _promtool_lint(promtool: str, body: bytes) -> tuple[int, list[str]]:
    out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    return out.returncode, (out.stdout.decode() + out.stderr.decode()).splitlines()


@pytest.mark.parametrize("spec", [dict(model="h100", mig=None), dict(model="a100-40gb", mig="7x1g.5gb"),
                                  dict(model="l4", mig=None), dict(model="h100", mig="3g.40gb+2x2g.20gb")])
def test_promtool_check_metrics(clock: Clock, promtool: str, spec: dict) -> None:
    nv = SimulatedNVML(count=8, clock=clock, **spec)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 3)
    assert _promtool_lint(promtool, exporter.render(False)) == (0, [])


def test_promtool_dcgm_compat_only_flags_dcgm_label_style(clock: Clock, promtool: str) -> None:
    """DCGM's camelCase labels and names (modelName, _PCIE_REPLAY_COUNTER) are the point; nothing else may lint."""
    nv = SimulatedNVML(count=8, model="h100", mig="7x1g.10gb", clock=clock)
    exporter = _exporter(nv, clock, replace(CFG, compat="dcgm"))
    _cycles(exporter, clock, 3)
    _, problems = _promtool_lint(promtool, exporter.render(False))
    assert problems, "expected promtool to notice DCGM's label style"
    assert all(p.startswith("DCGM_FI_") for p in problems), problems
    assert any("snake_case" in p for p in problems)


def test_driver_unloaded_mid_run_marks_gpus_down_then_recovers(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 2)
    nv.set_error("nvmlDeviceGetCount", pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    nv.fail_init(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    _cycles(exporter, clock, 2)
    s = _families(exporter)
    assert _value(s, c.NVML_UP.name) == 0.0
    assert [x.value for x in s[c.GPU_UP.name]] == [0.0, 0.0]  # known GPUs stay visible, as down
    assert c.POWER.name not in s
    assert not exporter.ready()[0]
    nv.clear_error("nvmlDeviceGetCount")
    nv.fail_init(None)
    _cycles(exporter, clock, 8)
    s = _families(exporter)
    assert _value(s, c.NVML_UP.name) == 1.0
    assert [x.value for x in s[c.GPU_UP.name]] == [1.0, 1.0]
    assert exporter.ready() == (True, "ok")


def test_error_counters_refresh_on_the_slow_interval(clock: Clock) -> None:
    """ECC, remaps and replays are re-read every SLOW_SECONDS, not every cycle, and then show the increase."""
    from gpulens.exporters.gpu.sampler import SLOW_SECONDS

    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 1)
    replay_calls = nv.calls["nvmlDeviceGetPcieReplayCounter"]
    nv.add_ecc(0, corrected=5, uncorrected=1)
    nv.add_remapped_rows(0, corr=2, unc=1, pending=True)
    nv.add_pcie_replays(0, 7)
    _cycles(exporter, clock, int(SLOW_SECONDS) + 1)
    assert nv.calls["nvmlDeviceGetPcieReplayCounter"] == replay_calls + 1
    s = _families(exporter)
    assert _value(s, c.ECC.name, gpu="0", type="uncorrected", scope="volatile") == 1.0
    assert _value(s, c.ECC.name, gpu="0", type="corrected", scope="volatile") == 5.0
    assert _value(s, c.REMAPPED_ROWS.name, gpu="0", type="uncorrectable") == 1.0
    assert _value(s, c.ROW_REMAP_PENDING.name, gpu="0") == 1.0
    assert _value(s, c.PCIE_REPLAY.name, gpu="0") == 7.0


def test_throttle_reasons_and_downgraded_pcie_link(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    nv.set_throttle(0, 0x40)  # HW thermal slowdown
    nv.set_pcie_link(0, 3, 8)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 1)
    s = _families(exporter)
    assert _value(s, c.CLOCK_EVENT.name, gpu="0", reason="hw_thermal_slowdown") == 1.0
    assert _value(s, c.CLOCK_EVENT.name, gpu="0", reason="hw_power_brake_slowdown") == 0.0
    assert (_value(s, c.PCIE_GEN.name, gpu="0"), _value(s, c.PCIE_WIDTH.name, gpu="0")) == (3.0, 8.0)
    assert (_value(s, c.PCIE_GEN_MAX.name, gpu="0"), _value(s, c.PCIE_WIDTH_MAX.name, gpu="0")) == (5.0, 16.0)


def test_driver_vanishing_during_enumeration_does_not_kill_the_sampler(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    nv.set_error("nvmlDeviceGetUUID", pynvml.NVML_ERROR_UNINITIALIZED)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 2)  # must not raise
    assert _value(_families(exporter), c.NVML_UP.name) == 0.0
    nv.clear_error("nvmlDeviceGetUUID")
    _cycles(exporter, clock, 8)
    s = _families(exporter)
    assert _value(s, c.NVML_UP.name) == 1.0
    assert all(x.labels["uuid"].startswith("GPU-sim-") for x in s[c.GPU_INFO.name])


def test_gpu_whose_core_calls_all_fail_is_down(clock: Clock) -> None:
    nv = SimulatedNVML(count=2, model="h100", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 1)
    for fn in ("nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage"):
        nv.set_error(fn, pynvml.NVML_ERROR_UNKNOWN, gpu=1)
    _cycles(exporter, clock, 1)
    s = _families(exporter)
    assert (_value(s, c.GPU_UP.name, gpu="0"), _value(s, c.GPU_UP.name, gpu="1")) == (1.0, 0.0)


def test_function_missing_from_the_driver_is_asked_once(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    nv.set_error("nvmlDeviceGetTemperatureV", pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 4)
    assert nv.calls["nvmlDeviceGetTemperatureV"] == 1


def test_mig_disabled_at_runtime_brings_back_utilization(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", mig="7x1g.10gb", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 2)
    assert c.GPU_UTIL.name not in _families(exporter)
    nv.set_mig(0, None)
    _cycles(exporter, clock, 3)
    s = _families(exporter)
    assert c.GPU_UTIL.name in s and c.REMAPPED_ROWS.name in s
    assert c.MIG_INFO.name not in s


def test_mig_layout_change_is_picked_up_next_cycle(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", mig="7x1g.10gb", clock=clock)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock, 2)
    nv.set_mig(0, "3g.40gb+2x2g.20gb")
    _cycles(exporter, clock, 2)
    profiles = sorted(x.labels["mig_profile"] for x in _families(exporter)[c.MIG_INFO.name])
    assert profiles == ["2g.20gb", "2g.20gb", "3g.40gb"]


def test_nvlink_defaults_to_per_gpu_totals(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    nv.nvmlInit()
    nv.add_nvlink_errors(0, 3, pynvml.NVML_NVLINK_ERROR_DL_REPLAY, 2)
    nv.add_nvlink_errors(0, 5, pynvml.NVML_NVLINK_ERROR_DL_REPLAY, 3)
    exporter = _exporter(nv, clock)
    _cycles(exporter, clock)
    s = _families(exporter)
    assert _value(s, c.NVLINK_LINKS.name, gpu="0") == 18 == _value(s, c.NVLINK_LINKS_UP.name, gpu="0")
    assert _value(s, c.NVLINK_ERRORS.name, gpu="0", type="replay") == 5
    assert c.NVLINK_UP.name not in s and c.NVLINK_LINK_TX.name not in s
    per_link = _exporter(nv, clock, replace(CFG, nvlink_per_link=True))
    _cycles(per_link, clock)
    p = _families(per_link)
    assert sum(x.value for x in p[c.NVLINK_LINK_TX.name]) == _value(p, c.NVLINK_TX.name, gpu="0")
    assert _value(p, c.NVLINK_LINK_ERRORS.name, gpu="0", link="5", type="replay") == 3


def test_dcgm_names_carry_nvml_integers_and_gpm_profiling(clock: Clock) -> None:
    nv = SimulatedNVML(count=1, model="h100", clock=clock)
    nv.nvmlInit()
    nv.set_load(0, 0.07)
    exporter = _exporter(nv, clock, replace(CFG, compat="dcgm"))
    _cycles(exporter, clock)
    text = exporter.render(False).decode()
    assert 'DCGM_FI_DEV_GPU_UTIL{' in text and "} 7.0\n" in text.split("DCGM_FI_DEV_GPU_UTIL{", 1)[1][:400]
    assert "000000000" not in "".join(line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_GPU_UTIL"))
    s = _families(exporter)
    assert _value(s, c.DCGM_ENC_UTIL.name, gpu="0") == 0.0
    assert 0 < _value(s, c.DCGM_PROF_TENSOR.name, gpu="0") < 1  # dashboard 12239's tensor panel has data
    mig = SimulatedNVML(count=1, model="a100-40gb", mig="7x1g.5gb", clock=clock)
    m = _families(_run_dcgm(mig, clock))
    assert c.DCGM_GPU_UTIL.name not in m  # NVML has no utilization under MIG, and no GPM on A100: absent, as README says
    hopper = SimulatedNVML(count=1, model="h100", mig="3g.40gb+2x2g.20gb", clock=clock)
    h = _families(_run_dcgm(hopper, clock))
    assert {x.labels["GPU_I_PROFILE"] for x in h[c.DCGM_PROF_GR_ENGINE.name]} == {"", "3g.40gb", "2g.20gb"}


def _run_dcgm(nv: SimulatedNVML, clock: Clock) -> GpuExporter:
    exporter = _exporter(nv, clock, replace(CFG, compat="dcgm"))
    _cycles(exporter, clock)
    return exporter


def test_a_dead_background_thread_fails_readyz() -> None:
    nv = SimulatedNVML(count=1, model="h100")
    exporter = GpuExporter(replace(CFG, interval_seconds=0.05, xid_events=True), nv, "simulated")
    exporter.start()
    try:
        _wait(lambda: exporter.ready() == (True, "ok"))
        assert exporter.events is not None
        exporter.events.loop.stop()  # as if the thread had died
        ready, reason = exporter.ready()
        assert not ready and reason == "background thread stopped: nvml-events"
    finally:
        exporter.stop()
