"""The NVML sampler thread: reads every GPU at a fixed interval into an immutable snapshot.

Scrapes never call NVML; they serve the last snapshot. So scrape latency does not depend on NVML
latency or on how many scrapers there are, and an NVML call that hangs (it cannot be cancelled
in-process) stalls only this thread while the sample age grows.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pynvml

from gpulens import events as gpulens_events
from gpulens.exporters.gpu.gpm import GpmReader
from gpulens.exporters.gpu.mig import MigReader
from gpulens.exporters.gpu.nvml import (
    CLOCK_EVENT_REASONS,
    Caller,
    GpuLost,
    GpuReading,
    Identity,
    NvmlDown,
    as_text,
    error_name,
    read_gpu,
    read_identity,
)
from gpulens.logs import StateLog
from gpulens.loop import Backoff, Loop

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))
BACKOFF_MAX_SECONDS = 60.0
# Limits, maxima, error counters and link states are re-read this often, not every interval
# (dcgm-exporter's default for everything is 30 s). XIDs arrive as events, not through this.
SLOW_SECONDS = 10.0


@dataclass(frozen=True)
class Snapshot:
    """Everything one sampler cycle saw; never mutated after publication."""

    taken_at: float  # unix time
    monotonic: float
    nvml_up: bool
    nvml_error: str = ""
    driver_version: str = ""
    cuda_version: str = ""
    gpus: tuple[GpuReading, ...] = ()
    errors: tuple[tuple[tuple[str, str], int], ...] = ()
    duration_buckets: tuple[int, ...] = ()  # cumulative counts per DURATION_BUCKETS
    duration_sum: float = 0.0


@dataclass
class _Device:
    """Sampler-private state of one GPU: its handle, remembered NotSupported calls, MIG and GPM state."""

    index: int
    handle: Any
    identity: Identity
    call: Caller
    mig: MigReader
    gpm: GpmReader
    log: StateLog
    lost: bool = False
    last: GpuReading | None = None  # carries the slow families between their refreshes
    slow_at: float = 0.0
    counters: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (last raw, monotonic total)

    def monotonic(self, name: str, raw: float | None) -> float | None:
        """NVML's PCIe byte counters wrap (and reset with the driver): export a total that never goes back."""
        if raw is None:
            return None
        last = self.counters.get(name)
        if last is None:
            total = raw
        else:
            delta = raw - last[0]
            total = last[1] + (delta if delta >= 0 else raw)  # wrapped: count from 0, lose under one interval
        self.counters[name] = (raw, total)
        return total


