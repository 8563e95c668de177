"""The exporter's own health: NVML up, call errors, sampling cost, build info.

    gpulens_nvml_errors_total{function="nvmlDeviceGetFanSpeed",error="NotSupported"} 8
"""

from __future__ import annotations

import platform
from collections.abc import Iterator, Mapping

from gpulens import __version__
from gpulens.exporters.gpu.sampler import DURATION_BUCKETS, Snapshot
from gpulens.exposition import ExpositionFamily
from gpulens.metrics import gpu as c


def collect(snapshot: Snapshot, nvml_source: str, collector_success: Mapping[str, bool],
            durations: Mapping[str, float] | None = None) -> Iterator[ExpositionFamily]:
    up = c.NVML_UP.new()
    up.add_metric([], 1.0 if snapshot.nvml_up else 0.0)
    yield up

    errors = c.NVML_ERRORS.new()
    for (function, error), count in snapshot.errors:
        errors.add_metric([function, error], count)
    yield errors

    duration = c.SAMPLE_DURATION.new()
    if snapshot.duration_buckets:
        buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in zip(DURATION_BUCKETS, snapshot.duration_buckets, strict=True)]
        duration.add_metric([], buckets, snapshot.duration_sum)
    yield duration

    build = c.BUILD_INFO.new()
    build.add_metric([__version__, platform.python_version(), nvml_source], 1.0)
    yield build

    success = c.COLLECTOR_SUCCESS.new()
    for name, ok in sorted(collector_success.items()):
        success.add_metric([name], 1.0 if ok else 0.0)
    yield success

    duration_family = c.COLLECTOR_DURATION.new()
    for name, seconds in sorted((durations or {}).items()):
        duration_family.add_metric([name], seconds)
    yield duration_family
