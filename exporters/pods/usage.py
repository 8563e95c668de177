"""Per-process NVML figures summed per container, with the per-GPU remainder: pods + unattributed = device.

One cycle, per GPU, right after the NVML sampler's (on its thread, milliseconds after it read the device): the
device's figures as the sampler read them (`nvmlDeviceGetUtilizationRates`, `…EncoderUtilization`,
`…DecoderUtilization`, `nvmlDeviceGetMemoryInfo` v2 used), the per-process samples newer than the
last one seen (`nvmlDeviceGetProcessUtilization(handle, lastSeenTimeStamp)`: SM, memory, encoder,
decoder %; newest sample per PID), and the memory of the compute, graphics and MPS client processes.
Each PID resolves to a container through its cgroup (procfs.py) and the node's pods (podindex.py).

The arithmetic, per GPU and quantity (checkable in PromQL: `sum by (uuid)` of the pod series plus
the unattributed series equals the device series):

    pod value   = Σ its processes' values × scale
    scale       = device / Σ all processes' values  when that sum exceeds the device figure, else 1
    unattributed = device − Σ pod values   (processes outside any pod, not yet resolved, unreadable,
                                            and whatever the driver did not attribute to a process)

The scale only bites when the process figures add up to more than the device's: MPS clients run
concurrently (each one's SM time overlaps the others'), or the two calls' sampling windows differ.
A quantity the device does not report (NotSupported) is left out for the pods as well: a made-up
number would not add up to anything.

The process lists cost more than the rest (pynvml turns every entry into an object), and memory only
moves when something allocates or frees: they are re-read when the device's memory used changed since
the last read, when a utilization sample names a PID they did not list, and at least every 10 s.
At a steady state (an inference server's caching allocator holds its memory) that is once per 10 s.

NVML lists only processes that were busy during the sample period; when no sample is newer than the
last one seen (NotFound) the previous samples are kept for `hold_seconds` (the driver's own sample
period may be longer than our interval), then the processes read 0.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import pynvml

from gpulens.exporters.pods.procfs import CgroupRef, ProcessGone, ProcFS, UnknownFormat, parse_cgroup

QUANTITIES = ("sm", "memory", "encoder", "decoder", "memory_used")  # index order of every Figures list
SM, MEMORY, ENCODER, DECODER, MEMORY_USED = range(5)
# How a GPU process resolved: "pod" is attributed; every other one counts as unattributed.
RESULTS = ("pod", "not_in_pod", "unknown_pod", "unknown_container", "exited", "unreadable", "unknown_format", "no_host_pid")
# The process lists (memory per PID) are re-read when the device's memory used changes, when a PID
# shows up in the utilization samples that they do not list, and at least this often.
LISTS_MAX_AGE_SECONDS = 10.0
_PROCESS_LISTS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
                  "nvmlDeviceGetMPSComputeRunningProcesses")
_ABSENT = (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
_LOST = (pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNINITIALIZED, pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

# c_nvmlProcessUtilizationSample_t (pid, timeStamp, smUtil, memUtil, encUtil, decUtil) in its native layout: one
# unpack per sample instead of six attribute reads through pynvml's Python-level __getattribute__.
_SAMPLE = struct.Struct("@IQIIII")
_SAMPLE_FAST = ctypes.sizeof(pynvml.c_nvmlProcessUtilizationSample_t) == _SAMPLE.size


def _fields(sample: Any) -> tuple[int, int, int, int, int, int]:
    if _SAMPLE_FAST and isinstance(sample, pynvml.c_nvmlProcessUtilizationSample_t):
        return _SAMPLE.unpack(bytes(sample))  # type: ignore[return-value]
    return (sample.pid, sample.timeStamp, sample.smUtil, sample.memUtil, sample.encUtil, sample.decUtil)


Figures = tuple[float | None, ...]  # one value per QUANTITIES entry; None: the device does not report it


class Owner(NamedTuple):
    """The container a process runs in (a tuple: hashed in C, it keys every aggregation)."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class GpuUsage:
    """One GPU's split: the device's figures, each container's, and the unattributed remainder."""

    index: int
    uuid: str
    device: Figures
    pods: dict[Owner, Figures]
    unattributed: Figures
    processes: int


