"""Behaviour of the simulated NVML: moving values, MIG, GPM, events and every fault-injection method."""

from __future__ import annotations

import ctypes
import threading
import time

import pynvml
import pytest

from gpulens.sim import MODELS, SimulatedNVML, parse_simulate
from gpulens.sim.nvml import MIN_GPM_INTERVAL_S, NO_INSTANCE

V2 = pynvml.nvmlMemory_v2


class FakeClock:
    """A settable monotonic clock, so readings are exact and tests never sleep for values."""

    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _sim(clock: FakeClock, **kwargs: object) -> SimulatedNVML:
    nv = SimulatedNVML(clock=clock, **kwargs)  # type: ignore[arg-type]
    nv.nvmlInit()
    return nv


def test_uninitialized_calls_raise_until_init_and_after_last_shutdown() -> None:
    nv = SimulatedNVML(count=1)
    for call in (nv.nvmlDeviceGetCount, nv.nvmlSystemGetDriverVersion, nv.nvmlShutdown, nv.nvmlEventSetCreate):
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            call()
    nv.nvmlInit()
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.nvmlShutdown()
    assert nv.nvmlDeviceGetPowerUsage(h) > 0  # still one reference open
    nv.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetPowerUsage(h)


def test_identity_is_deterministic_per_seed(clock: FakeClock) -> None:
    a, b, c = _sim(clock, count=3), _sim(clock, count=3), _sim(clock, count=3, seed=1)

    def read(nv: SimulatedNVML) -> list[tuple[str, str, int]]:
        return [
            (nv.nvmlDeviceGetUUID(h), nv.nvmlDeviceGetPciInfo(h).busId, nv.nvmlDeviceGetPowerUsage(h))
            for h in map(nv.nvmlDeviceGetHandleByIndex, range(3))
        ]

    assert read(a) == read(b) != read(c)
    uuids = [u for u, _, _ in read(a)]
    assert len(set(uuids)) == 3 and all(u.startswith("GPU-sim-") for u in uuids)
    assert read(a)[0][1] == "00000000:18:00.0"


def test_energy_is_monotonic_and_integrates_power(clock: FakeClock) -> None:
    nv = _sim(clock, count=2)
    h = nv.nvmlDeviceGetHandleByIndex(1)
    last = nv.nvmlDeviceGetTotalEnergyConsumption(h)
    for _ in range(1000):  # 12 minutes: three load cycles, idle stretches included
        clock.advance(0.73)
        energy = nv.nvmlDeviceGetTotalEnergyConsumption(h)
        assert energy >= last
        last = energy
    nv.set_load(1, 0.5)
    power_mw = nv.nvmlDeviceGetPowerUsage(h)
    assert power_mw == (70 + 0.5 * (700 - 70)) * 1000
    clock.advance(10)
    assert nv.nvmlDeviceGetTotalEnergyConsumption(h) - last == pytest.approx(power_mw * 10, abs=2)


def test_values_follow_load(clock: FakeClock) -> None:
    nv = _sim(clock, count=1)
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.set_load(0, 0.0)
    assert nv.nvmlDeviceGetUtilizationRates(h).gpu == 0
    assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) & pynvml.nvmlClocksEventReasonGpuIdle
    assert nv.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) == MODELS["h100"].idle_sm_mhz
    assert nv.nvmlDeviceGetPerformanceState(h) == pynvml.NVML_PSTATE_8
    idle_temp = nv.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU)
    idle_used = nv.nvmlDeviceGetMemoryInfo(h, version=V2).used
    nv.set_load(0, 0.8)
    assert nv.nvmlDeviceGetUtilizationRates(h).gpu == 80
    assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) == 0
    assert nv.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) == nv.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
    assert nv.nvmlDeviceGetPerformanceState(h) == pynvml.NVML_PSTATE_0
    assert nv.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU) > idle_temp
    assert nv.nvmlDeviceGetMemoryInfo(h, version=V2).used > idle_used
    nv.set_load(0, None)
    readings = set()
    for _ in range(48):
        clock.advance(5)
        readings.add(nv.nvmlDeviceGetUtilizationRates(h).gpu)
    assert 0 in readings and max(readings) > 30  # the curve has an idle stretch and busy ones


