"""The canary as a self-contained collector + Loop, for `gpulens canary` and for the GPU exporter.

`Canary.collect()` renders the last result per GPU into fresh families (nothing lingers for a GPU
that vanished); `Canary.loop()` is the background Loop that runs the workload on each GPU in turn,
skipping a GPU busy with real work (NVML utilization above the threshold).

    gpulens_canary_matmul_flops_per_second{device="cuda",dtype="bf16",gpu="0",uuid="GPU-…"} 7.1e+14
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from gpulens.exposition import ExpositionFamily
from gpulens.loop import Loop
from gpulens.metrics import canary as c
from gpulens.probes.canary.config import CanaryConfig
from gpulens.probes.canary.expected import lookup
from gpulens.probes.canary.workload import CanaryResult, Device, devices, run_canary


def nvml_utilization(nvml: Any) -> Callable[[Device], float | None]:
    """GPU utilization (0..1) by UUID through pynvml; None when NVML cannot say (then the canary runs).

    Handles are found by UUID over the NVML indices (torch's indices differ under CUDA_VISIBLE_DEVICES).
    """
    handles: dict[str, Any] = {}

    def read(device: Device) -> float | None:
        if device.kind != "cuda" or not device.uuid:
            return None
        try:
            if not handles:
                nvml.nvmlInit()
                for i in range(nvml.nvmlDeviceGetCount()):
                    handle = nvml.nvmlDeviceGetHandleByIndex(i)
                    handles[str(nvml.nvmlDeviceGetUUID(handle))] = handle
            handle = handles.get(device.uuid)
            if handle is None:
                return None
            return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100
        except Exception:  # noqa: BLE001 - NVMLError of any kind (NotSupported under MIG, no driver): unknown
            return None

    return read


class Canary:
    """Runs the workload per device and renders the last results; thread-safe between loop and scrapes."""

    def __init__(self, cfg: CanaryConfig, torch: Any = None, utilization: Callable[[Device], float | None] | None = None,
                 log: logging.Logger | None = None, tracer: Any = None):
        if torch is None:
            import torch as torch_module

            torch = torch_module
        if utilization is None:
            try:
                import pynvml

                utilization = nvml_utilization(pynvml)
            except ImportError:
                utilization = lambda device: None  # noqa: E731
        self.cfg, self.torch, self.utilization, self.tracer = cfg, torch, utilization, tracer
        self.log = log or logging.getLogger("gpulens.canary")
        self.results: dict[str, tuple[CanaryResult, float]] = {}  # uuid → (result, wall time)
        self.skipped: dict[tuple[str, str, str, str], int] = {}
        self._lock = threading.Lock()

    def run_once(self) -> list[CanaryResult]:
        """One round over every device; returns the results of the devices that ran."""
        found = devices(self.torch, self.cfg.device)
        if not found:
            self._skip(("0", "", "cuda"), "no_device")
            return []
        ran = []
        for device in found:
            labels = (device.gpu, device.uuid, device.kind)
            busy = self.utilization(device)
            if busy is not None and busy > self.cfg.busy_threshold:
                self._skip(labels, "busy")
                continue
            result = run_canary(self.torch, device, self.cfg.matmul_size, self.cfg.copy_bytes, self.cfg.memory_cap_bytes)
            self._trace(result)
            if not result.success:
                self.log.warning(f"canary on {device.kind} {device.gpu} ({device.name}) failed: {result.error}",
                                 extra={"event": {"action": "canary", "outcome": "failure"}, "labels": {"uuid": device.uuid}})
            with self._lock:
                self.results[device.uuid] = (result, time.time())
            ran.append(result)
        return ran

    def _skip(self, labels: tuple[str, str, str], reason: str) -> None:
        with self._lock:
            key = labels + (reason,)
            self.skipped[key] = self.skipped.get(key, 0) + 1

    def _trace(self, result: CanaryResult) -> None:
        if self.tracer is None or not result.marks:
            return
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        d = result.device
        root = self.tracer.start_span(f"canary {d.kind} {d.gpu}", start_time=result.marks[0][1], attributes={
            "gpulens.canary.device": d.kind, "gpulens.canary.gpu": d.gpu, "gpulens.canary.uuid": d.uuid,
            "gpulens.canary.model": d.name, "gpulens.canary.dtype": result.dtype})
        ctx = set_span_in_context(root)
        for phase, start, end in result.marks:
            self.tracer.start_span(phase, context=ctx, start_time=start).end(end_time=end)
        if not result.success:
            root.set_status(Status(StatusCode.ERROR, result.error))
        root.end(end_time=result.marks[-1][2])

    def collect(self) -> Iterator[ExpositionFamily]:
        """The last result of every device, as fresh families."""
        success, phase, flops, copy = c.SUCCESS.new(), c.PHASE_DURATION.new(), c.MATMUL_FLOPS.new(), c.COPY_BYTES.new()
        ratio, copy_ratio, last, skipped = c.MATMUL_RATIO.new(), c.COPY_RATIO.new(), c.LAST_RUN.new(), c.SKIPPED.new()
        with self._lock:
            results = list(self.results.values())
            skips = dict(self.skipped)
        for result, when in results:
            d = result.device
            labels = [d.gpu, d.uuid, d.kind]
            success.add_metric(labels, 1.0 if result.success else 0.0)
            last.add_metric(labels, when)
            for name, seconds in result.phases.items():
                phase.add_metric(labels + [name], seconds)
            if not result.success:
                continue
            expected = lookup(d.name) if d.kind == "cuda" else None
            if result.matmul_flops is not None:
                flops.add_metric(labels + [result.dtype], result.matmul_flops)
                if expected is not None and expected.dtype == result.dtype:
                    ratio.add_metric(labels, result.matmul_flops / expected.matmul_flops())
            for direction, rate in result.copy.items():
                copy.add_metric(labels + [direction], rate)
                if expected is not None:
                    copy_ratio.add_metric(labels + [direction], rate / expected.copy_bytes_per_second(direction))
        for (gpu, uuid, kind, reason), count in sorted(skips.items()):
            skipped.add_metric([gpu, uuid, kind, reason], float(count))
        yield from (success, phase, flops, copy, ratio, copy_ratio, last, skipped)

    def loop(self) -> Loop:
        """The background loop (not started): one round per interval, with jitter."""
        return Loop("canary", self.step, self.cfg.interval_seconds, self.log, jitter=self.cfg.jitter)

    def step(self) -> None:
        """One round, for a Loop (which wants no return value)."""
        self.run_once()