@dataclass(frozen=True)
class UsageSnapshot:
    """Everything one cycle saw; never mutated after publication."""

    taken_at: float
    gpus: tuple[GpuUsage, ...] = ()
    visible: int = 0  # GPU processes whose /proc entry could be read (0 without hostPID)
    host_pid: bool = False
    results: dict[str, int] = field(default_factory=dict)  # GPU processes by how they resolved (RESULTS)
    api_up: bool | None = None  # None: no Kubernetes API configured


class PodLookup(Protocol):
    """What the resolver needs of the pod index (podindex.PodIndex)."""

    @property
    def up(self) -> bool: ...

    @property
    def version(self) -> int: ...  # changes whenever a pod changes: cached resolutions are redone

    def lookup(self, uid: str) -> Any: ...  # a PodRef (namespace, name, containers) or None


class _Once:
    """Logs each distinct key once per run (a fault seen every cycle is one line, not one per second)."""

    def __init__(self, log: logging.Logger):
        self._log = log
        self._seen: set[str] = set()

    def __call__(self, key: str, level: int, message: str) -> None:
        if key not in self._seen:
            self._seen.add(key)
            self._log.log(level, message, extra={"event": {"action": "pod-usage-" + key.split(":")[0]}})


class Resolver:
    """PID → Owner through the cgroup file and the pod index; parsed cgroups cached per PID.

    A PID's cgroup is read when NVML first lists it and again every `refresh_seconds` (a recycled PID
    must leave NVML's list and come back, which re-reads it too). Failures are retried each cycle.
    """

    def __init__(self, proc: ProcFS, pods: PodLookup | None, log: logging.Logger,
                 clock: Callable[[], float] = time.monotonic, refresh_seconds: float = 60.0):
        self.proc = proc
        self.pods = pods
        self._clock = clock
        self._refresh = refresh_seconds
        # pid → (cgroup ref | None | "unknown_format", read at, pod index version, owner, result)
        self._cache: dict[int, tuple[CgroupRef | None | str, float, int, Owner | None, str]] = {}
        self._now = clock()
        self._once = _Once(log)
        self.host_pid = False

    def begin(self) -> None:
        """Once per cycle: is the host's PID namespace visible (checked until it is; it cannot go away)?"""
        self._now = self._clock()
        if not self.host_pid:
            self.host_pid = self.proc.host_pid_namespace()
            if not self.host_pid:
                self._once("no-host-pid", logging.ERROR,
                           f"per-pod GPU usage is off: {self.proc.root} shows only this container's PID namespace "
                           "(no kernel threads), so NVML's host PIDs cannot be mapped to pods; run the exporter with "
                           "hostPID: true. Every GPU process counts as unattributed; "
                           "gpulens_pod_attribution_processes_visible is 0")

    def forget_except(self, pids: set[int]) -> None:
        """Drop cached PIDs NVML no longer lists."""
        for pid in [p for p in self._cache if p not in pids]:
            del self._cache[pid]

    def _read(self, pid: int) -> CgroupRef | None | str:
        """The parsed cgroup of pid, or a result name: exited, unreadable (not cached), unknown_format."""
        try:
            text = self.proc.read_cgroup(pid)
        except ProcessGone:
            self._once("exited", logging.INFO, f"GPU process {pid} exited before its cgroup was read; processes like it "
                                               "count as unattributed until NVML stops listing them (logged once)")
            return "exited"
        except OSError as err:
            self._once(f"unreadable:{err.errno}", logging.WARNING,
                       f"cannot read {self.proc.root}/{pid}/cgroup: {err.strerror or err}; such GPU processes count as "
                       "unattributed (logged once per error)")
            return "unreadable"
        try:
            return parse_cgroup(text)
        except UnknownFormat as err:
            self._once(f"unknown_format:{err}", logging.WARNING,
                       f"GPU process {pid}: {err}; its usage counts as unattributed (logged once per format)")
            return "unknown_format"

    def _lookup(self, ref: CgroupRef | None | str) -> tuple[Owner | None, str]:
        if ref is None:
            return None, "not_in_pod"
        if isinstance(ref, str):
            return None, ref
        pod = self.pods.lookup(ref.pod_uid) if self.pods is not None else None
        if pod is None:
            if self.pods is None or not self.pods.up:
                self._once("api-down", logging.WARNING, "pods unknown to this exporter while the Kubernetes API is "
                                                        "unreachable count as unattributed (logged once)")
            return None, "unknown_pod"
        name = pod.containers.get(ref.container_id)
        if name is None:
            return None, "unknown_container"  # the pod's status does not list it yet (just started)
        return Owner(pod.namespace, pod.name, name), "pod"

    def resolve(self, pid: int) -> tuple[Owner | None, str]:
        """(owner, result): result is one of RESULTS; owner is set only for "pod".

        Cached per PID: the cgroup for `refresh_seconds`, the owner until the pod index changes.
        """
        if not self.host_pid:
            return None, "no_host_pid"
        version = self.pods.version if self.pods is not None else 0
        cached = self._cache.get(pid)
        if cached is not None and self._now - cached[1] < self._refresh:
            if cached[2] == version:
                return cached[3], cached[4]
            ref, read_at = cached[0], cached[1]
        else:
            ref, read_at = self._read(pid), self._now
            if ref in ("exited", "unreadable"):
                return None, str(ref)  # not cached: retried next cycle
        owner, result = self._lookup(ref)
        self._cache[pid] = (ref, read_at, version, owner, result)
        return owner, result