@pytest.mark.parametrize("model", sorted(MODELS))
def test_memory_used_free_reserved_add_up(clock: FakeClock, model: str) -> None:
    nv = _sim(clock, count=2, model=model)
    for _ in range(50):
        clock.advance(3.1)
        for h in map(nv.nvmlDeviceGetHandleByIndex, range(2)):
            m = nv.nvmlDeviceGetMemoryInfo(h, version=V2)
            assert m.used + m.free + m.reserved == m.total == MODELS[model].memory_bytes
            v1 = nv.nvmlDeviceGetMemoryInfo(h)
            assert v1.used + v1.free == v1.total
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(0), version=7)


def test_mig_enumeration_not_found_slots_and_instance_memory(clock: FakeClock) -> None:
    nv = _sim(clock, count=2, mig="3g.40gb+2x2g.20gb")
    parent = nv.nvmlDeviceGetHandleByIndex(1)
    assert nv.nvmlDeviceGetMigMode(parent) == [pynvml.NVML_DEVICE_MIG_ENABLE] * 2
    assert nv.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
    migs = [nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, i) for i in range(3)]
    for i in range(3, 7):
        with pytest.raises(pynvml.NVMLError_NotFound):
            nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, i)
    assert [nv.nvmlDeviceGetName(m) for m in migs] == [
        "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
        "NVIDIA H100 80GB HBM3 MIG 2g.20gb",
        "NVIDIA H100 80GB HBM3 MIG 2g.20gb",
    ]
    assert len({nv.nvmlDeviceGetGpuInstanceId(m) for m in migs}) == 3
    assert {nv.nvmlDeviceGetComputeInstanceId(m) for m in migs} == {0}
    assert all(nv.nvmlDeviceGetUUID(m).startswith("MIG-sim-") for m in migs)
    assert all(nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m) == parent for m in migs)
    profiles = MODELS["h100"].mig_profiles
    for m, profile in zip(migs, ("3g.40gb", "2g.20gb", "2g.20gb"), strict=True):
        memory = nv.nvmlDeviceGetMemoryInfo(m, version=V2)
        assert memory.total == profiles[profile].memory_bytes
        assert memory.used + memory.free + memory.reserved == memory.total
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetUtilizationRates(parent)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetRemappedRows(parent)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetPowerUsage(migs[0])  # whole-GPU readings are not answered on a MIG handle
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetGpuInstanceId(parent)


def test_set_mig_re_enumerates(clock: FakeClock) -> None:
    nv = _sim(clock, count=1, model="a100-40gb", mig="7g.40gb")
    parent = nv.nvmlDeviceGetHandleByIndex(0)
    old = nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)
    es = nv.nvmlEventSetCreate()
    nv.nvmlDeviceRegisterEvents(parent, pynvml.nvmlEventMigConfigChange, es)
    nv.set_mig(0, "7x1g.5gb")
    assert nv.nvmlEventSetWait_v2(es, 100).eventType == pynvml.nvmlEventMigConfigChange
    assert len([nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, i) for i in range(7)]) == 7
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetUUID(old)  # instance 0 no longer exists
    nv.set_mig(0, None)
    assert nv.nvmlDeviceGetMigMode(parent) == [pynvml.NVML_DEVICE_MIG_DISABLE] * 2
    assert 0 <= nv.nvmlDeviceGetUtilizationRates(parent).gpu <= 100


@pytest.mark.parametrize(
    ("model", "layout", "message"),
    [
        ("h100", "8x1g.10gb", "1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"),
        ("h100", "4g.40gb+4g.40gb", "8/7 compute"),
        ("h100", "1g.5gb", "unknown term '1g.5gb'"),
        ("a100-40gb", "3g.40gb", "1g.5gb, 2g.10gb, 3g.20gb, 4g.20gb, 7g.40gb"),
        ("l4", "1g.10gb", "not MIG capable"),
    ],
)
def test_bad_mig_layout_names_what_is_allowed(model: str, layout: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("+", r"\+")):
        SimulatedNVML(count=1, model=model, mig=layout)


