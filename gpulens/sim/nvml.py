"""Simulated NVML: pynvml's functions, structs and NVMLError codes over deterministic simulated GPUs.

`gpulens gpu-exporter --simulate 8:h100` runs the real exporter on it, so demos, dashboards, benchmarks
and tests need no GPU. Readings follow a seeded per-GPU load curve read lazily from an injected clock;
faults (lost GPUs, hangs, errors, XIDs, ECC, …) are injected through the methods below the NVML ones.

Units are NVML's own: mW, mJ, MHz, °C, bytes, KB/s for PcieThroughput; field values
NVML_FI_DEV_PCIE_COUNT_TX/RX_BYTES in bytes and NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX in KiB
(both cumulative); GPM utilisation metrics in percent (0-100) and GPM *_PER_SEC metrics in MiB/s.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import hashlib
import random
import struct
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import pynvml

from gpulens.sim.mig import MAX_MIG_DEVICES, MigSlot, parse_layout
from gpulens.sim.models import MODELS, MigProfile, Model

DRIVER_VERSION = "570.86.15"
CUDA_DRIVER_VERSION = 12080
NO_INSTANCE = 0xFFFFFFFF  # NVML's gpuInstanceId/computeInstanceId for "not a MIG process or event"
MIN_GPM_INTERVAL_S = 0.1  # closer samples make nvmlGpmMetricsGet raise NVMLError_InvalidArgument
MAX_PENDING_EVENTS = 10_000  # events raised before any set registered their GPU, kept for the first one

_BUCKET_S = 5.0  # the load curve is linear between seeded values 5 s apart ...
_BUCKETS = 48  # ... repeating every 4 minutes
_IDLE_BELOW = 0.01  # load under this reads as idle: GpuIdle reason, idle clocks, P8
_POWER_CAP_ABOVE = 0.95  # load over this reads as SwPowerCap with clocks pulled down
_IDLE_PCIE_BYTES_PER_S = 1e6
_PCIE_TX_SHARE = 0.4  # inference moves more data host->GPU (RX) than back
_NVLINK_RX_SHARE = 0.95
_MEMORY_TEMP_OFFSET_C = 6
_SAMPLING_PERIOD_US = 167_000
_PROCESS_INFO = struct.Struct("@IQII")  # c_nvmlProcessInfo_t's layout (pid, usedGpuMemory, gpuInstanceId, computeInstanceId)
_SAMPLE = struct.Struct("@IQIIII")  # c_nvmlProcessUtilizationSample_t's native layout (pid, timeStamp, sm, mem, enc, dec)
_EPOCH_US = 1_750_000_000_000_000  # process-utilization timestamps look like NVML's (µs since the epoch)
_MIB = 1 << 20
_BUS_IDS = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)  # an HGX board's 8 GPUs; 8 per PCI domain
_GPM_PERCENT_PER_LOAD = {  # percent at full load
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: 100.0,
    pynvml.NVML_GPM_METRIC_SM_UTIL: 95.0,
    pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: 60.0,
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 70.0,
    pynvml.NVML_GPM_METRIC_FP16_UTIL: 35.0,
    pynvml.NVML_GPM_METRIC_FP32_UTIL: 15.0,
    pynvml.NVML_GPM_METRIC_FP64_UTIL: 1.0,
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: 55.0,
}
# Functions that also answer on a MIG device handle; every other one raises NotSupported there.
_MIG_HANDLE_OK = frozenset(
    {
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetName",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetGpuInstanceId",
        "nvmlDeviceGetComputeInstanceId",
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        "nvmlDeviceGetComputeRunningProcesses",
    }
)
# pynvml functions that never touch the library, kept real in as_module().
_PURE_HELPERS = frozenset({"nvmlExceptionClass", "nvmlStructToFriendlyObject", "nvmlFriendlyObjectToStruct"})

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Method = Callable[Concatenate["SimulatedNVML", _P], _R]


def _fail(code: int) -> pynvml.NVMLError:
    """The real exception: NVMLError(code) constructs the NVMLError_<Name> subclass."""
    return pynvml.NVMLError(code)


@dataclass(frozen=True, slots=True)
class SimHandle:
    """What a device handle points at: a whole GPU (gi None) or one of its MIG devices (gi = GPU instance id).

    NVML functions hand out real `pynvml.c_nvmlDevice_t` pointers (as real pynvml does, so callers take
    the same `ctypes` paths); the sim maps their addresses back to a SimHandle. A SimHandle passed
    directly is accepted too (tests).
    """

    gpu: int
    gi: int | None = None


EventData = pynvml.c_nvmlEventData_t  # nvmlEventSetWait_v2's result: the real struct, `.device` a real pointer


class _Curve:
    """A load in 0..1, piecewise linear over a seeded 4-minute cycle with one idle stretch.

    Piecewise linear keeps its integral (energy, byte counters, GPM averages) exact and O(1) per read.
    `pin` overrides it (set_load); the integral stays continuous across pins by anchoring.
    """

    __slots__ = ("_prefix", "_state", "_v")

    def __init__(self, rng: random.Random) -> None:
        peak = rng.uniform(0.6, 1.0)
        v = [rng.uniform(0.25, 1.0) * peak for _ in range(_BUCKETS)]
        start, length = rng.randrange(_BUCKETS), rng.randint(3, 8)
        for k in range(start, start + length):
            v[k % _BUCKETS] = 0.0
        v.append(v[0])
        prefix = [0.0]
        for k in range(_BUCKETS):
            prefix.append(prefix[-1] + _BUCKET_S * (v[k] + v[k + 1]) / 2)
        self._v = v
        self._prefix = prefix
        # (pin, anchor time, integral at anchor, unpinned cumulative at anchor); one tuple so a
        # reader on another thread never sees half an update.
        self._state: tuple[float | None, float, float, float] = (None, 0.0, 0.0, 0.0)

    @property
    def pin(self) -> float | None:
        return self._state[0]

    def at(self, t: float) -> float:
        pin = self._state[0]
        if pin is not None:
            return pin
        x = t / _BUCKET_S
        n = int(x)
        k = n % _BUCKETS
        a = self._v[k]
        return a + (self._v[k + 1] - a) * (x - n)

    def integral(self, t: float) -> float:
        """Load-seconds since the simulation started."""
        pin, anchor_t, anchor_i, anchor_c = self._state
        if pin is not None:
            return anchor_i + pin * (t - anchor_t)
        return anchor_i + self._cumulative(t) - anchor_c

    def set_pin(self, t: float, pin: float | None) -> None:
        self._state = (pin, t, self.integral(t), self._cumulative(t))

    def _cumulative(self, t: float) -> float:
        x = t / _BUCKET_S
        n = int(x)
        cycles, k = divmod(n, _BUCKETS)
        f = x - n
        a, b = self._v[k], self._v[k + 1]
        return cycles * self._prefix[-1] + self._prefix[k] + _BUCKET_S * (a * f + (b - a) * f * f / 2)


def _uuid(prefix: str, key: str) -> str:
    h = hashlib.sha256(key.encode()).hexdigest()
    return f"{prefix}-sim-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class _Instance:
    """One MIG device: a GPU instance with one compute instance (id 0) and its own load curve."""

    def __init__(self, gpu: int, seed: int, slot: MigSlot) -> None:
        self.gi = slot.gpu_instance_id
        self.profile: MigProfile = slot.profile
        self.uuid = _uuid("MIG", f"{seed}:{gpu}:{self.gi}")
        self.curve = _Curve(random.Random(f"{seed}:{gpu}:{self.gi}"))
        self.handle: Any = SimHandle(gpu, self.gi)  # replaced by a ctypes pointer when attached
        self.pid = 30000 + 100 * gpu + self.gi  # one inference process per MIG instance by default


class _Gpu:
    """Mutable state of one simulated board: identity, load curve, injected counters, MIG layout."""

    def __init__(self, index: int, seed: int) -> None:
        rng = random.Random(f"{seed}:{index}")
        self.index = index
        self.uuid = _uuid("GPU", f"{seed}:{index}")
        self.serial = str(1650000000000 + rng.randrange(10**9))
        self.domain, self.bus = index // len(_BUS_IDS), _BUS_IDS[index % len(_BUS_IDS)]
        self.curve = _Curve(rng)
        self.temp_offset_c = rng.randint(0, 4)
        self.energy_base_mj = rng.randrange(10**8, 10**9)  # "since driver load", which predates us
        self.pcie_base_bytes = rng.randrange(10**10, 10**11)
        self.nvlink_base_bytes = rng.randrange(10**10, 10**11)
        self.ecc_volatile = [0, 0]  # indexed by NVML_MEMORY_ERROR_TYPE_CORRECTED/UNCORRECTED
        self.ecc_lifetime = [rng.randint(0, 20), 0]
        self.retired_pages: tuple[list[int], list[int]] = ([], [])  # by NVML_PAGE_RETIREMENT_CAUSE_*
        self.remapped_rows = [0, 0, 0, 0]  # corrected, uncorrected, pending, failure
        self.pcie_replays = 0
        self.nvlink_errors: collections.Counter[tuple[int, int]] = collections.Counter()
        self.throttle = 0
        self.processes: list[tuple[int, int, int]] = []  # pid, used bytes, gpu instance id (set_processes)
        self.process_kinds: dict[int, str] = {}  # pid -> compute|graphics|mps for set_processes' pids
        # set_process_utilization: pid -> share of the whole GPU (0..1) per engine: sm, encoder, decoder
        self.process_shares: dict[str, dict[int, float]] = {}
        # Default workload when set_processes was not called: (pid, share of the GPU's load and memory).
        self.default_processes = [(20000 + 100 * index + 1, 0.7), (20000 + 100 * index + 2, 0.3)] if index % 2 else \
            [(20000 + 100 * index + 1, 1.0)]
        self.pcie_link: tuple[int, int] | None = None
        self.instances: dict[int, _Instance] = {}  # by GPU instance id, in MIG device-index order


class _EventSet:
    """An event set: per-GPU registrations and a queue that Wait_v2 drains."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: collections.deque[pynvml.c_nvmlEventData_t] = collections.deque()
        self.registered: dict[int, tuple[int, object]] = {}  # gpu -> (event mask, handle pointer)
        self.freed = False


