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
from prometheus_client.core import Metric

from gpulens.exporters.gpu.collectors import Attribution, pod_labels
from gpulens.exporters.gpu.nvml import address, error_name
from gpulens.logs import StateLog
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.up = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nvml-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def last_xid(self) -> dict[str, int]:
        with self._lock:
            return dict(self._last_xid)

    def _run(self) -> None:
        backoff, retry_at = 1.0, 0.0
        crashes = StateLog(self._log, "event-watcher")
        while not self._stop.is_set():
            try:
                stale = self._set is None or self._generation() != self._registered_generation
                partial = self._missing and time.monotonic() >= retry_at  # some GPUs refused registration
                if stale or partial:
                    if not self.register():
                        self._wait_for_change(backoff)
                        backoff = min(backoff * 2, 30.0)
                        continue
                    backoff = 1.0
                    retry_at = time.monotonic() + 30.0
                self.poll()
                crashes.ok("event watcher running")
            except Exception as err:  # never let the thread end silently: log once, back off, go on
                crashes.failed(type(err).__name__, f"event watcher failed: {err!r}")
                self._close()
                self._stop.wait(1.0)

    def _wait_for_change(self, seconds: float) -> None:
        """Back off, but wake as soon as the sampler re-enumerates (GPUs came back)."""
        generation, deadline = self._generation(), time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline and self._generation() == generation:
            self._stop.wait(0.1)

    def register(self) -> bool:
        """A fresh event set over every answering GPU, for the event types each one supports."""
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

    def _close(self) -> None:
        if self._set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._set)
            except pynvml.NVMLError:
                pass  # the driver already dropped it
        self._set, self.up = None, False

    def poll(self) -> bool:
        """Wait once for an event and count it; False on timeout or when the set broke."""
        try:
            data = self._nvml.nvmlEventSetWait_v2(self._set, self._wait_ms)
        except pynvml.NVMLError as err:
            if err.value == pynvml.NVML_ERROR_TIMEOUT:
                return False
            self._state.failed(error_name(err), f"NVML event wait failed: {error_name(err)}; re-registering")
            self._close()
            self._stop.wait(1.0)
            return False
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

    def _log_xid(self, index: int, uuid: str, xid: int, data: Any) -> None:
        namespace, pod, container = pod_labels(self._attribution(), uuid)
        meaning = XID_MEANINGS.get(xid, "see NVIDIA's XID catalogue")
        self._log.error(
            f"XID {xid} on GPU {index} ({uuid}): {meaning}",
            extra={
                "event": {"kind": "alert", "category": ["host"], "type": ["error"], "code": str(xid),
                          "dataset": "gpulens.xid", "action": "gpu-xid"},
                "gpu": {"index": index, "uuid": uuid, "gpu_instance_id": int(data.gpuInstanceId),
                        "compute_instance_id": int(data.computeInstanceId)},
                "orchestrator": {"namespace": namespace, "resource": {"name": pod, "type": "pod"}},
                "container": {"name": container},
            },
        )

    def collect(self) -> Iterator[Metric]:
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