def test_mig_capability_per_model(clock: FakeClock) -> None:
    nv = _sim(clock, count=1, model="l4")
    h = nv.nvmlDeviceGetHandleByIndex(0)
    for call in (nv.nvmlDeviceGetMigMode, nv.nvmlDeviceGetMaxMigDeviceCount):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            call(h)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetNvLinkState(h, 0)


def test_lost_gpu_raises_until_restored(clock: FakeClock) -> None:
    nv = _sim(clock, count=2, mig="7x1g.10gb")
    h0, h1 = nv.nvmlDeviceGetHandleByIndex(0), nv.nvmlDeviceGetHandleByIndex(1)
    mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(h0, 0)
    uuid = nv.nvmlDeviceGetUUID(h0)
    nv.lose_gpu(0)
    for call in (
        lambda: nv.nvmlDeviceGetUUID(h0),
        lambda: nv.nvmlDeviceGetMemoryInfo(mig),
        lambda: nv.nvmlDeviceGetHandleByIndex(0),
        lambda: nv.nvmlDeviceGetPowerUsage(h0),
    ):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call()
    assert nv.nvmlDeviceGetPowerUsage(h1) > 0
    assert nv.nvmlDeviceGetCount() == 2
    nv.restore_gpu(0)
    assert nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(0)) == uuid
    assert nv.nvmlDeviceGetMemoryInfo(mig).total > 0


def test_fail_init() -> None:
    nv = SimulatedNVML(count=1)
    nv.fail_init()
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        nv.nvmlInit()
    nv.fail_init(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        nv.nvmlInit()
    nv.fail_init(None)
    nv.nvmlInit()
    assert nv.nvmlDeviceGetCount() == 1


def test_not_supported_and_errors_per_gpu_or_all(clock: FakeClock) -> None:
    nv = _sim(clock, count=2)
    h0, h1 = nv.nvmlDeviceGetHandleByIndex(0), nv.nvmlDeviceGetHandleByIndex(1)
    nv.set_not_supported("nvmlDeviceGetPowerUsage", gpu=1)
    assert nv.nvmlDeviceGetPowerUsage(h0) > 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetPowerUsage(h1)
    nv.set_error("nvmlDeviceGetTemperatureV", pynvml.NVML_ERROR_UNKNOWN)
    for h in (h0, h1):
        with pytest.raises(pynvml.NVMLError_Unknown):
            nv.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU)
    nv.clear_error("nvmlDeviceGetTemperatureV")
    nv.clear_error("nvmlDeviceGetPowerUsage", gpu=1)
    assert nv.nvmlDeviceGetPowerUsage(h1) > 0 and nv.nvmlDeviceGetTemperatureV(h0, pynvml.NVML_TEMPERATURE_GPU) > 0
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 3
    with pytest.raises(ValueError, match="not a simulated NVML function"):
        nv.set_error("nvmlDeviceGetPowerUsageTypo", pynvml.NVML_ERROR_UNKNOWN)
    with pytest.raises(ValueError, match="no simulated GPU 9"):
        nv.set_not_supported("nvmlDeviceGetPowerUsage", gpu=9)


def test_hang_blocks_until_event_set(clock: FakeClock) -> None:
    nv = _sim(clock, count=2)
    release = threading.Event()
    nv.hang("nvmlDeviceGetPowerUsage", release, gpu=0)
    result: list[int] = []
    caller = threading.Thread(target=lambda: result.append(nv.nvmlDeviceGetPowerUsage(nv.nvmlDeviceGetHandleByIndex(0))))
    caller.start()
    caller.join(timeout=0.3)
    assert caller.is_alive() and result == []
    assert nv.nvmlDeviceGetPowerUsage(nv.nvmlDeviceGetHandleByIndex(1)) > 0  # other GPUs answer
    release.set()
    caller.join(timeout=5)
    assert not caller.is_alive() and result and result[0] > 0