class Sampler:
    """Owns NVML: init with backoff, enumeration, per-GPU loss and recovery, the sampling loop."""

    def __init__(self, nvml: Any, interval: float = 1.0, processes: bool = False, gpm: bool = True,
                 on_snapshot: Callable[[Snapshot], None] = lambda s: None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 log: logging.Logger | None = None, source: str = "real",
                 on_generation: Callable[[], None] = lambda: None):
        self.nvml = nvml
        self.interval = interval
        self._processes = processes
        self._gpm = gpm
        self._on_snapshot = on_snapshot
        self._clock = clock
        self._wall = wall
        self._log = log or logging.getLogger("gpulens.sampler")
        self._nvml_state = StateLog(self._log, "nvml")
        self._errors: Counter[tuple[str, str]] = Counter()
        self._throttle = gpulens_events.ThrottleEpisodes(CLOCK_EVENT_REASONS)  # gpu.throttle.start/stop events
        self._devices: list[_Device] = []
        self._initialized = False
        self._nvml_error = ""
        self._retry_at = 0.0
        self._backoff = interval
        self._versions = ("", "")
        self._buckets = [0] * len(DURATION_BUCKETS)
        self._duration_sum = 0.0
        self._source = source
        self._on_generation = on_generation
        self.loop = Loop("nvml-sampler", self._step, interval, self._log,
                         backoff=Backoff(base=interval, cap=max(interval, BACKOFF_MAX_SECONDS)), fixed_rate=True)
        self.snapshot: Snapshot | None = None
        self._generation = 0  # bumped on every (re-)enumeration; the XID watcher re-registers on change

    @property
    def generation(self) -> int:
        return self._generation

    @generation.setter
    def generation(self, value: int) -> None:
        self._generation = value
        self._on_generation()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Sample now and then every interval on the shared Loop (its first cycle runs in the thread)."""
        self.loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.loop.stop(timeout)
        if self._initialized and not self.loop.alive:  # a hung NVML call keeps its thread: leave NVML alone
            self._shutdown()

    def _step(self) -> None:
        try:
            self.cycle()
        except Exception as err:  # a bug must not end sampling silently: counted, logged by the Loop
            self._errors[("sampler", type(err).__name__)] += 1
            raise

    def devices(self) -> tuple[tuple[int, str, Any], ...]:
        """(index, uuid, handle) of the GPUs currently answering, for the event watcher."""
        return tuple((d.index, d.identity.uuid, d.handle) for d in self._devices if not d.lost)

    # --- one cycle -------------------------------------------------------------------------------
    def cycle(self) -> Snapshot:
        """Read every GPU once and publish the snapshot (public so tests and benchmarks drive it)."""
        started = self._clock()
        gpus: tuple[GpuReading, ...] = ()
        if not self._initialized and started >= self._retry_at:
            self._init()
        if self._initialized:
            try:
                self._check_count()
                gpus = tuple(self._read(d) for d in self._devices)
            except NvmlDown as err:
                self._down(f"{err} failed: NVML stopped answering")
        if not self._initialized:
            gpus = tuple(GpuReading(identity=d.identity, up=False) for d in self._devices)
        duration = self._clock() - started
        self._buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self._duration_sum += duration
        snapshot = Snapshot(
            taken_at=self._wall(), monotonic=self._clock(), nvml_up=self._initialized,
            nvml_error=self._nvml_error, driver_version=self._versions[0], cuda_version=self._versions[1],
            gpus=gpus, errors=tuple(sorted(self._errors.items())),
            duration_buckets=tuple(_cumulative(self._buckets)), duration_sum=self._duration_sum,
        )
        self.snapshot = snapshot
        self._on_snapshot(snapshot)
        return snapshot

    def _init(self) -> None:
        try:
            self.nvml.nvmlInit()
        except pynvml.NVMLError as err:
            self._errors[("nvmlInit", error_name(err))] += 1
            self._down(f"nvmlInit failed: {error_name(err)}")
            return
        self._initialized = True  # from here on, _down() also calls nvmlShutdown: no leaked init reference
        try:
            driver = self.nvml.nvmlSystemGetDriverVersion()
            cuda = self.nvml.nvmlSystemGetCudaDriverVersion()
            self._versions = (as_text(driver), f"{cuda // 1000}.{cuda % 1000 // 10}")
            self._enumerate()
        except (pynvml.NVMLError, NvmlDown) as err:  # the driver went away again mid-enumeration
            name = error_name(err) if isinstance(err, pynvml.NVMLError) else f"{err} failed"
            self._errors[("nvmlInit", name)] += 1
            self._down(f"NVML enumeration failed: {name}")
            return
        self._nvml_error = ""
        self._backoff = self.interval
        what = "simulated NVML" if self._source == "simulated" else "NVML"
        self._nvml_state.ok(f"{what} initialised: {len(self._devices)} GPUs, driver {self._versions[0]}"
                            + (" (simulated, not real GPUs)" if self._source == "simulated" else ""))

    def _down(self, reason: str) -> None:
        """NVML is gone: keep serving (nvml_up 0, /readyz 503) and retry with exponential backoff."""
        if self._initialized:
            self._shutdown()
        self._nvml_error = reason
        self._retry_at = self._clock() + self._backoff
        self._nvml_state.failed(reason.split(":")[-1].strip(), f"{reason}; retrying with backoff")
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)

    def _shutdown(self) -> None:
        self._initialized = False
        for device in self._devices:
            device.gpm.close()
        try:
            self.nvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass  # already gone: the driver was unloaded under us

    def _enumerate(self) -> None:
        count = self.nvml.nvmlDeviceGetCount()
        known = {d.index: d for d in self._devices}
        for device in self._devices:
            device.gpm.close()  # new handles get new GPM samples; free the old ones
        self._devices = [self._open(i, known.get(i)) for i in range(count)]
        self.generation += 1

    def _check_count(self) -> None:
        try:
            count = self.nvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as err:
            self._errors[("nvmlDeviceGetCount", error_name(err))] += 1
            raise NvmlDown("nvmlDeviceGetCount") from err
        if count != len(self._devices):
            self._enumerate()

    def _open(self, index: int, previous: _Device | None) -> _Device:
        """A device's handle and identity; a GPU lost at enumeration is kept as a lost placeholder."""
        call = Caller(self.nvml, self._errors)
        log = previous.log if previous else StateLog(self._log, f"gpu{index}")
        try:
            handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            identity = read_identity(call, index, handle)
            if not identity.uuid:  # without a uuid nothing joins (pods, _info): retry next cycle
                raise GpuLost("nvmlDeviceGetUUID")
        except (pynvml.NVMLError, GpuLost) as err:
            self._errors[("nvmlDeviceGetHandleByIndex", error_name(err.__cause__ or err))] += 1
            identity = previous.identity if previous else Identity(index, f"unknown-{index}", "", "", "", "")
            return _Device(index, None, identity, call, MigReader(call, None), GpmReader(call, None, False), log, lost=True)
        gpm = GpmReader(call, handle, self._gpm, self._clock)
        return _Device(index, handle, identity, call, MigReader(call, handle, clock=self._clock), gpm, log)

    def _read(self, device: _Device) -> GpuReading:
        was_lost = device.lost
        if device.lost:
            recovered = self._open(device.index, device)
            if recovered.lost:
                return GpuReading(identity=device.identity, up=False)
            self._devices[device.index] = device = recovered
        now = self._clock()
        previous = device.last if now < device.slow_at else None
        try:
            reading = read_gpu(device.call, device.identity, device.handle, self._processes, device.mig,
                               lambda: device.gpm(sorted({gi for _, gi in device.mig.slots()})), previous)
        except GpuLost as err:
            device.lost = True
            device.gpm.close()
            device.log.failed("GpuIsLost", f"GPU {device.index} ({device.identity.uuid}) lost in {err}",
                               gpu={"index": device.index, "uuid": device.identity.uuid})
            gpulens_events.emit(gpulens_events.gpu_lost(gpulens_events.Gpu(device.index, device.identity.uuid), "GpuIsLost"))
            return GpuReading(identity=device.identity, up=False)
        reading = replace(reading, pcie_tx=device.monotonic("pcie_tx", reading.pcie_tx),
                          pcie_rx=device.monotonic("pcie_rx", reading.pcie_rx))
        if was_lost:
            gpulens_events.emit(gpulens_events.gpu_recovered(gpulens_events.Gpu(device.index, device.identity.uuid)))
        episode = self._throttle.update(gpulens_events.Gpu(device.index, device.identity.uuid), reading.clock_events, self._wall())
        if episode is not None:
            gpulens_events.emit(episode)
        device.log.ok(f"GPU {device.index} ({device.identity.uuid}) answering",
                      gpu={"index": device.index, "uuid": device.identity.uuid})
        if previous is None:
            device.slow_at = now + SLOW_SECONDS
        if device.last is None:  # first good read after (re-)opening: the event watcher re-registers
            self.generation += 1
        elif device.last.mig_mode != reading.mig_mode:
            # MIG on/off changes what NVML supports (utilization, remapped rows): ask again, all of it
            device.call.forget_unsupported()
            device.slow_at = 0.0
        device.last = reading
        return reading


def _cumulative(counts: list[int]) -> list[int]:
    total, out = 0, []
    for c in counts:
        total += c
        out.append(total)
    return out