@dataclass
class _Device:
    """Per-GPU state between cycles: the last sample timestamp seen and the samples it brought."""

    last_seen: int = 0
    samples: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # pid → sm, mem, enc, dec ratios
    sampled_at: float = float("-inf")
    unsupported: set[str] = field(default_factory=set)
    memory: dict[int, float] | None = None  # pid → bytes from the process lists, as last read
    memory_ok: bool = False  # every list answered (or is unsupported) at that read
    memory_device: float | None = None  # the device's memory used when they were read
    memory_at: float = float("-inf")


def split(device: Figures, processes: dict[int, list[float]], owners: dict[int, Owner | None]
          ) -> tuple[dict[Owner, Figures], Figures]:
    """The arithmetic of the module docstring: (per-owner figures, unattributed figures).

    processes: pid → [sm, memory, encoder, decoder, memory used] (0 where a process has no figure).
    """
    per_owner: dict[Owner, list[float]] = {}
    for pid, row in processes.items():
        owner = owners.get(pid)
        if owner is not None:
            sums = per_owner.get(owner)
            if sums is None:
                per_owner[owner] = list(row)
            else:
                sums[:] = map(float.__add__, sums, row)
    totals = [sum(column) for column in zip(*processes.values(), strict=True)] if processes else [0.0] * len(QUANTITIES)
    scale = [d / t if d is not None and t > d else 1.0 for d, t in zip(device, totals, strict=True)]
    present = [q for q, d in enumerate(device) if d is not None]
    attributed = [0.0] * len(QUANTITIES)
    pods: dict[Owner, Figures] = {}
    for owner, sums in per_owner.items():
        values: list[float | None] = [None] * len(QUANTITIES)
        for q in present:
            v = sums[q] * scale[q]
            attributed[q] += v
            values[q] = v
        pods[owner] = tuple(values)
    rest = tuple(None if d is None else max(0.0, d - a) for d, a in zip(device, attributed, strict=True))
    return pods, rest