def test_latency(clock: FakeClock) -> None:
    nv = SimulatedNVML(count=1, clock=clock, latency={"nvmlDeviceGetPowerUsage": 0.05})
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    start = time.monotonic()
    nv.nvmlDeviceGetPowerUsage(h)
    assert time.monotonic() - start >= 0.05
    start = time.monotonic()
    nv.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_RX_BYTES)  # 20 ms by default, like the real call
    assert time.monotonic() - start >= 0.02
    nv.set_latency("nvmlDeviceGetPcieThroughput", 0)
    start = time.monotonic()
    nv.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    assert time.monotonic() - start < 0.02


def test_xid_reaches_registered_sets_only_and_wait_times_out(clock: FakeClock) -> None:
    nv = _sim(clock, count=2)
    h0, h1 = nv.nvmlDeviceGetHandleByIndex(0), nv.nvmlDeviceGetHandleByIndex(1)
    xids, ecc_only, other_gpu = nv.nvmlEventSetCreate(), nv.nvmlEventSetCreate(), nv.nvmlEventSetCreate()
    nv.nvmlDeviceRegisterEvents(h0, pynvml.nvmlEventTypeXidCriticalError, xids)
    nv.nvmlDeviceRegisterEvents(h0, pynvml.nvmlEventTypeDoubleBitEccError, ecc_only)
    nv.nvmlDeviceRegisterEvents(h1, pynvml.nvmlEventTypeXidCriticalError, other_gpu)
    nv.inject_xid(0, 94, gpu_instance_id=1, compute_instance_id=0)
    event = nv.nvmlEventSetWait_v2(xids, 1000)
    assert isinstance(event, pynvml.c_nvmlEventData_t)
    assert ctypes.cast(event.device, ctypes.c_void_p).value == ctypes.cast(h0, ctypes.c_void_p).value
    assert (event.eventType, event.eventData, event.gpuInstanceId, event.computeInstanceId) == (
        pynvml.nvmlEventTypeXidCriticalError,
        94,
        1,
        0,
    )
    for es in (xids, ecc_only, other_gpu):
        start = time.monotonic()
        with pytest.raises(pynvml.NVMLError_Timeout):
            nv.nvmlEventSetWait_v2(es, 50)
        assert time.monotonic() - start >= 0.04
    nv.add_ecc(0, uncorrected=1)
    assert nv.nvmlEventSetWait_v2(ecc_only, 100).eventType == pynvml.nvmlEventTypeDoubleBitEccError
    assert nv.nvmlDeviceGetSupportedEventTypes(h0) & pynvml.nvmlEventTypeXidCriticalError
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceRegisterEvents(h0, pynvml.nvmlEventTypeGpuRecoveryAction, xids)
    nv.nvmlEventSetFree(xids)
    nv.inject_xid(0, 13)  # no registered set left for XIDs: dropped
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlEventSetWait_v2(xids, 1)


def test_ten_thousand_xids_are_all_delivered_in_order(clock: FakeClock) -> None:
    nv = _sim(clock, count=4)
    es = nv.nvmlEventSetCreate()
    for i in range(4):
        nv.nvmlDeviceRegisterEvents(nv.nvmlDeviceGetHandleByIndex(i), pynvml.nvmlEventTypeXidCriticalError, es)
    received: list[int] = []

    def consume() -> None:
        while len(received) < 10_000:
            received.append(nv.nvmlEventSetWait_v2(es, 5000).eventData)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(10_000):
        nv.inject_xid(i % 4, i)
    consumer.join(timeout=30)
    assert not consumer.is_alive()
    assert received == list(range(10_000))