class _Sample:
    """What a GPM sample captured; the ctypes buffer behind the returned pointer lives here."""

    def __init__(self, buffer: ctypes.Array[ctypes.c_char]) -> None:
        self.buffer = buffer
        self.gpu = -1  # not taken yet
        self.gi: int | None = None
        self.t = 0.0
        self.integral = 0.0
        self.share = 1.0  # the fraction of the GPU's bandwidth this sample's scope sees


def _api(scope: str) -> Callable[[_Method[_P, _R]], _Method[_P, _R]]:
    """Wrap one simulated NVML function with what every call shares.

    Counting, the Uninitialized check (except scope "init"), handle or index validation, lost GPUs,
    then the injected latency, hang and error, in that order. scope: init, system, device, index.
    """

    def wrap(fn: _Method[_P, _R]) -> _Method[_P, _R]:
        name = fn.__name__
        first = fn.__code__.co_varnames[1] if fn.__code__.co_argcount > 1 else ""
        mig_ok = name in _MIG_HANDLE_OK

        def call(self: SimulatedNVML, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            self.calls[name] += 1
            if scope != "init" and not self._inits:
                raise _fail(pynvml.NVML_ERROR_UNINITIALIZED)
            gpu = None
            if scope == "device":
                resolved = self._check_handle(args[0] if args else kwargs[first], mig_ok)
                gpu = resolved.gpu
                if args:
                    args = (resolved, *args[1:])  # type: ignore[assignment]
                else:
                    kwargs[first] = resolved
            elif scope == "index":
                gpu = self._check_index(args[0] if args else kwargs[first])
            delay = self._latency.get(name)
            if delay:
                time.sleep(delay)
            if self._hangs:
                hang = self._hangs.get((name, gpu)) or self._hangs.get((name, None))
                if hang is not None:
                    hang.wait()
            if self._errors:
                code = self._errors.get((name, gpu)) or self._errors.get((name, None))
                if code is not None:
                    raise _fail(code)
            return fn(self, *args, **kwargs)

        functools.update_wrapper(call, fn)
        return call

    return wrap


class SimulatedNVML:
    """N simulated GPUs of one model behind pynvml's API, deterministic given `seed` and `clock`.

    Every `nvml*` method has the name, parameters and return shapes of the installed pynvml's
    function and raises the real pynvml.NVMLError subclasses. `clock` must be monotonic (seconds);
    readings are computed from it on each call. Event waits use real time.
    """

    def __init__(
        self,
        count: int = 8,
        model: str = "h100",
        mig: str | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        latency: dict[str, float] | None = None,
        privileged: bool = False,
        pcie_counter_bits: int = 40,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown GPU model {model!r}; models: {', '.join(sorted(MODELS))}")
        if count < 0:
            raise ValueError(f"GPU count must be >= 0, got {count}")
        self.model: Model = MODELS[model]
        self.calls: collections.Counter[str] = collections.Counter()
        self._seed = seed
        self._clock = clock
        self._t0 = clock()
        self._gpus = [_Gpu(i, seed) for i in range(count)]
        # Device handles are real c_nvmlDevice_t pointers; their addresses map back to what they name.
        self._by_address: dict[int, SimHandle] = {}
        self._buffers: list[ctypes.Array[ctypes.c_char]] = []
        self._handles = [self._pointer(SimHandle(i)) for i in range(count)]
        self.privileged = privileged  # process queries on a MIG-enabled GPU need root, as on real drivers
        self._pcie_wrap = 1 << pcie_counter_bits  # NVML's PCIe byte counters wrap; exporters must cope
        self._library_mismatch = False
        self._inits = 0
        self._lost: set[int] = set()
        self._errors: dict[tuple[str, int | None], int] = {}
        self._hangs: dict[tuple[str, int | None], threading.Event] = {}
        self._latency: dict[str, float] = {"nvmlDeviceGetPcieThroughput": 0.02}
        for name, seconds in (latency or {}).items():
            self.set_latency(name, seconds)
        self._samples: dict[int, _Sample] = {}
        self._event_sets: list[_EventSet] = []
        self._pending_events: dict[int, collections.deque[tuple[int, int, int, int]]] = {}
        self._lock = threading.Lock()
        if mig is not None:
            slots = parse_layout(mig, self.model)
            for gpu in self._gpus:
                self._apply_layout(gpu, slots)

    # ---- NVML: library and system ------------------------------------------------------------

    @_api("init")
    def nvmlInit(self) -> None:
        with self._lock:
            self._inits += 1

    @_api("system")
    def nvmlShutdown(self) -> None:
        with self._lock:
            self._inits -= 1

    @_api("system")
    def nvmlSystemGetDriverVersion(self) -> str:
        return DRIVER_VERSION

    @_api("system")
    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return CUDA_DRIVER_VERSION

    @_api("system")
    def nvmlDeviceGetCount(self) -> int:
        return len(self._gpus)

    @_api("index")
    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimHandle:
        return self._handles[index]

    # ---- NVML: identity ------------------------------------------------------------------------

    @_api("device")
    def nvmlDeviceGetUUID(self, handle: SimHandle) -> str:
        gpu = self._gpus[handle.gpu]
        return gpu.uuid if handle.gi is None else gpu.instances[handle.gi].uuid

    @_api("device")
    def nvmlDeviceGetName(self, handle: SimHandle) -> str:
        if handle.gi is None:
            return self.model.name
        return f"{self.model.name} MIG {self._gpus[handle.gpu].instances[handle.gi].profile.name}"

    @_api("device")
    def nvmlDeviceGetPciInfo(self, handle: SimHandle) -> pynvml.nvmlPciInfo_t:
        gpu = self._gpus[handle.gpu]
        info = pynvml.nvmlPciInfo_t()
        info.busIdLegacy = f"{gpu.domain:04X}:{gpu.bus:02X}:00.0".encode()
        info.domain, info.bus, info.device = gpu.domain, gpu.bus, 0
        info.pciDeviceId = self.model.pci_device_id
        info.pciSubSystemId = (self.model.pci_device_id & 0xFFFF0000) | 0x10DE
        info.busId = f"{gpu.domain:08X}:{gpu.bus:02X}:00.0".encode()
        return info

    @_api("device")
    def nvmlDeviceGetSerial(self, handle: SimHandle) -> str:
        return self._gpus[handle.gpu].serial

    @_api("device")
    def nvmlDeviceGetVbiosVersion(self, handle: SimHandle) -> str:
        return self.model.vbios

    # ---- NVML: utilisation, memory, thermals, power, clocks --------------------------------------

    @_api("device")
    def nvmlDeviceGetUtilizationRates(self, handle: SimHandle) -> pynvml.c_nvmlUtilization_t:
        """NotSupported on a MIG-enabled GPU, like the real driver (use GPM per instance)."""
        gpu = self._gpus[handle.gpu]
        if gpu.instances:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        load = gpu.curve.at(self._now())
        return pynvml.c_nvmlUtilization_t(gpu=round(load * 100), memory=round(load * 55))

    @_api("device")
    def nvmlDeviceGetEncoderUtilization(self, handle: SimHandle) -> list[int]:
        """[percent, sampling period µs]; inference does not use the video engines: 0 unless set_process_utilization set some."""
        return [round(100 * sum(self._gpus[handle.gpu].process_shares.get("encoder", {}).values())), _SAMPLING_PERIOD_US]

    @_api("device")
    def nvmlDeviceGetDecoderUtilization(self, handle: SimHandle) -> list[int]:
        """[percent, sampling period µs]; inference does not use the video engines: 0 unless set_process_utilization set some."""
        return [round(100 * sum(self._gpus[handle.gpu].process_shares.get("decoder", {}).values())), _SAMPLING_PERIOD_US]

    @_api("device")
    def nvmlDeviceGetMemoryInfo(self, handle: SimHandle, version: int | None = None) -> pynvml.c_nvmlMemory_t | pynvml.c_nvmlMemory_v2_t:
        """Bytes; v2 (version=pynvml.nvmlMemory_v2) splits out reserved. Per instance on a MIG handle."""
        total, reserved, used = self._memory(handle)
        if not version:
            # v1 counts the driver's reservation as used, as the real v1 call does
            return pynvml.c_nvmlMemory_t(total=total, free=total - reserved - used, used=used + reserved)
        if version != pynvml.nvmlMemory_v2:
            raise _fail(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return pynvml.c_nvmlMemory_v2_t(version=version, total=total, reserved=reserved, free=total - reserved - used, used=used)

    @_api("device")
    def nvmlDeviceGetTemperatureV(self, handle: SimHandle, sensor: int, version: int = pynvml.nvmlTemperature_v1) -> int:
        """°C; follows power (and so load) without lag."""
        if version != pynvml.nvmlTemperature_v1:
            raise _fail(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self._gpus[handle.gpu]
        return self._temperature(gpu, gpu.curve.at(self._now()))

    @_api("device")
    def nvmlDeviceGetPowerUsage(self, handle: SimHandle) -> int:
        """mW: idle power plus load times the span up to TDP."""
        m = self.model
        return round((m.idle_w + (m.tdp_w - m.idle_w) * self._gpus[handle.gpu].curve.at(self._now())) * 1000)

    @_api("device")
    def nvmlDeviceGetPowerManagementLimit(self, handle: SimHandle) -> int:
        return self.model.tdp_w * 1000

    @_api("device")
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: SimHandle) -> int:
        return self.model.tdp_w * 1000

    @_api("device")
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: SimHandle) -> int:
        """mJ since "driver load": the exact integral of the power curve, so it never decreases."""
        m, gpu, t = self.model, self._gpus[handle.gpu], self._now()
        return gpu.energy_base_mj + round(1000 * (m.idle_w * t + (m.tdp_w - m.idle_w) * gpu.curve.integral(t)))

    @_api("device")
    def nvmlDeviceGetClockInfo(self, handle: SimHandle, type: int) -> int:
        """MHz; SM/graphics/video drop to idle clocks when idle and below boost when power capped."""
        if type == pynvml.NVML_CLOCK_MEM:
            return self.model.mem_mhz
        sm = self._sm_clock(self._gpus[handle.gpu].curve.at(self._now()))
        if type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return sm
        if type == pynvml.NVML_CLOCK_VIDEO:
            return round(self.model.video_mhz * sm / self.model.max_sm_mhz)
        raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    @_api("device")
    def nvmlDeviceGetMaxClockInfo(self, handle: SimHandle, type: int) -> int:
        m = self.model
        clocks = {
            pynvml.NVML_CLOCK_SM: m.max_sm_mhz,
            pynvml.NVML_CLOCK_GRAPHICS: m.max_sm_mhz,
            pynvml.NVML_CLOCK_MEM: m.mem_mhz,
            pynvml.NVML_CLOCK_VIDEO: m.video_mhz,
        }
        if type not in clocks:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return clocks[type]

    @_api("device")
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: SimHandle) -> int:
        """Bitmask: GpuIdle when idle, SwPowerCap near TDP, ORed with set_throttle's mask."""
        gpu = self._gpus[handle.gpu]
        load = gpu.curve.at(self._now())
        if load < _IDLE_BELOW:
            return gpu.throttle | int(pynvml.nvmlClocksEventReasonGpuIdle)
        if load > _POWER_CAP_ABOVE:
            return gpu.throttle | int(pynvml.nvmlClocksEventReasonSwPowerCap)
        return gpu.throttle

    @_api("device")
    def nvmlDeviceGetPerformanceState(self, handle: SimHandle) -> int:
        """P8 when idle, P0 otherwise."""
        idle = self._gpus[handle.gpu].curve.at(self._now()) < _IDLE_BELOW
        return int(pynvml.NVML_PSTATE_8 if idle else pynvml.NVML_PSTATE_0)

    @_api("device")
    def nvmlDeviceGetFanSpeed(self, handle: SimHandle) -> int:
        """Every simulated board is passively cooled (datacenter), so NotSupported."""
        raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)

    # ---- NVML: PCIe ----------------------------------------------------------------------------

    @_api("device")
    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: SimHandle) -> int:
        link = self._gpus[handle.gpu].pcie_link
        return self.model.pcie_gen if link is None else link[0]

    @_api("device")
    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: SimHandle) -> int:
        link = self._gpus[handle.gpu].pcie_link
        return self.model.pcie_width if link is None else link[1]

    @_api("device")
    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: SimHandle) -> int:
        return self.model.pcie_gen

    @_api("device")
    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: SimHandle) -> int:
        return self.model.pcie_width

    @_api("device")
    def nvmlDeviceGetPcieReplayCounter(self, handle: SimHandle) -> int:
        return self._gpus[handle.gpu].pcie_replays

    @_api("device")
    def nvmlDeviceGetPcieThroughput(self, device: SimHandle, counter: int) -> int:
        """KB/s over the last 20 ms; sleeps 20 ms by default like the real call (see set_latency)."""
        load = self._gpus[device.gpu].curve.at(self._now())
        if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES:
            share = _PCIE_TX_SHARE
        elif counter == pynvml.NVML_PCIE_UTIL_RX_BYTES:
            share = 1.0
        else:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int((_IDLE_PCIE_BYTES_PER_S + self.model.pcie_peak_bytes_per_s * share * load) / 1024)

    # ---- NVML: field values --------------------------------------------------------------------

    @_api("device")
    def nvmlDeviceGetFieldValues(
        self, handle: SimHandle, fieldIds: Sequence[int | tuple[int, int]]
    ) -> ctypes.Array[pynvml.c_nvmlFieldValue_t]:
        """Cumulative PCIe bytes (TX/RX), memory °C, NVLink link count, cumulative NVLink KiB per link.

        fieldIds are ids or (id, scopeId) pairs (scopeId = link for NVLink throughput). An unknown or
        unsupported field sets that entry's nvmlReturn to NotSupported; a bad link to InvalidArgument.
        timestamp is the simulation clock in µs.
        """
        gpu, t = self._gpus[handle.gpu], self._now()
        values: ctypes.Array[pynvml.c_nvmlFieldValue_t] = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        stamp = int(t * 1e6)
        integral = gpu.curve.integral(t)
        for value, requested in zip(values, fieldIds, strict=True):
            field_id, scope = requested if isinstance(requested, tuple) else (requested, 0)
            value.fieldId, value.scopeId, value.timestamp = field_id, scope, stamp
            ret, value_type, number = self._field(gpu, field_id, scope, t, integral)
            if ret != pynvml.NVML_SUCCESS:  # a fresh struct already reads NVML_SUCCESS
                value.nvmlReturn = ret
            value.valueType = value_type
            if value_type == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT:
                value.value.uiVal = number
            else:
                value.value.ullVal = number
        return values

    # ---- NVML: errors and health ---------------------------------------------------------------

    @_api("device")
    def nvmlDeviceGetTotalEccErrors(self, handle: SimHandle, errorType: int, counterType: int) -> int:
        """Volatile counts what add_ecc injected; aggregate adds a seeded lifetime count."""
        if errorType not in (0, 1) or counterType not in (pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC):
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self._gpus[handle.gpu]
        lifetime = gpu.ecc_lifetime[errorType] if counterType == pynvml.NVML_AGGREGATE_ECC else 0
        return gpu.ecc_volatile[errorType] + lifetime

    @_api("device")
    def nvmlDeviceGetRetiredPages(self, device: SimHandle, sourceFilter: int) -> list[int]:
        """Page addresses; only pre-Ampere (v100) retires pages, Ampere+ remap rows: NotSupported."""
        if not self.model.retired_pages:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if sourceFilter not in (0, 1):
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return list(self._gpus[device.gpu].retired_pages[sourceFilter])

    @_api("device")
    def nvmlDeviceGetRemappedRows(self, device: SimHandle) -> tuple[int, int, int, int]:
        """(corrected, uncorrected, pending, failure); NotSupported pre-Ampere and with MIG enabled."""
        gpu = self._gpus[device.gpu]
        if not self.model.remapped_rows or gpu.instances:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        corrected, uncorrected, pending, failure = gpu.remapped_rows
        return corrected, uncorrected, pending, failure

    @_api("device")
    def nvmlDeviceGetNvLinkState(self, device: SimHandle, link: int) -> int:
        self._check_link(link)
        return int(pynvml.NVML_FEATURE_ENABLED)

    @_api("device")
    def nvmlDeviceGetNvLinkErrorCounter(self, device: SimHandle, link: int, counter: int) -> int:
        self._check_link(link)
        if not 0 <= counter < pynvml.NVML_NVLINK_ERROR_COUNT:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._gpus[device.gpu].nvlink_errors[(link, counter)]

    # ---- NVML: processes -----------------------------------------------------------------------

    @_api("device")
    def nvmlDeviceGetComputeRunningProcesses(self, handle: SimHandle) -> list[pynvml.nvmlFriendlyObject]:
        """Compute processes: a default inference workload per GPU (one per MIG instance), or set_processes'.

        On a MIG-enabled GPU the parent handle answers NoPermission unless privileged (as for a
        non-root caller on real drivers); a MIG handle sees its instance's processes. Raises
        pynvml.NVMLLibraryMismatchError (not an NVMLError) while set_library_mismatch(True), like the
        unversioned pynvml wrapper over an older libnvidia-ml.
        """
        return self._process_infos(handle, "compute")

    @_api("device")
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: SimHandle) -> list[pynvml.nvmlFriendlyObject]:
        """Graphics processes: only what set_processes(kind="graphics") configured (inference has none)."""
        return self._process_infos(handle, "graphics")

    @_api("device")
    def nvmlDeviceGetMPSComputeRunningProcesses(self, handle: SimHandle) -> list[pynvml.nvmlFriendlyObject]:
        """MPS clients: only what set_processes(kind="mps") configured."""
        return self._process_infos(handle, "mps")

    @_api("device")
    def nvmlDeviceGetProcessUtilization(self, handle: SimHandle, timeStamp: int) -> list[pynvml.c_nvmlProcessUtilizationSample_t]:
        """Per-process SM/memory utilization (%) of the latest sample newer than timeStamp (µs).

        smUtil over processes sums to nvmlDeviceGetUtilizationRates().gpu at the same instant (memUtil
        to .memory, encUtil/decUtil to the encoder/decoder figures). The split follows each process's
        memory, or the shares set_process_utilization gave. NotFound when no sample is newer than
        timeStamp; NotSupported under MIG, as real drivers answer.
        """
        gpu, t = self._gpus[handle.gpu], self._now()
        if gpu.instances or handle.gi is not None:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        stamp = int(t / (_SAMPLING_PERIOD_US / 1e6)) * _SAMPLING_PERIOD_US + _EPOCH_US
        procs = self._processes(gpu, None)
        if stamp <= timeStamp or not procs:
            raise _fail(pynvml.NVML_ERROR_NOT_FOUND)
        load = gpu.curve.at(t)
        shares = gpu.process_shares
        weights = [shares["sm"].get(pid, 0.0) for pid, *_ in procs] if shares else [share for _, _, _, share, _ in procs]
        sm = _split(round(load * 100), weights)
        mem = _split(round(load * 55), weights)
        video = {engine: [round(100 * shares.get(engine, {}).get(pid, 0.0)) for pid, *_ in procs] for engine in ("encoder", "decoder")}
        # Filled from packed bytes, as the driver fills the array (no per-field Python setattr), then
        # sliced into structs as pynvml returns them.
        packed = b"".join(_SAMPLE.pack(pid, stamp, sm_util, mem_util, video["encoder"][i], video["decoder"][i])
                          for i, ((pid, *_), sm_util, mem_util) in enumerate(zip(procs, sm, mem, strict=True)))
        array = (pynvml.c_nvmlProcessUtilizationSample_t * len(procs)).from_buffer_copy(packed)
        return array[0:len(procs)]

    # ---- NVML: MIG -----------------------------------------------------------------------------

    @_api("device")
    def nvmlDeviceGetMigMode(self, device: SimHandle) -> list[int]:
        """[current, pending]; NotSupported on models without MIG."""
        self._check_mig_capable()
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if self._gpus[device.gpu].instances else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    @_api("device")
    def nvmlDeviceGetMaxMigDeviceCount(self, device: SimHandle) -> int:
        self._check_mig_capable()
        return MAX_MIG_DEVICES

    @_api("device")
    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: SimHandle, index: int) -> SimHandle:
        """NotFound for an empty slot (all of them with MIG disabled); worth caching by the caller."""
        self._check_mig_capable()
        if not 0 <= index < MAX_MIG_DEVICES:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        instances = list(self._gpus[device.gpu].instances.values())
        if index >= len(instances):
            raise _fail(pynvml.NVML_ERROR_NOT_FOUND)
        return instances[index].handle

    @_api("device")
    def nvmlDeviceGetGpuInstanceId(self, device: SimHandle) -> int:
        if device.gi is None:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return device.gi

    @_api("device")
    def nvmlDeviceGetComputeInstanceId(self, device: SimHandle) -> int:
        """Always 0: each simulated GPU instance holds one full-size compute instance."""
        if device.gi is None:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 0

    @_api("device")
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: SimHandle) -> SimHandle:
        if migDevice.gi is None:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[migDevice.gpu]

    # ---- NVML: GPM -----------------------------------------------------------------------------

    @_api("device")
    def nvmlGpmQueryDeviceSupport(self, device: SimHandle) -> pynvml.c_nvmlGpmSupport_t:
        return pynvml.c_nvmlGpmSupport_t(version=pynvml.NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(self.model.gpm))

    @_api("system")
    def nvmlGpmSampleAlloc(self) -> pynvml.c_nvmlGpmSample_t:
        """A real c_nvmlGpmSample_t pointer; its address keys the sample's state until SampleFree."""
        buffer = ctypes.create_string_buffer(8)
        sample = ctypes.cast(buffer, pynvml.c_nvmlGpmSample_t)
        self._samples[ctypes.addressof(buffer)] = _Sample(buffer)
        return sample

    @_api("system")
    def nvmlGpmSampleFree(self, gpmSample: pynvml.c_nvmlGpmSample_t) -> None:
        del self._samples[self._sample_key(gpmSample)]

    @_api("device")
    def nvmlGpmSampleGet(self, device: SimHandle, gpmSample: pynvml.c_nvmlGpmSample_t) -> pynvml.c_nvmlGpmSample_t:
        self._check_gpm()
        gpu, t = self._gpus[device.gpu], self._now()
        self._record(self._sample(gpmSample), gpu.index, None, t, gpu.curve.integral(t), 1.0)
        return gpmSample

    @_api("device")
    def nvmlGpmMigSampleGet(self, device: SimHandle, gpuInstanceId: int, gpmSample: pynvml.c_nvmlGpmSample_t) -> pynvml.c_nvmlGpmSample_t:
        """device is the parent GPU; bandwidth rates are the instance's compute-slice share of the GPU's."""
        self._check_gpm()
        instance = self._gpus[device.gpu].instances.get(gpuInstanceId)
        if instance is None:
            raise _fail(pynvml.NVML_ERROR_NOT_FOUND)
        t = self._now()
        share = instance.profile.compute_slices / 7
        self._record(self._sample(gpmSample), device.gpu, gpuInstanceId, t, instance.curve.integral(t), share)
        return gpmSample

    @_api("system")
    def nvmlGpmMetricsGet(self, metricsGet: pynvml.c_nvmlGpmMetricsGet_t) -> pynvml.c_nvmlGpmMetricsGet_t:
        """Fill each metric from the mean load between the two samples' times.

        Utilisation metrics are percent (0-100); PCIE_TX/RX_PER_SEC and NVLINK_TOTAL_TX/RX_PER_SEC
        are MiB/s. Samples less than MIN_GPM_INTERVAL_S apart (or out of order, or from different
        GPUs/instances, or never taken) raise NVMLError_InvalidArgument rather than return noise.
        Any other metric id gets nvmlReturn NotSupported.
        """
        mg = metricsGet
        if mg.version != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise _fail(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        first, second = self._sample(mg.sample1), self._sample(mg.sample2)
        dt = second.t - first.t
        if (
            mg.numMetrics > pynvml.NVML_GPM_METRIC_MAX
            or first.gpu < 0
            or first.gpu != second.gpu
            or first.gi != second.gi
            or dt < MIN_GPM_INTERVAL_S
        ):
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        load = (second.integral - first.integral) / dt
        m = self.model
        pcie = m.pcie_peak_bytes_per_s * load * first.share
        nvlink = m.nvlinks * m.nvlink_peak_bytes_per_s * load * first.share
        rates = {
            pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC: _IDLE_PCIE_BYTES_PER_S + pcie * _PCIE_TX_SHARE,
            pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC: _IDLE_PCIE_BYTES_PER_S + pcie,
            pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: nvlink,
            pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: nvlink * _NVLINK_RX_SHARE,
        }
        for i in range(mg.numMetrics):
            metric = mg.metrics[i]
            percent = _GPM_PERCENT_PER_LOAD.get(metric.metricId)
            if percent is not None:
                metric.value, metric.nvmlReturn = percent * load, pynvml.NVML_SUCCESS
            elif metric.metricId in rates:
                metric.value, metric.nvmlReturn = rates[metric.metricId] / _MIB, pynvml.NVML_SUCCESS
            else:
                metric.value, metric.nvmlReturn = 0.0, pynvml.NVML_ERROR_NOT_SUPPORTED
        return mg

    # ---- NVML: events --------------------------------------------------------------------------

    @_api("system")
    def nvmlEventSetCreate(self) -> _EventSet:
        event_set = _EventSet()
        with self._lock:
            self._event_sets.append(event_set)
        return event_set

    @_api("device")
    def nvmlDeviceGetSupportedEventTypes(self, handle: SimHandle) -> int:
        return self._supported_events()

    @_api("device")
    def nvmlDeviceRegisterEvents(self, handle: SimHandle, eventTypes: int, eventSet: _EventSet) -> None:
        """Registering a type the board lacks raises NotSupported, as the real call does."""
        event_set = self._event_set(eventSet)
        if eventTypes & ~self._supported_events():
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        with self._lock:
            pending = self._pending_events.get(handle.gpu, collections.deque())
            waiting = [e for e in pending if e[0] & eventTypes]
            for e in waiting:
                pending.remove(e)
        with event_set.cond:
            mask = event_set.registered.get(handle.gpu, (0, None))[0]
            event_set.registered[handle.gpu] = (mask | eventTypes, self._handles[handle.gpu])
            for event_type, data, gi, ci in waiting:
                event_set.queue.append(self._event(self._handles[handle.gpu], event_type, data, gi, ci))
            if waiting:
                event_set.cond.notify()

    @_api("system")
    def nvmlEventSetWait_v2(self, eventSet: _EventSet, timeoutms: int) -> pynvml.c_nvmlEventData_t:
        """Oldest queued event; Timeout after timeoutms of real time, GpuIsLost once the queue is
        drained while a registered GPU is lost."""
        event_set = self._event_set(eventSet)
        deadline = time.monotonic() + timeoutms / 1000
        with event_set.cond:
            while True:
                if event_set.queue:
                    return event_set.queue.popleft()
                if event_set.freed:
                    raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
                if any(gpu in self._lost for gpu in event_set.registered):
                    raise _fail(pynvml.NVML_ERROR_GPU_IS_LOST)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _fail(pynvml.NVML_ERROR_TIMEOUT)
                event_set.cond.wait(remaining)

    @_api("system")
    def nvmlEventSetFree(self, eventSet: _EventSet) -> None:
        event_set = self._event_set(eventSet)
        with self._lock:
            self._event_sets.remove(event_set)
        with event_set.cond:
            event_set.freed = True
            event_set.cond.notify_all()

    # ---- as a module ---------------------------------------------------------------------------

    def as_module(self) -> types.ModuleType:
        """A module named "pynvml": the real one's attributes, NVML functions replaced by this sim.

        Functions the sim does not implement raise NVMLError_FunctionNotFound instead of reaching the
        real library; constants, structs, NVMLError classes and pure helpers stay the real ones, so
        `except pynvml.NVMLError_GpuIsLost` works either way. For sys.modules["pynvml"] in benchmarks.
        """
        module = types.ModuleType("pynvml", pynvml.__doc__)
        module.__dict__.update(vars(pynvml))
        for name, value in vars(pynvml).items():
            if name in SIMULATED_FUNCTIONS:
                setattr(module, name, getattr(self, name))
            elif (
                isinstance(value, types.FunctionType)
                and name not in _PURE_HELPERS
                and (name.startswith("nvml") or name in ("_nvmlGetFunctionPointer", "_LoadNvmlLibrary"))
            ):
                setattr(module, name, _not_simulated(name))
        return module

    def default_pids(self, gpu: int) -> list[int]:
        """The PIDs of the default workload on a GPU (used until set_processes): one, or two time-sharing it."""
        return [pid for pid, _ in self._gpu(gpu).default_processes]

    def devices(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(GPU uuid, [(MIG uuid, profile), …]) per GPU, for demo pods (no NVML call, no init needed)."""
        return [(gpu.uuid, [(i.uuid, i.profile.name) for i in gpu.instances.values()]) for gpu in self._gpus]

    # ---- fault injection and scenario control --------------------------------------------------

    def fail_init(self, code: int | None = pynvml.NVML_ERROR_DRIVER_NOT_LOADED) -> None:
        """Make nvmlInit raise NVMLError(code) until fail_init(None); models a driver that is not loaded."""
        if code is None:
            self.clear_error("nvmlInit")
        else:
            self.set_error("nvmlInit", code)

    def lose_gpu(self, gpu: int) -> None:
        """Every call on the GPU, its MIG handles and GetHandleByIndex(gpu) raise GpuIsLost (XID 79)
        until restore_gpu; event waits on sets that registered it raise GpuIsLost once drained."""
        self._gpu(gpu)
        self._lost.add(gpu)
        self._notify_event_sets()

    def restore_gpu(self, gpu: int) -> None:
        """Undo lose_gpu: the GPU answers again with the same handle, UUID and counters."""
        self._gpu(gpu)
        self._lost.discard(gpu)

    def set_error(self, function_name: str, code: int, gpu: int | None = None) -> None:
        """Make one NVML function raise NVMLError(code) on one GPU (or on all, gpu=None) until cleared."""
        self._check_function(function_name, gpu)
        self._errors[(function_name, gpu)] = code

    def set_not_supported(self, function_name: str, gpu: int | None = None) -> None:
        """set_error with NVML_ERROR_NOT_SUPPORTED: a board or driver that lacks the feature."""
        self.set_error(function_name, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu)

    def clear_error(self, function_name: str, gpu: int | None = None) -> None:
        """Remove what set_error/set_not_supported set for exactly this (function, gpu) pair."""
        self._check_function(function_name, gpu)
        self._errors.pop((function_name, gpu), None)

    def hang(self, function_name: str, event: threading.Event, gpu: int | None = None) -> None:
        """Make calls to the function (on that GPU, or any) block until `event` is set: a hung NVML call."""
        self._check_function(function_name, gpu)
        self._hangs[(function_name, gpu)] = event

    def set_latency(self, function_name: str, seconds: float) -> None:
        """Sleep this long in every call to the function (default 0, PcieThroughput 0.02 s)."""
        self._check_function(function_name, None)
        self._latency[function_name] = seconds

    def inject_event(
        self,
        gpu: int,
        event_type: int,
        data: int,
        gpu_instance_id: int = NO_INSTANCE,
        compute_instance_id: int = NO_INSTANCE,
    ) -> None:
        """Queue an event into every set that registered this GPU for `event_type`.

        An event no set wants yet (nothing registered: e.g. a fault scheduled at start) is kept, up to
        MAX_PENDING_EVENTS per GPU, and delivered to the first set that registers for its type, so a
        demo's XID at 0 s is seen; real NVML would drop it.
        """
        self._gpu(gpu)
        with self._lock:
            event_sets = list(self._event_sets)
        delivered = False
        for event_set in event_sets:
            with event_set.cond:
                mask, handle = event_set.registered.get(gpu, (0, self._handles[gpu]))
                if mask & event_type:
                    event_set.queue.append(self._event(handle, event_type, data, gpu_instance_id, compute_instance_id))
                    event_set.cond.notify()
                    delivered = True
        if not delivered:
            with self._lock:
                pending = self._pending_events.setdefault(gpu, collections.deque(maxlen=MAX_PENDING_EVENTS))
                pending.append((event_type, data, gpu_instance_id, compute_instance_id))

    @staticmethod
    def _event(handle: Any, event_type: int, data: int, gpu_instance_id: int, compute_instance_id: int) -> pynvml.c_nvmlEventData_t:
        event = pynvml.c_nvmlEventData_t()
        event.device = handle
        event.eventType, event.eventData = event_type, data
        event.gpuInstanceId, event.computeInstanceId = gpu_instance_id, compute_instance_id
        return event

    def inject_xid(self, gpu: int, xid: int, gpu_instance_id: int = NO_INSTANCE, compute_instance_id: int = NO_INSTANCE) -> None:
        """Queue an XID critical error (eventData = xid), e.g. 79 before lose_gpu, 48/94/95 for ECC."""
        self.inject_event(gpu, pynvml.nvmlEventTypeXidCriticalError, xid, gpu_instance_id, compute_instance_id)

    def add_ecc(self, gpu: int, corrected: int = 0, uncorrected: int = 0) -> None:
        """Add volatile (and aggregate) ECC errors and queue the matching ECC events; on a page-retiring
        model (v100) each uncorrected error also retires a page."""
        state = self._gpu(gpu)
        state.ecc_volatile[pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED] += corrected
        state.ecc_volatile[pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED] += uncorrected
        if self.model.retired_pages:
            pages = state.retired_pages[pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR]
            pages += [0x1000 * (len(pages) + i + 1) for i in range(uncorrected)]
        if corrected:
            self.inject_event(gpu, pynvml.nvmlEventTypeSingleBitEccError, 0)
        if uncorrected:
            self.inject_event(gpu, pynvml.nvmlEventTypeDoubleBitEccError, 0)

    def add_remapped_rows(self, gpu: int, corr: int = 0, unc: int = 0, pending: bool = False, failure: bool = False) -> None:
        """Add remapped rows; pending/failure set (never clear) those flags."""
        rows = self._gpu(gpu).remapped_rows
        rows[0] += corr
        rows[1] += unc
        rows[2] |= int(pending)
        rows[3] |= int(failure)

    def add_pcie_replays(self, gpu: int, n: int) -> None:
        """Raise the PCIe replay counter: a marginal link or riser."""
        self._gpu(gpu).pcie_replays += n

    def add_nvlink_errors(self, gpu: int, link: int, counter: int, n: int) -> None:
        """Raise one NVLink error counter (counter = NVML_NVLINK_ERROR_DL_*) on one link."""
        self._gpu(gpu).nvlink_errors[(link, counter)] += n

    def set_throttle(self, gpu: int, mask: int) -> None:
        """OR `mask` (nvmlClocksEventReason*) into the reported reasons; 0 clears it."""
        self._gpu(gpu).throttle = mask

    def set_load(self, gpu: int, ratio: float | None) -> None:
        """Pin the GPU's (and its MIG instances') load to `ratio` in 0..1; None returns to the curve.

        Energy and byte counters stay continuous across the change."""
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            raise ValueError(f"load ratio must be in 0..1, got {ratio}")
        state, t = self._gpu(gpu), self._now()
        state.curve.set_pin(t, ratio)
        for instance in state.instances.values():
            instance.curve.set_pin(t, ratio)

    def set_processes(self, gpu: int, processes: Sequence[tuple[int, ...]], kind: str = "compute") -> None:
        """Set the processes: (pid, used_bytes) or (pid, used_bytes, gpu_instance_id), replacing the default workload.

        kind: compute, graphics or mps (which nvmlDevice*RunningProcesses lists them). While set, memory
        used is their sum (per instance on MIG) instead of following load; utilization is split by memory."""
        if kind not in ("compute", "graphics", "mps"):
            raise ValueError(f"process kind must be compute, graphics or mps, got {kind!r}")
        state = self._gpu(gpu)
        state.processes = [(p[0], p[1], p[2] if len(p) > 2 else NO_INSTANCE) for p in processes]
        state.process_kinds = {p[0]: kind for p in processes}

    def add_processes(self, gpu: int, processes: Sequence[tuple[int, ...]], kind: str = "compute") -> None:
        """Like set_processes, but keeps the processes already set (e.g. MPS clients beside compute processes)."""
        state = self._gpu(gpu)
        before, kinds = list(state.processes), dict(state.process_kinds)
        self.set_processes(gpu, processes, kind)
        state.processes = before + state.processes
        state.process_kinds = {**kinds, **state.process_kinds}

    def set_process_utilization(self, gpu: int, sm: Mapping[int, float] | None, encoder: Mapping[int, float] | None = None,
                                decoder: Mapping[int, float] | None = None) -> None:
        """Give processes (by pid) fixed shares of the whole GPU in 0..1, e.g. {101: 0.1, 102: 0.3, 103: 0.5}.

        The device load is pinned to the SM shares' sum (0.9 here) and nvmlDeviceGetProcessUtilization
        reports each pid's share (smUtil 10, 30, 50; memUtil split the same way; pids not named read 0).
        encoder/decoder shares set encUtil/decUtil, and the device's encoder/decoder utilization is their sum.
        None returns to the default split (by memory) and to the load curve."""
        state = self._gpu(gpu)
        if sm is None:
            state.process_shares = {}
            self.set_load(gpu, None)
            return
        shares = {"sm": dict(sm), "encoder": dict(encoder or {}), "decoder": dict(decoder or {})}
        for engine, by_pid in shares.items():
            total = sum(by_pid.values())
            if any(v < 0 for v in by_pid.values()) or total > 1.0 + 1e-9:
                raise ValueError(f"{engine} shares must be >= 0 and sum to at most 1, got {by_pid}")
        self.set_load(gpu, min(1.0, sum(shares["sm"].values())))
        state.process_shares = shares

    def set_library_mismatch(self, on: bool) -> None:
        """Make the unversioned process queries raise pynvml.NVMLLibraryMismatchError (older libnvidia-ml)."""
        self._library_mismatch = on

    def unhang(self, function_name: str, gpu: int | None = None) -> None:
        """End a hang(): blocked calls return and later ones run normally."""
        event = self._hangs.pop((function_name, gpu), None)
        if event is not None:
            event.set()

    def set_pcie_link(self, gpu: int, gen: int, width: int) -> None:
        """Report a downgraded (or restored) current PCIe link; max gen/width stay the model's."""
        self._gpu(gpu).pcie_link = (gen, width)

    def set_mig(self, gpu: int, layout: str | None) -> None:
        """Re-create the GPU's MIG devices from a layout spec (None disables MIG) and queue a
        MigConfigChange event; handles of removed instances then raise InvalidArgument."""
        state = self._gpu(gpu)
        self._apply_layout(state, parse_layout(layout, self.model) if layout is not None else ())
        self.inject_event(gpu, pynvml.nvmlEventMigConfigChange, 0)

    # ---- helpers -------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() - self._t0

    def _gpu(self, gpu: int) -> _Gpu:
        if not 0 <= gpu < len(self._gpus):
            raise ValueError(f"no simulated GPU {gpu}; there are {len(self._gpus)}")
        return self._gpus[gpu]

    def _check_function(self, function_name: str, gpu: int | None) -> None:
        if function_name not in SIMULATED_FUNCTIONS:
            raise ValueError(f"{function_name!r} is not a simulated NVML function")
        if gpu is not None:
            self._gpu(gpu)

    def _pointer(self, handle: SimHandle) -> Any:
        """A new c_nvmlDevice_t pointer naming `handle` (kept alive by the sim)."""
        buffer = ctypes.create_string_buffer(8)
        self._buffers.append(buffer)
        self._by_address[ctypes.addressof(buffer)] = handle
        return ctypes.cast(buffer, pynvml.c_nvmlDevice_t)

    def _resolve(self, handle: object) -> SimHandle | None:
        if type(handle) is SimHandle:
            return handle
        if isinstance(handle, ctypes._Pointer):
            return self._by_address.get(ctypes.cast(handle, ctypes.c_void_p).value or 0)
        return None

    def _check_handle(self, pointer: object, mig_ok: bool) -> SimHandle:
        handle = self._resolve(pointer)
        if handle is None or not 0 <= handle.gpu < len(self._gpus):
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if handle.gpu in self._lost:
            raise _fail(pynvml.NVML_ERROR_GPU_IS_LOST)
        if handle.gi is not None:
            if not mig_ok:
                raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
            if handle.gi not in self._gpus[handle.gpu].instances:
                raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    def _check_index(self, index: object) -> int:
        if not isinstance(index, int) or not 0 <= index < len(self._gpus):
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index in self._lost:
            raise _fail(pynvml.NVML_ERROR_GPU_IS_LOST)
        return index

    def _check_link(self, link: int) -> None:
        if not self.model.nvlinks:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < self.model.nvlinks:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def _check_mig_capable(self) -> None:
        if not self.model.mig_capable:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _check_gpm(self) -> None:
        if not self.model.gpm:
            raise _fail(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _apply_layout(self, gpu: _Gpu, slots: tuple[MigSlot, ...]) -> None:
        instances = {slot.gpu_instance_id: _Instance(gpu.index, self._seed, slot) for slot in slots}
        for instance in instances.values():
            instance.handle = self._pointer(SimHandle(gpu.index, instance.gi))
        pin = gpu.curve.pin
        if pin is not None:
            t = self._now()
            for instance in instances.values():
                instance.curve.set_pin(t, pin)
        gpu.instances = instances

    def _memory(self, handle: SimHandle) -> tuple[int, int, int]:
        """(total, reserved, used) bytes for a GPU or one MIG device."""
        gpu, t, m = self._gpus[handle.gpu], self._now(), self.model
        if handle.gi is not None:
            instance = gpu.instances[handle.gi]
            capacity = instance.profile.memory_bytes
            return capacity, 0, _used(capacity, instance.curve.at(t), gpu.processes, handle.gi)
        if gpu.instances:
            used = sum(_used(i.profile.memory_bytes, i.curve.at(t), gpu.processes, i.gi) for i in gpu.instances.values())
            return m.memory_bytes, m.reserved_bytes, used
        capacity = m.memory_bytes - m.reserved_bytes
        return m.memory_bytes, m.reserved_bytes, _used(capacity, gpu.curve.at(t), gpu.processes, None)

    def _processes(self, gpu: _Gpu, gi: int | None) -> list[tuple[int, int, int, float, str]]:
        """(pid, used bytes, gpu instance id, share of the scope's load, kind) visible on a GPU or MIG handle."""
        t = self._now()
        if gpu.processes:
            mine = [(pid, used, owner) for pid, used, owner in gpu.processes if gi is None or owner == gi]
            total = sum(used for _, used, _ in mine) or 1
            return [(pid, used, owner, used / total, gpu.process_kinds.get(pid, "compute")) for pid, used, owner in mine]
        if gpu.instances:
            out = []
            for instance in gpu.instances.values():
                if gi is None or instance.gi == gi:
                    used = _used(instance.profile.memory_bytes, instance.curve.at(t), [], instance.gi)
                    out.append((instance.pid, used, instance.gi, 1.0, "compute"))
            return out
        if gpu.curve.at(t) < _IDLE_BELOW:
            return []  # an idle GPU runs nothing
        used = self._memory(self._handle_of(gpu.index))[2]
        shares = [share for _, share in gpu.default_processes]
        sizes = _split(used // _MIB, shares)
        return [(pid, size * _MIB, NO_INSTANCE, share, "compute")
                for (pid, share), size in zip(gpu.default_processes, sizes, strict=True)]

    def _handle_of(self, gpu: int) -> SimHandle:
        return SimHandle(gpu)

    def _process_infos(self, handle: SimHandle, kind: str) -> list[pynvml.nvmlFriendlyObject]:
        if self._library_mismatch:
            raise pynvml.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version does not match the NVML lib version")
        gpu = self._gpus[handle.gpu]
        if gpu.instances and handle.gi is None and not self.privileged:
            raise _fail(pynvml.NVML_ERROR_NO_PERMISSION)
        out = []
        for pid, used, gi, _, proc_kind in self._processes(gpu, handle.gi):
            if proc_kind != kind:
                continue
            # filled from bytes as the driver fills it; the friendly conversion is pynvml's own
            info = pynvml.c_nvmlProcessInfo_t.from_buffer_copy(
                _PROCESS_INFO.pack(pid, used, gi, NO_INSTANCE if gi == NO_INSTANCE else 0))
            out.append(pynvml.nvmlStructToFriendlyObject(info))
        return out

    def _temperature(self, gpu: _Gpu, load: float) -> int:
        m = self.model
        return m.temp_idle_c + gpu.temp_offset_c + round((m.temp_load_c - m.temp_idle_c) * load)

    def _sm_clock(self, load: float) -> int:
        if load < _IDLE_BELOW:
            return self.model.idle_sm_mhz
        if load > _POWER_CAP_ABOVE:
            return round(self.model.max_sm_mhz * 0.93)
        return self.model.max_sm_mhz

    def _field(self, gpu: _Gpu, field_id: int, scope: int, t: float, integral: float) -> tuple[int, int, int]:
        """(nvmlReturn, valueType, value) of one field; plain ints because ctypes attribute access is slow."""
        m = self.model
        if field_id in (pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES):
            share = _PCIE_TX_SHARE if field_id == pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES else 1.0
            count = gpu.pcie_base_bytes + _IDLE_PCIE_BYTES_PER_S * t + m.pcie_peak_bytes_per_s * share * integral
            return pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, int(count) % self._pcie_wrap
        if field_id == pynvml.NVML_FI_DEV_MEMORY_TEMP and m.memory_temperature:
            celsius = self._temperature(gpu, gpu.curve.at(t)) + _MEMORY_TEMP_OFFSET_C
            return pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, celsius
        if field_id == pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT and m.nvlinks:
            return pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, m.nvlinks
        if field_id in (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX) and m.nvlinks:
            if scope >= m.nvlinks:
                return pynvml.NVML_ERROR_INVALID_ARGUMENT, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 0
            share = 1.0 if field_id == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX else _NVLINK_RX_SHARE
            kib = (gpu.nvlink_base_bytes + m.nvlink_peak_bytes_per_s * share * integral) / 1024
            return pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, int(kib)
        return pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 0

    def _sample(self, pointer: object) -> _Sample:
        return self._samples[self._sample_key(pointer)]

    def _sample_key(self, pointer: object) -> int:
        """The address behind a sample pointer from nvmlGpmSampleAlloc; InvalidArgument for any other."""
        if isinstance(pointer, pynvml.c_nvmlGpmSample_t):
            address = ctypes.cast(pointer, ctypes.c_void_p).value
            if address in self._samples:
                return address
        raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    @staticmethod
    def _record(sample: _Sample, gpu: int, gi: int | None, t: float, integral: float, share: float) -> None:
        sample.gpu, sample.gi, sample.t, sample.integral, sample.share = gpu, gi, t, integral, share

    def _supported_events(self) -> int:
        events: int = (
            pynvml.nvmlEventTypeSingleBitEccError
            | pynvml.nvmlEventTypeDoubleBitEccError
            | pynvml.nvmlEventTypePState
            | pynvml.nvmlEventTypeXidCriticalError
        )
        return events | pynvml.nvmlEventMigConfigChange if self.model.mig_capable else events

    def _event_set(self, event_set: object) -> _EventSet:
        if not isinstance(event_set, _EventSet) or event_set.freed:
            raise _fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return event_set

    def _notify_event_sets(self) -> None:
        with self._lock:
            event_sets = list(self._event_sets)
        for event_set in event_sets:
            with event_set.cond:
                event_set.cond.notify_all()


SIMULATED_FUNCTIONS: frozenset[str] = frozenset(n for n in vars(SimulatedNVML) if n.startswith("nvml"))


def _used(capacity: int, load: float, processes: list[tuple[int, int, int]], gi: int | None) -> int:
    """Used bytes: the configured processes' sum when any match, else a load-following share, MiB aligned."""
    mine = [used for _, used, owner in processes if gi is None or owner == gi]
    if mine:
        return min(capacity, sum(mine))
    return int(capacity * (0.02 + 0.8 * load)) // _MIB * _MIB


def _split(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split by `weights` into integers that sum to exactly `total` (largest remainder)."""
    if not weights:
        return []
    norm = sum(weights) or 1.0
    exact = [total * w / norm for w in weights]
    parts = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: parts[i] - exact[i])[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _not_simulated(name: str) -> Callable[..., object]:
    def not_simulated(*args: object, **kwargs: object) -> object:
        raise _fail(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    not_simulated.__name__ = not_simulated.__qualname__ = name
    return not_simulated