class UsageReader:
    """Reads every GPU's process figures and splits them per container (`cycle()` → UsageSnapshot)."""

    def __init__(self, nvml: Any, devices: Callable[[], Iterable[tuple[int, str, Any]]], resolver: Resolver,
                 log: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic, hold_seconds: float = 1.0,
                 lists_max_age_seconds: float = LISTS_MAX_AGE_SECONDS):
        self.nvml = nvml
        self._devices = devices
        self.resolver = resolver
        self._log = log or logging.getLogger("gpulens.pods")
        self._once = _Once(self._log)
        self._clock = clock
        self._hold = hold_seconds
        self._lists_max_age = lists_max_age_seconds
        self._state: dict[str, _Device] = {}
        self.snapshot: UsageSnapshot | None = None

    def _call(self, state: _Device, uuid: str, fn: str, *args: Any, **kwargs: Any) -> Any:
        """The call's result, or None if it failed (NotSupported remembered per GPU); GpuIsLost propagates."""
        if fn in state.unsupported:
            return None
        try:
            return getattr(self.nvml, fn)(*args, **kwargs)
        except pynvml.NVMLError as err:
            if err.value in _LOST:
                raise
            if err.value in _ABSENT:
                state.unsupported.add(fn)
            self._once(f"nvml:{fn}:{type(err).__name__}", logging.WARNING,
                       f"{fn} on GPU {uuid} failed: {type(err).__name__}; the per-pod figures it feeds are left out "
                       "while it fails (logged once)")
            return None
        except (pynvml.NVMLLibraryMismatchError, AttributeError) as err:  # old libnvidia-ml / pynvml without it
            state.unsupported.add(fn)
            self._once(f"nvml:{fn}:{type(err).__name__}", logging.WARNING, f"{fn} is not available: {err}")
            return None

    def _samples(self, state: _Device, uuid: str, handle: Any) -> dict[int, tuple[float, float, float, float]] | None:
        """pid → (sm, memory, encoder, decoder) ratios of the newest samples; None if the GPU cannot say."""
        if "nvmlDeviceGetProcessUtilization" in state.unsupported:
            return None
        try:
            raw = self.nvml.nvmlDeviceGetProcessUtilization(handle, state.last_seen)
        except pynvml.NVMLError as err:
            if err.value == pynvml.NVML_ERROR_NOT_FOUND:  # nothing newer than last_seen: idle, or polled too soon
                if self._clock() - state.sampled_at > self._hold:
                    state.samples = {}
                return state.samples
            self._call(state, uuid, "nvmlDeviceGetProcessUtilization", handle, state.last_seen)  # logs, remembers
            return None
        newest: dict[int, tuple[int, int, int, int, int, int]] = {}
        last_seen = state.last_seen
        for sample in raw:
            fields = _fields(sample)
            seen = newest.get(fields[0])
            if seen is None or fields[1] > seen[1]:
                newest[fields[0]] = fields
            if fields[1] > last_seen:
                last_seen = fields[1]
        state.last_seen = last_seen
        state.samples = {pid: (sm / 100, mem / 100, enc / 100, dec / 100) for pid, _, sm, mem, enc, dec in newest.values()}
        state.sampled_at = self._clock()
        return state.samples

    def _read_device(self, state: _Device, uuid: str, handle: Any) -> Figures:
        """The device's own figures, when no sampler snapshot brings them (standalone use, tests)."""
        call = self._call
        rates = call(state, uuid, "nvmlDeviceGetUtilizationRates", handle)
        enc = call(state, uuid, "nvmlDeviceGetEncoderUtilization", handle)
        dec = call(state, uuid, "nvmlDeviceGetDecoderUtilization", handle)
        mem = call(state, uuid, "nvmlDeviceGetMemoryInfo", handle, version=pynvml.nvmlMemory_v2)
        return (rates.gpu / 100 if rates is not None else None, rates.memory / 100 if rates is not None else None,
                enc[0] / 100 if enc is not None else None, dec[0] / 100 if dec is not None else None,
                float(mem.used) if mem is not None else None)

    def _read_gpu(self, index: int, uuid: str, handle: Any, device: Figures | None, counts: Counter[str], seen: set[int]) -> GpuUsage:
        state = self._state.setdefault(uuid, _Device())
        call = self._call
        if device is None:
            device = self._read_device(state, uuid, handle)
        samples = self._samples(state, uuid, handle)
        memory = state.memory
        now = self._clock()
        if (memory is None or device[MEMORY_USED] is None or device[MEMORY_USED] != state.memory_device
                or now - state.memory_at >= self._lists_max_age or (samples and not memory.keys() >= samples.keys())):
            memory, lists_ok = {}, True
            for fn in _PROCESS_LISTS:
                infos = call(state, uuid, fn, handle)
                if infos is None:
                    lists_ok = lists_ok and fn in state.unsupported and fn != _PROCESS_LISTS[0]
                    continue
                for p in infos:
                    used = p.usedGpuMemory  # None on WDDM or without permission: not attributable, stays in the remainder
                    used = 0.0 if used is None else float(used)
                    if used >= memory.get(p.pid, 0.0):
                        memory[p.pid] = used  # the same process in two lists: counted once
            state.memory, state.memory_ok, state.memory_device, state.memory_at = memory, lists_ok, device[MEMORY_USED], now
        lists_ok = state.memory_ok
        processes: dict[int, list[float]] = {pid: [0.0, 0.0, 0.0, 0.0, used] for pid, used in memory.items()}
        if samples is not None:
            for pid, (sm, mem_util, encoder, decoder) in samples.items():
                row = processes.setdefault(pid, [0.0, 0.0, 0.0, 0.0, 0.0])
                row[SM], row[MEMORY], row[ENCODER], row[DECODER] = sm, mem_util, encoder, decoder
        # a quantity whose per-process side is unknown is left out: the device figure alone splits nothing
        device = (*(None if samples is None else d for d in device[:MEMORY_USED]), device[MEMORY_USED] if lists_ok else None)
        owners: dict[int, Owner | None] = {}
        resolve = self.resolver.resolve
        for pid in processes:
            owner, result = resolve(pid)
            owners[pid] = owner
            if pid not in seen:  # a process on several GPUs counts once
                seen.add(pid)
                counts[result] += 1
        pods, rest = split(device, processes, owners)
        return GpuUsage(index, uuid, device, pods, rest, len(processes))

    def cycle(self, readings: Iterable[Any] | None = None) -> UsageSnapshot:
        """Read every GPU's processes once and publish the snapshot.

        `readings`: the NVML sampler's GpuReadings of this cycle (identity.uuid, up, utilization, …);
        their device figures are the ones the GPU exporter publishes, so pods + unattributed add up to
        the exported device series exactly. Without them the reader reads the device figures itself.
        """
        self.resolver.begin()
        counts: Counter[str] = Counter()
        seen: set[int] = set()
        gpus = []
        figures: dict[str, Figures] | None = None
        if readings is not None:
            figures = {r.identity.uuid: (r.utilization, r.memory_utilization, r.encoder_utilization, r.decoder_utilization,
                                         r.memory_used) for r in readings if r.up}
        for index, uuid, handle in self._devices():
            device = None
            if figures is not None:
                device = figures.get(uuid)
                if device is None:  # lost or not sampled this cycle: no device figure to split
                    continue
            try:
                gpus.append(self._read_gpu(index, uuid, handle, device, counts, seen))
            except pynvml.NVMLError as err:  # lost or uninitialised: the GPU exporter reports it; skip it here
                self._once(f"lost:{uuid}:{type(err).__name__}", logging.WARNING,
                           f"GPU {uuid}: {type(err).__name__}; no per-pod figures for it while it fails")
        self.resolver.forget_except(seen)
        visible = sum(n for result, n in counts.items() if result not in ("exited", "unreadable", "no_host_pid"))
        pods = self.resolver.pods
        self.snapshot = UsageSnapshot(time.time(), tuple(gpus), visible, self.resolver.host_pid, dict(counts),
                                      None if pods is None else pods.up)
        return self.snapshot
