"""Read one GPU through NVML into an immutable reading, in base units.

The NVML module is injected (the real `pynvml` or `gpulens.sim.SimulatedNVML`), so the same code
runs on a GPU node, a laptop demo and the tests. A function that answers NotSupported for a device
is remembered and never called again for it: the family is simply absent for that GPU.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pynvml

# Clock-event reasons, one 0/1 series each (nvmlDeviceGetCurrentClocksEventReasons bitmask).
CLOCK_EVENT_REASONS = {
    "gpu_idle": pynvml.nvmlClocksEventReasonGpuIdle,
    "applications_clocks_setting": pynvml.nvmlClocksEventReasonApplicationsClocksSetting,
    "sw_power_cap": pynvml.nvmlClocksEventReasonSwPowerCap,
    "hw_slowdown": pynvml.nvmlClocksEventReasonHwSlowdown,
    "sync_boost": pynvml.nvmlClocksEventReasonSyncBoost,
    "sw_thermal_slowdown": pynvml.nvmlClocksEventReasonSwThermalSlowdown,
    "hw_thermal_slowdown": pynvml.nvmlClocksEventReasonHwThermalSlowdown,
    "hw_power_brake_slowdown": pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown,
    "display_clock_setting": pynvml.nvmlClocksEventReasonDisplayClockSetting,
}
NVLINK_ERROR_TYPES = {
    "replay": pynvml.NVML_NVLINK_ERROR_DL_REPLAY,
    "recovery": pynvml.NVML_NVLINK_ERROR_DL_RECOVERY,
    "crc_flit": pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT,
}
_FIELDS = (pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
           pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES, pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT)
MHZ = 1e6


class GpuLost(Exception):
    """The device answered GpuIsLost (fell off the bus, XID 79): abandon this GPU for this cycle."""


class NvmlDown(Exception):
    """NVML itself stopped answering (driver unloaded, library gone): re-initialise with backoff."""


_LOST = (pynvml.NVML_ERROR_GPU_IS_LOST,)
# Answers that will not change for this device while the driver stays loaded: remember, never re-ask.
_ABSENT = (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
_DOWN = (pynvml.NVML_ERROR_UNINITIALIZED, pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
         pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)


def error_name(err: BaseException) -> str:
    """`NVMLError_NotSupported` -> `NotSupported`: a stable, low-cardinality label value."""
    return type(err).__name__.removeprefix("NVMLError_") if isinstance(err, pynvml.NVMLError) else type(err).__name__


class Caller:
    """Calls NVML for one device: skips remembered NotSupported calls and counts errors by name.

    The NotSupported memory is keyed by (function, handle, arguments), so one MIG instance's answer
    never silences another's; a function is counted NotSupported once per device, whatever its args.
    """

    def __init__(self, nvml: Any, errors: Counter[tuple[str, str]]):
        self.nvml = nvml
        self.errors = errors
        self.unsupported: set[tuple[str, Any, tuple[Any, ...]]] = set()
        self._counted_absent: set[str] = set()

    def is_unsupported(self, fn: str, handle: Any, *args: Any) -> bool:
        return (fn, address(handle), args) in self.unsupported

    def __call__(self, fn: str, handle: Any, *args: Any, expected: tuple[int, ...] = ()) -> Any:
        """The call's result, or None when it failed; raises GpuLost / NvmlDown for the sampler.

        Arguments must be hashable (pass field id lists as tuples): they key the NotSupported memory.
        `expected` error codes are normal answers (an empty MIG slot's NotFound): None, not counted.
        """
        key = (fn, address(handle), args)
        if key in self.unsupported:
            return None
        try:
            function = getattr(self.nvml, fn)
        except AttributeError:  # an older pynvml without this binding: as absent as FunctionNotFound
            self._absent(key, "FunctionNotFound")
            return None
        try:
            return function(handle, *args)
        except pynvml.NVMLError as err:
            if err.value in expected:
                return None
            if err.value in _ABSENT:
                self._absent(key, error_name(err))
                return None
            self.errors[(fn, error_name(err))] += 1
            if err.value in _LOST:
                raise GpuLost(fn) from err
            if err.value in _DOWN:
                raise NvmlDown(fn) from err
            return None
        except pynvml.NVMLLibraryMismatchError:  # not an NVMLError: the unversioned process call on an older library
            self._absent(key, "LibraryMismatch")
            return None
        except (AttributeError, TypeError, ValueError) as err:  # a binding that broke inside: this answer only
            self.errors[(fn, type(err).__name__)] += 1
            return None

    def absent(self, fn: str, handle: Any, *args: Any) -> None:
        """Record a NotSupported answered inside a result (a field value's own return code)."""
        self._absent((fn, address(handle), args), "NotSupported")

    def _absent(self, key: tuple[str, Any, tuple[Any, ...]], error: str) -> None:
        self.unsupported.add(key)
        if key[0] not in self._counted_absent:  # once per device and function, as the help text says
            self._counted_absent.add(key[0])
            self.errors[(key[0], error)] += 1

    def forget_unsupported(self) -> None:
        """Ask everything again (MIG mode changed what the board supports)."""
        self.unsupported.clear()
        self._counted_absent.clear()


@dataclass(frozen=True)
class Identity:
    """What does not change while the driver is loaded: read once per enumeration."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    serial: str
    vbios_version: str


@dataclass(frozen=True)
class MigReading:
    """One MIG instance: identity and per-instance memory."""

    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    profile: str
    memory_total: float | None
    memory_used: float | None


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one instant, in base units; None = not supported here (the series is omitted)."""

    identity: Identity
    up: bool = True
    utilization: float | None = None
    memory_utilization: float | None = None
    encoder_utilization: float | None = None
    decoder_utilization: float | None = None
    memory_total: float | None = None
    memory_used: float | None = None
    memory_free: float | None = None
    memory_reserved: float | None = None
    temperature: float | None = None
    memory_temperature: float | None = None
    power: float | None = None
    power_limit: float | None = None
    power_enforced_limit: float | None = None
    energy: float | None = None
    fan: float | None = None
    pstate: float | None = None
    sm_clock: float | None = None
    memory_clock: float | None = None
    sm_clock_max: float | None = None
    memory_clock_max: float | None = None
    clock_events: int | None = None
    pcie_generation: float | None = None
    pcie_width: float | None = None
    pcie_max_generation: float | None = None
    pcie_max_width: float | None = None
    pcie_replays: float | None = None
    pcie_tx: float | None = None
    pcie_rx: float | None = None
    ecc: dict[tuple[str, str], float] = field(default_factory=dict)  # (corrected|uncorrected, volatile|aggregate)
    retired_pages: dict[str, float] = field(default_factory=dict)  # cause -> pages
    remapped_rows: tuple[float, float, float, float] | None = None  # corr, unc, pending, failure
    nvlink_links: float | None = None
    nvlink_up: dict[int, float] = field(default_factory=dict)
    nvlink_tx: dict[int, float] = field(default_factory=dict)
    nvlink_rx: dict[int, float] = field(default_factory=dict)
    nvlink_errors: dict[tuple[int, str], float] = field(default_factory=dict)
    processes: tuple[tuple[int, float], ...] = ()
    mig_mode: float | None = None
    mig: tuple[MigReading, ...] = ()
    gpm: dict[str, dict[str, float]] = field(default_factory=dict)  # "" (whole GPU) or GI id -> metric -> value


def read_identity(call: Caller, index: int, handle: Any) -> Identity:
    """Identity strings; a missing one is empty rather than failing enumeration."""
    pci = call("nvmlDeviceGetPciInfo", handle)
    return Identity(
        index=index,
        uuid=call("nvmlDeviceGetUUID", handle) or "",
        name=call("nvmlDeviceGetName", handle) or "",
        pci_bus_id=as_text(pci.busId) if pci is not None else "",
        serial=call("nvmlDeviceGetSerial", handle) or "",
        vbios_version=call("nvmlDeviceGetVbiosVersion", handle) or "",
    )


def as_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scaled(value: Any, factor: float) -> float | None:
    return None if value is None else value * factor


def _div(value: Any, divisor: float) -> float | None:
    """Unit conversion by division: 228343 mW / 1000 prints as 228.343, not 228.34300000000002."""
    return None if value is None else value / divisor


def read_gpu(call: Caller, identity: Identity, handle: Any, processes: bool,
             mig: Callable[[], tuple[float | None, tuple[MigReading, ...]]],
             gpm: Callable[[], dict[str, dict[str, float]]], previous: GpuReading | None = None) -> GpuReading:
    """Every per-GPU family in one pass; MIG and GPM readers are passed in (they keep state).

    Limits, maxima, error counters, link states and per-link NVLink byte counters change slowly or
    matter at scrape resolution only, and cost most of the calls (NVLink alone is 4 calls and 2 field
    structs per link): with a `previous` reading they are carried over and only the fast families are
    read. The sampler passes None every SLOW_SECONDS to refresh them.
    """
    fields = _read_fields(call, handle)
    links = int(fields.get(pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT, 0))
    fast = _read_fast(call, handle, fields, links, processes, mig, gpm)
    fast["nvlink_links"] = float(links) if links else None
    # A GPU whose core readings all just failed (Unknown, Timeout…) is down, not "up with no data".
    fast["up"] = any(fast[f] is not None for f, _ in _CORE) or all(call.is_unsupported(fn, handle, *args) for _, (fn, args) in _CORE)
    if previous is not None:
        return replace(previous, **fast)
    return GpuReading(identity=identity, **fast, **_read_slow(call, handle, links))


_CORE = (("memory_total", ("nvmlDeviceGetMemoryInfo", (pynvml.nvmlMemory_v2,))),
         ("power", ("nvmlDeviceGetPowerUsage", ())))


def _read_fast(call: Caller, handle: Any, fields: dict[int, float], links: int, processes: bool,
               mig: Callable[[], tuple[float | None, tuple[MigReading, ...]]],
               gpm: Callable[[], dict[str, dict[str, float]]]) -> dict[str, Any]:
    util = call("nvmlDeviceGetUtilizationRates", handle)
    enc = call("nvmlDeviceGetEncoderUtilization", handle)
    dec = call("nvmlDeviceGetDecoderUtilization", handle)
    mem = call("nvmlDeviceGetMemoryInfo", handle, pynvml.nvmlMemory_v2)
    mig_mode, mig_readings = mig()
    return dict(
        utilization=_div(util.gpu, 100) if util is not None else None,
        memory_utilization=_div(util.memory, 100) if util is not None else None,
        encoder_utilization=_div(enc[0], 100) if enc is not None else None,
        decoder_utilization=_div(dec[0], 100) if dec is not None else None,
        memory_total=mem.total if mem is not None else None,
        memory_used=mem.used if mem is not None else None,
        memory_free=mem.free if mem is not None else None,
        memory_reserved=mem.reserved if mem is not None else None,
        temperature=_temperature(call, handle),
        memory_temperature=fields.get(pynvml.NVML_FI_DEV_MEMORY_TEMP),
        power=_div(call("nvmlDeviceGetPowerUsage", handle), 1000),
        energy=_div(call("nvmlDeviceGetTotalEnergyConsumption", handle), 1000),
        fan=_div(call("nvmlDeviceGetFanSpeed", handle), 100),
        pstate=call("nvmlDeviceGetPerformanceState", handle),
        sm_clock=_scaled(call("nvmlDeviceGetClockInfo", handle, pynvml.NVML_CLOCK_SM), MHZ),
        memory_clock=_scaled(call("nvmlDeviceGetClockInfo", handle, pynvml.NVML_CLOCK_MEM), MHZ),
        clock_events=call("nvmlDeviceGetCurrentClocksEventReasons", handle),
        pcie_generation=call("nvmlDeviceGetCurrPcieLinkGeneration", handle),
        pcie_width=call("nvmlDeviceGetCurrPcieLinkWidth", handle),
        pcie_tx=fields.get(pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES),
        pcie_rx=fields.get(pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES),
        processes=_processes(call, handle, mig, bool(mig_readings)) if processes else (),
        mig_mode=mig_mode,
        mig=mig_readings,
        gpm=gpm(),
    )


def _temperature(call: Caller, handle: Any) -> float | None:
    """GetTemperatureV (drivers 570+), else the deprecated GetTemperature older drivers still have."""
    value = call("nvmlDeviceGetTemperatureV", handle, pynvml.NVML_TEMPERATURE_GPU)
    if value is None and call.is_unsupported("nvmlDeviceGetTemperatureV", handle, pynvml.NVML_TEMPERATURE_GPU):
        value = call("nvmlDeviceGetTemperature", handle, pynvml.NVML_TEMPERATURE_GPU)
    return value


def _read_slow(call: Caller, handle: Any, links: int) -> dict[str, Any]:
    remap = call("nvmlDeviceGetRemappedRows", handle)
    return dict(
        power_limit=_div(call("nvmlDeviceGetPowerManagementLimit", handle), 1000),
        power_enforced_limit=_div(call("nvmlDeviceGetEnforcedPowerLimit", handle), 1000),
        sm_clock_max=_scaled(call("nvmlDeviceGetMaxClockInfo", handle, pynvml.NVML_CLOCK_SM), MHZ),
        memory_clock_max=_scaled(call("nvmlDeviceGetMaxClockInfo", handle, pynvml.NVML_CLOCK_MEM), MHZ),
        pcie_max_generation=call("nvmlDeviceGetMaxPcieLinkGeneration", handle),
        pcie_max_width=call("nvmlDeviceGetMaxPcieLinkWidth", handle),
        pcie_replays=call("nvmlDeviceGetPcieReplayCounter", handle),
        ecc=_read_ecc(call, handle),
        retired_pages=_read_retired(call, handle),
        remapped_rows=tuple(float(v) for v in remap) if remap is not None else None,
        # Per-link byte counters too: 2 field structs per link cost ~0.3 ms of ctypes access per GPU
        # each read; counters stay exact, only 10 s coarser (GPM gives the live NVLink rate on Hopper).
        **_read_nvlink_bytes(call, handle, links),
        **_read_nvlink_health(call, handle, links),
    )


_VALUE_MEMBER = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
}


def field_value(fv: Any) -> float | None:
    """A c_nvmlFieldValue_t as a number, or None when NVML says this field failed."""
    if fv.nvmlReturn != pynvml.NVML_SUCCESS:
        return None
    return float(getattr(fv.value, _VALUE_MEMBER.get(fv.valueType, "ullVal")))


def _read_fields(call: Caller, handle: Any) -> dict[int, float]:
    """One batched nvmlDeviceGetFieldValues for the scalar fields; each field has its own return code."""
    values = call("nvmlDeviceGetFieldValues", handle, _FIELDS)
    out: dict[int, float] = {}
    for fv in values or ():
        value = field_value(fv)
        if value is not None:
            out[int(fv.fieldId)] = value
        elif fv.nvmlReturn == pynvml.NVML_ERROR_NOT_SUPPORTED:  # this board lacks the field: say so once
            call.absent("nvmlDeviceGetFieldValues", handle, int(fv.fieldId))
    return out


def _read_ecc(call: Caller, handle: Any) -> dict[tuple[str, str], float]:
    out = {}
    for type_name, etype in (("corrected", pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                             ("uncorrected", pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
        for scope, ctype in (("volatile", pynvml.NVML_VOLATILE_ECC), ("aggregate", pynvml.NVML_AGGREGATE_ECC)):
            value = call("nvmlDeviceGetTotalEccErrors", handle, etype, ctype)
            if value is not None:
                out[(type_name, scope)] = float(value)
    return out


def _read_retired(call: Caller, handle: Any) -> dict[str, float]:
    out = {}
    for cause, code in (("multiple_single_bit", pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
                        ("double_bit", pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)):
        pages = call("nvmlDeviceGetRetiredPages", handle, code)
        if pages is not None:
            out[cause] = float(len(pages))
    return out


def _read_nvlink_bytes(call: Caller, handle: Any, links: int) -> dict[str, dict[int, float]]:
    """All links' data counters in one batched field read (NVML reports them in KiB)."""
    tx: dict[int, float] = {}
    rx: dict[int, float] = {}
    if links:
        ids = tuple((fid, link) for link in range(links)
                    for fid in (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX))
        for fv in call("nvmlDeviceGetFieldValues", handle, ids) or ():
            value = field_value(fv)
            if value is not None:
                (tx if fv.fieldId == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX else rx)[int(fv.scopeId)] = value * 1024
    return {"nvlink_tx": tx, "nvlink_rx": rx}


def _read_nvlink_health(call: Caller, handle: Any, links: int) -> dict[str, Any]:
    up: dict[int, float] = {}
    errors: dict[tuple[int, str], float] = {}
    for link in range(links):
        state = call("nvmlDeviceGetNvLinkState", handle, link)
        if state is not None:
            up[link] = float(state)
        for name, counter in NVLINK_ERROR_TYPES.items():
            value = call("nvmlDeviceGetNvLinkErrorCounter", handle, link, counter)
            if value is not None:
                errors[(link, name)] = float(value)
    return {"nvlink_up": up, "nvlink_errors": errors}


def _processes(call: Caller, handle: Any, mig: Any, mig_enabled: bool) -> tuple[tuple[int, float], ...]:
    """Compute processes of the GPU; under MIG per instance handle (the parent needs root there)."""
    if mig_enabled and hasattr(mig, "processes"):
        return tuple(mig.processes())
    return read_processes(call, handle)


def read_processes(call: Caller, handle: Any) -> tuple[tuple[int, float], ...]:
    procs = call("nvmlDeviceGetComputeRunningProcesses", handle)
    if not procs:
        return ()
    # usedGpuMemory is None on Windows/WDDM or without permission: skip rather than report 0.
    used: dict[int, float] = {}
    for p in procs:  # a pid can appear once per MIG instance it runs on: one series per pid
        if p.usedGpuMemory is not None:
            used[int(p.pid)] = used.get(int(p.pid), 0.0) + float(p.usedGpuMemory)
    return tuple(sorted(used.items()))


def address(handle: Any) -> Any:
    """A hashable key for a device handle: real pynvml handles are ctypes pointers (unhashable by value)."""
    if isinstance(handle, ctypes._Pointer):
        return ctypes.cast(handle, ctypes.c_void_p).value
    return handle
