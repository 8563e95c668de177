"""Enumerate a GPU's MIG instances each cycle without re-querying empty slots.

Empty slots answer NotFound; asking again every second for seven slots on eight GPUs is the kind of
waste that makes dcgm-exporter burn cores under MIG, so the layout is cached and rescanned only
every `rescan_seconds` or when the MIG mode flips.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pynvml

from gpulens.exporters.gpu.nvml import Caller, MigReading, read_processes

_EMPTY_SLOT = (pynvml.NVML_ERROR_NOT_FOUND,)


@dataclass(frozen=True)
class _Slot:
    handle: Any
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    profile: str


def profile_of(name: str) -> str:
    """NVML names MIG devices '<board> MIG 1g.10gb': the profile is the part after ' MIG '."""
    return name.rsplit(" MIG ", 1)[1] if " MIG " in name else ""


class MigReader:
    """Reads MIG mode and per-instance memory for one GPU; call once per sampler cycle."""

    def __init__(self, call: Caller, handle: Any, rescan_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self._parent_call = call
        self._call = Caller(call.nvml, call.errors)  # own NotSupported memory: MIG handles differ from the parent
        self._handle = handle
        self._rescan = rescan_seconds
        self._clock = clock
        self._slots: tuple[_Slot, ...] | None = None
        self._scanned_at = 0.0
        self._mode: float | None = None

    def __call__(self) -> tuple[float | None, tuple[MigReading, ...]]:
        mode = self._parent_call("nvmlDeviceGetMigMode", self._handle)
        current = float(mode[0]) if mode is not None else None
        if current != pynvml.NVML_DEVICE_MIG_ENABLE:
            self._slots, self._mode = None, current
            return current, ()
        if self._slots is None or current != self._mode or self._clock() - self._scanned_at >= self._rescan:
            self._slots = self._scan()
            self._scanned_at = self._clock()
        self._mode = current
        readings = tuple(self._read(slot) for slot in self._slots)
        if any(r.memory_total is None for r in readings):
            self._scanned_at = float("-inf")  # a handle went stale (layout changed): rescan next cycle
        return current, readings

    def slots(self) -> tuple[tuple[str, int], ...]:
        """(MIG uuid, GPU instance id) of the instances found at the last scan, for GPM."""
        return tuple((s.uuid, s.gpu_instance_id) for s in self._slots or ())

    def _scan(self) -> tuple[_Slot, ...]:
        count = self._parent_call("nvmlDeviceGetMaxMigDeviceCount", self._handle) or 0
        slots = []
        for index in range(count):
            mig = self._call("nvmlDeviceGetMigDeviceHandleByIndex", self._handle, index, expected=_EMPTY_SLOT)
            if mig is None:  # NotFound: an empty slot (not an error), not asked again until the next rescan
                continue
            gi = self._call("nvmlDeviceGetGpuInstanceId", mig)
            ci = self._call("nvmlDeviceGetComputeInstanceId", mig)
            slots.append(_Slot(
                handle=mig,
                uuid=self._call("nvmlDeviceGetUUID", mig) or "",
                gpu_instance_id=-1 if gi is None else int(gi),
                compute_instance_id=-1 if ci is None else int(ci),
                profile=profile_of(self._call("nvmlDeviceGetName", mig) or ""),
            ))
        return tuple(slots)

    def processes(self) -> tuple[tuple[int, float], ...]:
        """(pid, used bytes) over every instance, from each MIG handle (no root needed, unlike the parent)."""
        used: dict[int, float] = {}
        for slot in self._slots or ():
            for pid, value in read_processes(self._call, slot.handle):
                used[pid] = used.get(pid, 0.0) + value
        return tuple(sorted(used.items()))

    def _read(self, slot: _Slot) -> MigReading:
        mem = self._call("nvmlDeviceGetMemoryInfo", slot.handle, pynvml.nvmlMemory_v2)
        return MigReading(
            uuid=slot.uuid,
            gpu_instance_id=slot.gpu_instance_id,
            compute_instance_id=slot.compute_instance_id,
            profile=slot.profile,
            memory_total=float(mem.total) if mem is not None else None,
            memory_used=float(mem.used) if mem is not None else None,
        )