def test_wait_raises_gpu_is_lost_after_draining(clock: FakeClock) -> None:
    nv = _sim(clock, count=2)
    es = nv.nvmlEventSetCreate()
    nv.nvmlDeviceRegisterEvents(nv.nvmlDeviceGetHandleByIndex(1), pynvml.nvmlEventTypeXidCriticalError, es)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            nv.nvmlEventSetWait_v2(es, 10_000)
        except pynvml.NVMLError as err:
            outcome.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    nv.lose_gpu(1)  # wakes the waiter long before its 10 s timeout
    waiter.join(timeout=5)
    assert not waiter.is_alive() and isinstance(outcome[0], pynvml.NVMLError_GpuIsLost)
    nv.restore_gpu(1)
    nv.inject_xid(1, 79)
    nv.lose_gpu(1)
    assert nv.nvmlEventSetWait_v2(es, 100).eventData == 79  # queued events come first
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nv.nvmlEventSetWait_v2(es, 100)


def _gpm(nv: SimulatedNVML, first: object, second: object, ids: list[int]) -> list[tuple[int, float]]:
    mg = pynvml.c_nvmlGpmMetricsGet_t()
    mg.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    mg.numMetrics = len(ids)
    mg.sample1, mg.sample2 = first, second
    for i, metric_id in enumerate(ids):
        mg.metrics[i].metricId = metric_id
    nv.nvmlGpmMetricsGet(mg)
    return [(mg.metrics[i].nvmlReturn, mg.metrics[i].value) for i in range(len(ids))]


PERCENT_METRICS = [
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL,
    pynvml.NVML_GPM_METRIC_SM_UTIL,
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    pynvml.NVML_GPM_METRIC_FP16_UTIL,
    pynvml.NVML_GPM_METRIC_FP32_UTIL,
    pynvml.NVML_GPM_METRIC_FP64_UTIL,
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
]


def test_gpm_on_h100_reports_percentages_and_rates(clock: FakeClock) -> None:
    nv = _sim(clock, count=1)
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlGpmQueryDeviceSupport(h).isSupportedDevice == 1
    samples = [nv.nvmlGpmSampleAlloc(), nv.nvmlGpmSampleAlloc()]
    nv.nvmlGpmSampleGet(h, samples[0])
    for step in range(1, 300):  # the exporter's pattern: two samples, reused alternately
        clock.advance(1.0)
        newer, older = samples[step % 2], samples[(step + 1) % 2]
        nv.nvmlGpmSampleGet(h, newer)
        for ret, value in _gpm(nv, older, newer, PERCENT_METRICS):
            assert ret == pynvml.NVML_SUCCESS and 0.0 <= value <= 100.0
    nv.set_load(0, 0.5)
    pcie_field = [(pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, 0)]
    before = nv.nvmlDeviceGetFieldValues(h, pcie_field)[0].value.ullVal
    nv.nvmlGpmSampleGet(h, samples[0])
    clock.advance(2.0)
    nv.nvmlGpmSampleGet(h, samples[1])
    after = nv.nvmlDeviceGetFieldValues(h, pcie_field)[0].value.ullVal
    (ret, graphics), (_, rx_mib_s), (_, nvlink), (unknown, _) = _gpm(
        nv,
        samples[0],
        samples[1],
        [
            pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL,
            pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC,
            pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC,
            pynvml.NVML_GPM_METRIC_NVDEC_0_UTIL,
        ],
    )
    assert graphics == pytest.approx(50.0)
    assert rx_mib_s == pytest.approx((after - before) / 2.0 / 2**20, rel=1e-6)  # same traffic as the counters
    assert nvlink > 0 and unknown == pynvml.NVML_ERROR_NOT_SUPPORTED
    clock.advance(MIN_GPM_INTERVAL_S / 2)
    nv.nvmlGpmSampleGet(h, samples[0])
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # samples too close together
        _gpm(nv, samples[1], samples[0], PERCENT_METRICS)
    for sample in samples:
        nv.nvmlGpmSampleFree(sample)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlGpmSampleGet(h, samples[0])


