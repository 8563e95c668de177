"""TorchServe (metrics_mode prometheus): ts_* counters per model (label model_name), durations in µs.

`ts_inference_requests_total` counts requests received, successful or not: outcome `unknown`.
"""

from __future__ import annotations

from gpulens.exporters.kserve.servers import Rule
from gpulens.metrics import kserve as k

KIND = "torchserve"
M = "model_name"
US = 1e-6
TABLE: tuple[Rule, ...] = (
    Rule("ts_inference_requests", k.REQUESTS, "counter", M, outcome="unknown"),
    Rule("ts_inference_latency_microseconds", k.REQUEST_DURATION_SUM, "counter", M, scale=US),
    Rule("ts_queue_latency_microseconds", k.QUEUE_DURATION_SUM, "counter", M, scale=US),
)
