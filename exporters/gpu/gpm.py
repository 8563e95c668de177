"""NVML GPM (Hopper+): real SM/tensor/DRAM activity, per GPU and per MIG instance.

NVML's utilization rate is a coarse "any kernel ran" flag; GPM diffs two hardware samples instead.
The two samples must be at least 100 ms apart, so the reader keeps the previous sample of each
target and only diffs once the window is long enough: it never sleeps inside the sampler.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pynvml

from gpulens.exporters.gpu.nvml import Caller, GpuLost, error_name

MIN_WINDOW_SECONDS = 0.1
MIB = 1024 * 1024

# reading key -> (GPM metric id, scale to base units); utilizations are percent, rates MiB/s.
METRICS: dict[str, tuple[int, float]] = {
    "graphics": (pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL, 0.01),
    "sm": (pynvml.NVML_GPM_METRIC_SM_UTIL, 0.01),
    "sm_occupancy": (pynvml.NVML_GPM_METRIC_SM_OCCUPANCY, 0.01),
    "tensor": (pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL, 0.01),
    "fp16": (pynvml.NVML_GPM_METRIC_FP16_UTIL, 0.01),
    "fp32": (pynvml.NVML_GPM_METRIC_FP32_UTIL, 0.01),
    "fp64": (pynvml.NVML_GPM_METRIC_FP64_UTIL, 0.01),
    "dram": (pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL, 0.01),
    "pcie_tx": (pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC, MIB),
    "pcie_rx": (pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC, MIB),
    "nvlink_tx": (pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC, MIB),
    "nvlink_rx": (pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC, MIB),
}


class _Target:
    """Two reusable samples for one GPU or MIG instance: the older one and the one being filled."""

    def __init__(self, nvml: Any):
        first = nvml.nvmlGpmSampleAlloc()
        try:
            self.samples = [first, nvml.nvmlGpmSampleAlloc()]
        except pynvml.NVMLError:
            nvml.nvmlGpmSampleFree(first)
            raise
        self.taken_at: float | None = None  # when samples[0] was taken
        self.values: dict[str, float] = {}
        self.failing = False


class GpmReader:
    """Per-GPU GPM state; call once per sampler cycle with the MIG instances found this cycle."""

    def __init__(self, call: Caller, handle: Any, enabled: bool, clock: Callable[[], float] = time.monotonic):
        self._call = call
        self._nvml = call.nvml
        self._handle = handle
        self._clock = clock
        support = call("nvmlGpmQueryDeviceSupport", handle) if enabled else None
        self.supported = bool(support is not None and support.isSupportedDevice)
        self._targets: dict[str, _Target] = {}
        self._request = pynvml.c_nvmlGpmMetricsGet_t()  # large struct: allocate once and reuse
        self._request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        self._request.numMetrics = len(METRICS)
        for i, (metric_id, _) in enumerate(METRICS.values()):
            self._request.metrics[i].metricId = metric_id

    def __call__(self, gpu_instance_ids: Iterable[int] = ()) -> dict[str, dict[str, float]]:
        """Latest values by target ('' = whole GPU, else the GPU instance id as text)."""
        if not self.supported:
            return {}
        wanted = [""] + [str(gi) for gi in gpu_instance_ids]
        for key in list(self._targets):
            if key not in wanted:
                self._free(self._targets.pop(key))
        out = {}
        for key in wanted:
            target = self._targets.get(key)
            if target is None:
                try:
                    target = self._targets[key] = _Target(self._nvml)
                except pynvml.NVMLError as err:  # out of memory for samples: this target only, next cycle again
                    self._call.errors[("nvmlGpmSampleAlloc", error_name(err))] += 1
                    continue
            self._step(key, target)
            if target.values:
                out[key] = target.values
        return out

    def close(self) -> None:
        for target in self._targets.values():
            self._free(target)
        self._targets.clear()

    def _free(self, target: _Target) -> None:
        for sample in target.samples:
            try:
                self._nvml.nvmlGpmSampleFree(sample)
            except pynvml.NVMLError:
                pass  # the driver went away with its samples; nothing left to free

    def _step(self, key: str, target: _Target) -> None:
        now = self._clock()
        if target.taken_at is not None and now - target.taken_at < MIN_WINDOW_SECONDS:
            return  # window too short: keep the older sample, diff on a later cycle
        slot = 1 if target.taken_at is not None else 0
        fn = "nvmlGpmMigSampleGet" if key else "nvmlGpmSampleGet"
        try:
            if key:
                self._nvml.nvmlGpmMigSampleGet(self._handle, int(key), target.samples[slot])
            else:
                self._nvml.nvmlGpmSampleGet(self._handle, target.samples[slot])
            if slot == 1:
                fn = "nvmlGpmMetricsGet"
                self._request.sample1, self._request.sample2 = target.samples[0], target.samples[1]
                self._nvml.nvmlGpmMetricsGet(self._request)
                target.values = self._values()
                target.samples.reverse()  # the new sample becomes the older one
        except pynvml.NVMLError as err:
            target.values = {}
            if err.value == pynvml.NVML_ERROR_GPU_IS_LOST:
                self._call.errors[(fn, error_name(err))] += 1
                raise GpuLost(fn) from err
            # Count a failure once per run of failures (labelled with the call that failed), not every cycle.
            if not target.failing:
                self._call.errors[(fn, error_name(err))] += 1
            target.failing = True
            target.taken_at = None  # start over with a fresh first sample
            return
        target.failing = False
        target.taken_at = now

    def _values(self) -> dict[str, float]:
        values = {}
        for i, (key, (_, scale)) in enumerate(METRICS.items()):
            metric = self._request.metrics[i]
            if metric.nvmlReturn == pynvml.NVML_SUCCESS:
                values[key] = metric.value * scale
        return values