def test_gpm_per_mig_instance(clock: FakeClock) -> None:
    nv = _sim(clock, count=1, mig="3g.40gb+4g.40gb")
    parent = nv.nvmlDeviceGetHandleByIndex(0)
    gi = nv.nvmlDeviceGetGpuInstanceId(nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, 1))
    first, second = nv.nvmlGpmSampleAlloc(), nv.nvmlGpmSampleAlloc()
    nv.nvmlGpmMigSampleGet(parent, gi, first)
    clock.advance(1)
    nv.nvmlGpmMigSampleGet(parent, gi, second)
    assert all(0 <= v <= 100 for _, v in _gpm(nv, first, second, PERCENT_METRICS))
    nv.nvmlGpmSampleGet(parent, second)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # one instance-wide, one GPU-wide sample
        _gpm(nv, first, second, PERCENT_METRICS)
    with pytest.raises(pynvml.NVMLError_NotFound):
        nv.nvmlGpmMigSampleGet(parent, 13, first)


def test_gpm_not_supported_on_l4(clock: FakeClock) -> None:
    nv = _sim(clock, count=1, model="l4")
    h = nv.nvmlDeviceGetHandleByIndex(0)
    assert nv.nvmlGpmQueryDeviceSupport(h).isSupportedDevice == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlGpmSampleGet(h, nv.nvmlGpmSampleAlloc())


def test_field_values(clock: FakeClock) -> None:
    nv = _sim(clock, count=1)
    h = nv.nvmlDeviceGetHandleByIndex(0)
    fields = [
        pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
        pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 17),
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 0),
    ]
    before = [v.value.ullVal for v in nv.nvmlDeviceGetFieldValues(h, fields)]
    clock.advance(30)
    values = nv.nvmlDeviceGetFieldValues(h, fields)
    assert all(v.nvmlReturn == pynvml.NVML_SUCCESS and v.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG for v in values)
    assert all(v.value.ullVal > b for v, b in zip(values, before, strict=True))
    assert values[2].scopeId == 17
    temp, links, bad_link, unknown = nv.nvmlDeviceGetFieldValues(
        h,
        [
            pynvml.NVML_FI_DEV_MEMORY_TEMP,
            pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT,
            (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 18),
            pynvml.NVML_FI_DEV_RETIRED_SBE,
        ],
    )
    assert temp.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT and 20 < temp.value.uiVal < 100
    assert links.value.uiVal == 18
    assert bad_link.nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT
    assert unknown.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED
    l4 = _sim(clock, count=1, model="l4")
    entries = l4.nvmlDeviceGetFieldValues(
        l4.nvmlDeviceGetHandleByIndex(0), [pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT, pynvml.NVML_FI_DEV_MEMORY_TEMP]
    )
    assert [e.nvmlReturn for e in entries] == [pynvml.NVML_ERROR_NOT_SUPPORTED] * 2


def test_health_counters(clock: FakeClock) -> None:
    nv = _sim(clock, count=2)
    h = nv.nvmlDeviceGetHandleByIndex(1)
    corrected, uncorrected = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    lifetime = nv.nvmlDeviceGetTotalEccErrors(h, corrected, pynvml.NVML_AGGREGATE_ECC)
    nv.add_ecc(1, corrected=3, uncorrected=1)
    assert nv.nvmlDeviceGetTotalEccErrors(h, corrected, pynvml.NVML_VOLATILE_ECC) == 3
    assert nv.nvmlDeviceGetTotalEccErrors(h, uncorrected, pynvml.NVML_VOLATILE_ECC) == 1
    assert nv.nvmlDeviceGetTotalEccErrors(h, corrected, pynvml.NVML_AGGREGATE_ECC) == lifetime + 3
    nv.add_remapped_rows(1, corr=2, unc=1, pending=True)
    assert nv.nvmlDeviceGetRemappedRows(h) == (2, 1, 1, 0)
    nv.add_pcie_replays(1, 5)
    assert nv.nvmlDeviceGetPcieReplayCounter(h) == 5
    nv.add_nvlink_errors(1, 3, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT, 7)
    assert nv.nvmlDeviceGetNvLinkErrorCounter(h, 3, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT) == 7
    assert nv.nvmlDeviceGetNvLinkErrorCounter(h, 2, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT) == 0
    assert nv.nvmlDeviceGetNvLinkState(h, 17) == pynvml.NVML_FEATURE_ENABLED
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetNvLinkState(h, 18)
    nv.set_throttle(1, pynvml.nvmlClocksEventReasonHwThermalSlowdown)
    nv.set_load(1, 0.5)
    assert nv.nvmlDeviceGetCurrentClocksEventReasons(h) == pynvml.nvmlClocksEventReasonHwThermalSlowdown
    nv.set_pcie_link(1, 3, 8)
    assert (nv.nvmlDeviceGetCurrPcieLinkGeneration(h), nv.nvmlDeviceGetCurrPcieLinkWidth(h)) == (3, 8)
    assert (nv.nvmlDeviceGetMaxPcieLinkGeneration(h), nv.nvmlDeviceGetMaxPcieLinkWidth(h)) == (5, 16)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetRetiredPages(h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)


