"""Watch NVML events (XID, ECC, clocks) on their own thread: counted exactly, logged as ECS alerts.

    gpulens_gpu_xid_errors_total{gpu="3",uuid="GPU-…",xid="79"} 1

nvmlEventSetWait_v2 blocks, so it gets its own thread with a bounded wait; a burst of events never
touches the sampler. A GPU lost while waiting tears the set down and the watcher re-registers once
the sampler has re-enumerated (its generation changes) or after a backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pynvml

from gpulens import events as gpulens_events
from gpulens.exporters.gpu.collectors import Attribution, pod_labels
from gpulens.exporters.gpu.nvml import address, error_name
from gpulens.exposition import ExpositionFamily
from gpulens.logs import StateLog
from gpulens.loop import Backoff, Loop
from gpulens.metrics import gpu as c

EVENT_TYPES = {
    pynvml.nvmlEventTypeXidCriticalError: "xid",
    pynvml.nvmlEventTypeSingleBitEccError: "single_bit_ecc",
    pynvml.nvmlEventTypeDoubleBitEccError: "double_bit_ecc",
    pynvml.nvmlEventTypeClock: "clock",
    pynvml.nvmlEventTypePowerSourceChange: "power_source",
    pynvml.nvmlEventTypeDramRetirementEvent: "dram_retirement",
    pynvml.nvmlEventTypeDramRetirementFailure: "dram_retirement_failure",
}
WANTED = sum(EVENT_TYPES)
# What the common critical XIDs mean (NVIDIA's XID catalogue), for the log message and runbooks.
XID_MEANINGS = {
    13: "graphics engine exception", 31: "GPU memory page fault", 43: "GPU stopped processing",
    45: "preemptive cleanup after a previous error", 48: "double-bit ECC error", 61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt", 63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failed", 74: "NVLink error", 79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate", 94: "contained ECC error", 95: "uncontained ECC error",
    119: "GSP RPC timeout", 120: "GSP error",
}
Device = tuple[int, str, Any]  # (index, uuid, handle)
# An XID storm (a flapping GPU can raise thousands) logs the first lines of each window in full,
# then one summary line; every event is still counted exactly in the metrics.
XID_LOG_BURST = 20
XID_LOG_WINDOW_SECONDS = 60.0


class RateLimit:
    """At most `burst` allowed per `window` seconds; counts what it refused until take_suppressed()."""

    def __init__(self, burst: int, window: float, clock: Callable[[], float]):
        self._burst, self._window, self._clock = burst, window, clock
        self._started = clock()
        self._used = 0
        self._suppressed = 0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            self._roll()
            if self._used < self._burst:
                self._used += 1
                return True
            self._suppressed += 1
            return False

    def take_suppressed(self) -> int:
        """How many were refused in windows that have ended (0 while the current window still runs)."""
        with self._lock:
            self._roll()
            if self._used >= self._burst or not self._suppressed:
                return 0
            n, self._suppressed = self._suppressed, 0
            return n

    def _roll(self) -> None:
        if self._clock() - self._started >= self._window:
            self._started, self._used = self._clock(), 0


class EventWatcher:
    """Owns one NVML event set over every answering GPU; `collect()` renders the counts."""

    def __init__(self, nvml: Any, devices: Callable[[], tuple[Device, ...]], generation: Callable[[], int],
                 attribution: Callable[[], Attribution] = dict, wait_ms: int = 500,
                 clock: Callable[[], float] = time.time, log: logging.Logger | None = None):
        self._nvml = nvml
        self._devices = devices
        self._generation = generation
        self._attribution = attribution
        self._wait_ms = wait_ms
        self._clock = clock
        self._log = log or logging.getLogger("gpulens.events")
        self._state = StateLog(self._log, "nvml-events")
        self._lock = threading.Lock()
        self._xids: Counter[tuple[str, str, str]] = Counter()
        self._xid_last: dict[tuple[str, str, str], float] = {}
        self._last_xid: dict[str, int] = {}  # uuid -> last XID code (DCGM_FI_DEV_XID_ERRORS semantics)
        self._events: Counter[tuple[str, str, str]] = Counter()
        self._set: Any = None
        self._by_handle: dict[Any, tuple[int, str]] = {}
        self._missing = False  # a GPU failed to register for a reason other than NotSupported: retry later
        self._registered_generation = -1
        self._retry_partial_at = 0.0
        self._xid_log = RateLimit(XID_LOG_BURST, XID_LOG_WINDOW_SECONDS, time.monotonic)
        # Interval 0: a poll already blocks up to wait_ms. Failures back off 1 s .. 30 s, and a
        # re-enumeration by the sampler (GPUs came back) wakes the loop at once via trigger().
        self.loop = Loop("nvml-events", self.step, 0.0, self._log, backoff=Backoff(base=1.0, cap=30.0))
        self.up = False

    def start(self) -> None:
        self.loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.loop.stop(timeout)
        self._close()

    @property
    def registered(self) -> int:
        """GPUs the current event set watches."""
        return len(self._by_handle) if self.up else 0

    @property
    def current(self) -> bool:
        """Registered on the GPUs of the sampler's latest enumeration (tests wait for this)."""
        return self.up and self._registered_generation == self._generation()

    def trigger(self) -> None:
        """The sampler re-enumerated: re-register now rather than after the backoff."""
        self.loop.trigger()

    def step(self) -> bool:
        """(Re-)register when the GPUs changed, else wait once for an event; False = failed (backs off)."""
        self._xid_log_summary()
        stale = self._set is None or self._generation() != self._registered_generation
        partial = self._missing and time.monotonic() >= self._retry_partial_at  # some GPUs refused registration
        if stale or partial:
            if not self.register():
                return False
            self._retry_partial_at = time.monotonic() + 30.0
        return self.poll() is not None

    def last_xid(self) -> dict[str, int]:
        with self._lock:
            return dict(self._last_xid)

    def register(self) -> bool:
        """A fresh event set over every answering GPU, for the event types each one supports.

        Events already queued in the old set are counted first: re-registering loses none.
        """
        self._drain()
        self._close()
        generation = self._generation()
        devices = self._devices()
        if not devices:
            return False
        try:
            event_set = self._nvml.nvmlEventSetCreate()
        except pynvml.NVMLError as err:
            self._state.failed(error_name(err), f"nvmlEventSetCreate failed: {error_name(err)}")
            return False
        by_handle = {}
        self._missing = False
        for index, uuid, handle in devices:
            try:
                supported = self._nvml.nvmlDeviceGetSupportedEventTypes(handle) & WANTED
                if supported:
                    self._nvml.nvmlDeviceRegisterEvents(handle, supported, event_set)
                    by_handle[address(handle)] = (index, uuid)
            except pynvml.NVMLError as err:  # NotSupported here, or lost: the others still register
                self._missing = self._missing or err.value != pynvml.NVML_ERROR_NOT_SUPPORTED
                self._log.warning(f"GPU {index} events not registered: {error_name(err)}")
        self._set, self._by_handle, self._registered_generation = event_set, by_handle, generation
        if not by_handle:
            self._close()
            self._state.failed("none-registered", "no GPU accepted NVML event registration; retrying")
            return False
        self.up = True
        self._state.ok(f"watching NVML events on {len(by_handle)} GPUs")
        return True

    def _drain(self, limit: int = 100_000) -> None:
        if self._set is None:
            return
        for _ in range(limit):
            try:
                data = self._nvml.nvmlEventSetWait_v2(self._set, 0)
            except pynvml.NVMLError:
                return  # Timeout (drained), or the set broke: nothing more to read from it
            self._record(data)

    def _close(self) -> None:
        if self._set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._set)
            except pynvml.NVMLError:
                pass  # the driver already dropped it
        self._set, self.up = None, False

    def poll(self) -> bool | None:
        """Wait once for an event and count it; False on timeout, None when the set broke (re-register)."""
        try:
            data = self._nvml.nvmlEventSetWait_v2(self._set, self._wait_ms)
        except pynvml.NVMLError as err:
            if err.value == pynvml.NVML_ERROR_TIMEOUT:
                return False
            self._state.failed(error_name(err), f"NVML event wait failed: {error_name(err)}; re-registering")
            self._close()
            return None
        self._record(data)
        return True

    def _record(self, data: Any) -> None:
        index, uuid = self._by_handle.get(address(data.device), (-1, ""))
        if not uuid:  # a handle we did not register: ask NVML who it is
            try:
                uuid = self._nvml.nvmlDeviceGetUUID(data.device)
            except pynvml.NVMLError as err:
                uuid = f"unknown ({error_name(err)})"
        gpu, kind, now = str(index), EVENT_TYPES.get(data.eventType, str(data.eventType)), self._clock()
        with self._lock:
            self._events[(gpu, uuid, kind)] += 1
            if kind == "xid":
                key = (gpu, uuid, str(data.eventData))
                self._xids[key] += 1
                self._xid_last[key] = now
                self._last_xid[uuid] = int(data.eventData)
        if kind == "xid":
            self._log_xid(index, uuid, int(data.eventData), data)

    def _xid_log_summary(self) -> None:
        suppressed = self._xid_log.take_suppressed()
        if suppressed:
            self._log.error(f"{suppressed} more XID log lines suppressed in the last {XID_LOG_WINDOW_SECONDS:.0f} s "
                            f"(every XID is still counted in {c.XID_ERRORS.name})",
                            extra={"event": {"kind": "alert", "action": "gpu-xid-suppressed", "dataset": "gpulens.xid"},
                                   "labels": {"suppressed": suppressed}})

    def _log_xid(self, index: int, uuid: str, xid: int, data: Any) -> None:
        if not self._xid_log.allow():
            return
        namespace, pod, container = pod_labels(self._attribution(), uuid)
        gpu = gpulens_events.Gpu(index, uuid, gpu_instance_id=int(data.gpuInstanceId),
                                 compute_instance_id=int(data.computeInstanceId))
        # the typed event: one ECS line on stdout, and to Elasticsearch when a shipper is attached
        gpulens_events.emit(gpulens_events.xid(gpu, xid, pod=gpulens_events.Pod(namespace, pod, container) if pod else None,
                                               meaning=XID_MEANINGS.get(xid, "")))

    def collect(self) -> Iterator[ExpositionFamily]:
        with self._lock:
            xids, last, events = dict(self._xids), dict(self._xid_last), dict(self._events)
        total, stamp, by_type, up = c.XID_ERRORS.new(), c.XID_LAST.new(), c.GPU_EVENTS.new(), c.EVENTS_UP.new()
        for key in sorted(xids):
            total.add_metric(list(key), xids[key])
            stamp.add_metric(list(key), last[key])
        for key in sorted(events):
            by_type.add_metric(list(key), events[key])
        up.add_metric([], 1.0 if self.up else 0.0)
        yield from (total, stamp, by_type, up)
