"""NVIDIA Triton Inference Server: nv_inference_* counters per model (label model), durations in µs."""

from __future__ import annotations

from gpulens.exporters.kserve.servers import Rule
from gpulens.metrics import kserve as k

KIND = "triton"
M = "model"
US = 1e-6
TABLE: tuple[Rule, ...] = (
    Rule("nv_inference_request_success", k.REQUESTS, "counter", M, outcome="success"),
    Rule("nv_inference_request_failure", k.REQUESTS, "counter", M, outcome="error", note="all `reason`s summed"),
    Rule("nv_inference_request_duration_us", k.REQUEST_DURATION_SUM, "counter", M, scale=US),
    Rule("nv_inference_queue_duration_us", k.QUEUE_DURATION_SUM, "counter", M, scale=US),
    Rule("nv_inference_compute_infer_duration_us", k.COMPUTE_DURATION_SUM, "counter", M, scale=US),
    Rule("nv_inference_pending_request_count", k.PENDING, "gauge", M),
)