def test_retired_pages_on_v100(clock: FakeClock) -> None:
    nv = _sim(clock, count=1, model="v100")
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.add_ecc(0, uncorrected=2)
    assert len(nv.nvmlDeviceGetRetiredPages(h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)) == 2
    assert nv.nvmlDeviceGetRetiredPages(h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS) == []
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetRemappedRows(h)


def test_processes(clock: FakeClock) -> None:
    nv = _sim(clock, count=1, mig="2x3g.40gb")
    parent = nv.nvmlDeviceGetHandleByIndex(0)
    migs = [nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, i) for i in range(2)]
    gis = [nv.nvmlDeviceGetGpuInstanceId(m) for m in migs]
    with pytest.raises(pynvml.NVMLError_NoPermission):  # the parent of MIG instances needs root
        nv.nvmlDeviceGetComputeRunningProcesses(parent)
    nv.privileged = True
    assert [p.gpuInstanceId for p in nv.nvmlDeviceGetComputeRunningProcesses(parent)] == gis  # one default per instance
    nv.set_processes(0, [(100, 5 << 30, gis[0]), (200, 7 << 30, gis[1]), (300, 1 << 30, gis[1])])
    assert [p.pid for p in nv.nvmlDeviceGetComputeRunningProcesses(parent)] == [100, 200, 300]
    only = nv.nvmlDeviceGetComputeRunningProcesses(migs[1])
    assert [(p.pid, p.usedGpuMemory, p.gpuInstanceId, p.computeInstanceId) for p in only] == [
        (200, 7 << 30, gis[1], 0),
        (300, 1 << 30, gis[1], 0),
    ]
    assert nv.nvmlDeviceGetMemoryInfo(migs[1], version=V2).used == 8 << 30
    plain = _sim(clock, count=1)
    plain.set_processes(0, [(42, 3 << 30)])
    (proc,) = plain.nvmlDeviceGetComputeRunningProcesses(plain.nvmlDeviceGetHandleByIndex(0))
    assert (proc.pid, proc.gpuInstanceId, proc.computeInstanceId) == (42, NO_INSTANCE, NO_INSTANCE)


def test_parse_simulate() -> None:
    assert parse_simulate("8") == (8, "h100")
    assert parse_simulate("4:a100-40gb") == (4, "a100-40gb")
    for bad in ("", "0", "-1", "x", "8:h200", "8:", "2:l4:x"):
        with pytest.raises(ValueError, match="a100-40gb, h100, l4, v100"):
            parse_simulate(bad)


def test_a_full_read_costs_microseconds(clock: FakeClock) -> None:
    nv = _sim(clock, count=64)
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(64)]
    fields = [pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, pynvml.NVML_FI_DEV_MEMORY_TEMP]
    start = time.process_time()
    for h in handles:
        nv.nvmlDeviceGetUtilizationRates(h)
        nv.nvmlDeviceGetMemoryInfo(h, version=V2)
        nv.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU)
        nv.nvmlDeviceGetPowerUsage(h)
        nv.nvmlDeviceGetTotalEnergyConsumption(h)
        nv.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
        nv.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
        nv.nvmlDeviceGetCurrentClocksEventReasons(h)
        nv.nvmlDeviceGetFieldValues(h, fields)
        nv.nvmlDeviceGetTotalEccErrors(h, 1, pynvml.NVML_VOLATILE_ECC)
        nv.nvmlDeviceGetRemappedRows(h)
        nv.nvmlDeviceGetPcieReplayCounter(h)
    per_gpu = (time.process_time() - start) / 64
    assert per_gpu < 1e-3  # typically ~30 µs; generous for slow CI


