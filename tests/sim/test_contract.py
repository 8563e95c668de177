"""Pin the simulated NVML to the installed pynvml: names, signatures, structs, error classes."""

from __future__ import annotations

import inspect
import pathlib
import re
from typing import Any

import pynvml
import pytest

import gpulens.sim.nvml as sim_nvml
from gpulens.sim import SIMULATED_FUNCTIONS, SimulatedNVML

# What the exporter calls; the sim must implement at least these.
REQUIRED = [
    "nvmlInit",
    "nvmlShutdown",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetSerial",
    "nvmlDeviceGetVbiosVersion",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetEncoderUtilization",
    "nvmlDeviceGetDecoderUtilization",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetTemperatureV",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetMaxPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetPcieReplayCounter",
    "nvmlDeviceGetPcieThroughput",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRetiredPages",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetNvLinkState",
    "nvmlDeviceGetNvLinkErrorCounter",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlGpmQueryDeviceSupport",
    "nvmlGpmSampleAlloc",
    "nvmlGpmSampleFree",
    "nvmlGpmSampleGet",
    "nvmlGpmMigSampleGet",
    "nvmlGpmMetricsGet",
    "nvmlEventSetCreate",
    "nvmlDeviceRegisterEvents",
    "nvmlDeviceGetSupportedEventTypes",
    "nvmlEventSetWait_v2",
    "nvmlEventSetFree",
]


def _field_names(struct: Any) -> list[str]:
    return [f[0] for f in struct._fields_]


@pytest.fixture
def nv() -> SimulatedNVML:
    sim = SimulatedNVML(count=2, model="h100", mig="3g.40gb+2x2g.20gb")
    sim.nvmlInit()
    return sim


def test_required_functions_are_simulated() -> None:
    assert set(REQUIRED) <= SIMULATED_FUNCTIONS


@pytest.mark.parametrize("name", sorted(SIMULATED_FUNCTIONS))
def test_signature_matches_pynvml(name: str) -> None:
    real = inspect.signature(getattr(pynvml, name))
    ours = inspect.signature(getattr(SimulatedNVML(count=1), name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in real.parameters.values()
    ]


def test_every_pynvml_name_the_sim_uses_exists() -> None:
    source = pathlib.Path(sim_nvml.__file__).read_text()
    used = set(re.findall(r"\bpynvml\.(\w+)", source))
    assert used, "the sim should refer to pynvml constants"
    assert sorted(n for n in used if not hasattr(pynvml, n)) == []


def test_returned_structs_are_the_real_ones(nv: SimulatedNVML) -> None:
    h = nv.nvmlDeviceGetHandleByIndex(0)
    memory = nv.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert isinstance(memory, pynvml.c_nvmlMemory_v2_t)
    assert isinstance(nv.nvmlDeviceGetMemoryInfo(h), pynvml.c_nvmlMemory_t)
    assert isinstance(nv.nvmlDeviceGetPciInfo(h), pynvml.nvmlPciInfo_t)
    assert isinstance(nv.nvmlGpmQueryDeviceSupport(h), pynvml.c_nvmlGpmSupport_t)
    assert isinstance(nv.nvmlGpmSampleAlloc(), pynvml.c_nvmlGpmSample_t)
    values = nv.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES])
    assert isinstance(values[0], pynvml.c_nvmlFieldValue_t)
    one_gpu = SimulatedNVML(count=1)
    one_gpu.nvmlInit()
    assert isinstance(one_gpu.nvmlDeviceGetUtilizationRates(one_gpu.nvmlDeviceGetHandleByIndex(0)), pynvml.c_nvmlUtilization_t)


def test_returned_objects_expose_real_fields(nv: SimulatedNVML) -> None:
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.set_processes(0, [(4242, 1 << 30, 1)])
    nv.privileged = True  # process queries on a MIG-enabled parent need root
    es = nv.nvmlEventSetCreate()
    nv.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, es)
    nv.inject_xid(0, 79)
    one_gpu = SimulatedNVML(count=1)
    one_gpu.nvmlInit()
    cases = {
        pynvml.c_nvmlMemory_v2_t: nv.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2),
        pynvml.c_nvmlUtilization_t: one_gpu.nvmlDeviceGetUtilizationRates(one_gpu.nvmlDeviceGetHandleByIndex(0)),
        pynvml.nvmlPciInfo_t: nv.nvmlDeviceGetPciInfo(h),
        pynvml.c_nvmlProcessInfo_t: nv.nvmlDeviceGetComputeRunningProcesses(h)[0],
        pynvml.c_nvmlFieldValue_t: nv.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP])[0],
        pynvml.c_nvmlEventData_t: nv.nvmlEventSetWait_v2(es, 100),
        pynvml.c_nvmlGpmSupport_t: nv.nvmlGpmQueryDeviceSupport(h),
    }
    for struct, obj in cases.items():
        missing = [name for name in _field_names(struct) if not hasattr(obj, name)]
        assert missing == [], f"{type(obj).__name__} lacks {struct.__name__} fields {missing}"


def test_strings_are_str(nv: SimulatedNVML) -> None:
    h = nv.nvmlDeviceGetHandleByIndex(0)
    for value in (
        nv.nvmlDeviceGetUUID(h),
        nv.nvmlDeviceGetName(h),
        nv.nvmlDeviceGetSerial(h),
        nv.nvmlDeviceGetVbiosVersion(h),
        nv.nvmlSystemGetDriverVersion(),
        nv.nvmlDeviceGetPciInfo(h).busId,
    ):
        assert isinstance(value, str)


def test_errors_are_real_nvml_error_subclasses() -> None:
    nv = SimulatedNVML(count=1, model="l4")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nv.nvmlDeviceGetFanSpeed(h)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nv.nvmlDeviceGetHandleByIndex(5)
    es = nv.nvmlEventSetCreate()
    with pytest.raises(pynvml.NVMLError_Timeout) as timeout:
        nv.nvmlEventSetWait_v2(es, 1)
    assert type(timeout.value) is pynvml.NVMLError_Timeout and timeout.value.value == pynvml.NVML_ERROR_TIMEOUT
    nv.lose_gpu(0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nv.nvmlDeviceGetPowerUsage(h)


def test_as_module_mirrors_pynvml(nv: SimulatedNVML) -> None:
    module = nv.as_module()
    assert module.__name__ == "pynvml"
    public = {n for n in dir(pynvml) if not n.startswith("_")}
    assert {n for n in dir(module) if not n.startswith("_")} == public
    assert module.nvmlDeviceGetCount() == 2
    assert module.NVMLError is pynvml.NVMLError and module.c_nvmlMemory_v2_t is pynvml.c_nvmlMemory_v2_t
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        module.nvmlDeviceGetBAR1MemoryInfo(module.nvmlDeviceGetHandleByIndex(0))
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        module.nvmlDeviceGetComputeRunningProcesses_v3(module.nvmlDeviceGetHandleByIndex(0))