def test_default_processes_split_utilization_and_memory_exactly(clock: FakeClock) -> None:
    nv = _sim(clock, count=4)
    for index in range(4):
        h = nv.nvmlDeviceGetHandleByIndex(index)
        nv.set_load(index, 0.77)
        procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
        assert len(procs) == (2 if index % 2 else 1)
        assert sum(p.usedGpuMemory for p in procs) == nv.nvmlDeviceGetMemoryInfo(h, version=V2).used
        samples = nv.nvmlDeviceGetProcessUtilization(h, 0)
        rates = nv.nvmlDeviceGetUtilizationRates(h)
        assert {s.pid for s in samples} == {p.pid for p in procs}
        assert sum(s.smUtil for s in samples) == rates.gpu == 77
        assert sum(s.memUtil for s in samples) == rates.memory
        with pytest.raises(pynvml.NVMLError_NotFound):  # nothing newer than the last sample seen
            nv.nvmlDeviceGetProcessUtilization(h, samples[0].timeStamp)
        assert nv.nvmlDeviceGetGraphicsRunningProcesses(h) == []
        assert nv.nvmlDeviceGetMPSComputeRunningProcesses(h) == []
    nv.set_load(0, 0.0)
    assert nv.nvmlDeviceGetComputeRunningProcesses(nv.nvmlDeviceGetHandleByIndex(0)) == []  # idle runs nothing
    nv.set_processes(1, [(7, 1 << 30)], kind="mps")
    h1 = nv.nvmlDeviceGetHandleByIndex(1)
    assert [p.pid for p in nv.nvmlDeviceGetMPSComputeRunningProcesses(h1)] == [7]
    assert nv.nvmlDeviceGetComputeRunningProcesses(h1) == []


def test_handles_are_ctypes_pointers_and_mismatch_is_not_an_nvml_error(clock: FakeClock) -> None:
    nv = _sim(clock, count=2, mig=None)
    h = nv.nvmlDeviceGetHandleByIndex(1)
    assert isinstance(h, pynvml.c_nvmlDevice_t)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetPowerUsage(pynvml.c_nvmlDevice_t())  # a NULL pointer names no device
    nv.set_library_mismatch(True)
    with pytest.raises(pynvml.NVMLLibraryMismatchError) as err:
        nv.nvmlDeviceGetComputeRunningProcesses(h)
    assert not isinstance(err.value, pynvml.NVMLError)


def test_pcie_byte_counters_wrap(clock: FakeClock) -> None:
    nv = SimulatedNVML(count=1, clock=clock, pcie_counter_bits=33)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.set_load(0, 1.0)
    seen = []
    for _ in range(10):
        seen.append(nv.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES])[0].value.ullVal)
        clock.advance(1.0)
    assert all(v < 1 << 33 for v in seen) and any(b < a for a, b in zip(seen, seen[1:], strict=False))


def test_demo_pods_are_consistent_with_mig() -> None:
    from gpulens.sim.kubelet import demo_pods

    nv = SimulatedNVML(count=2, model="a100-40gb")
    nv.set_mig(1, "1g.5gb+2g.10gb")
    pods = demo_pods(nv.devices())
    held = {(resource, device) for pod in pods for _, resource, ids in pod.containers for device in ids}
    gpu0, gpu1 = nv.devices()
    assert ("nvidia.com/gpu", gpu0[0]) in held
    assert not any(device == gpu1[0] for _, device in held)  # a GPU in MIG mode is not also handed out whole
    assert {(r, d) for r, d in held if r.startswith("nvidia.com/mig-")} == {(f"nvidia.com/mig-{p}", u) for u, p in gpu1[1]}
