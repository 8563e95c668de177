"""vLLM (OpenAI server, or KServe's huggingfaceserver with the vLLM backend): vllm:* per model (label model_name).

Older vLLM names (`vllm:gpu_cache_usage_perc`, `vllm:time_per_output_token_seconds`) map to the
same families; a server exposes one or the other.
"""

from __future__ import annotations

from gpulens.exporters.kserve.servers import Rule
from gpulens.metrics import kserve as k

KIND = "vllm"
M = "model_name"
TABLE: tuple[Rule, ...] = (
    Rule("vllm:request_success", k.REQUESTS, "counter", M, outcome="success", note="all `finished_reason`s summed"),
    Rule("vllm:e2e_request_latency_seconds", k.REQUEST_DURATION, "histogram", M),
    Rule("vllm:e2e_request_latency_seconds", k.REQUEST_DURATION_SUM, "histogram_sum", M),
    Rule("vllm:request_queue_time_seconds", k.QUEUE_DURATION_SUM, "histogram_sum", M),
    Rule("vllm:request_inference_time_seconds", k.COMPUTE_DURATION_SUM, "histogram_sum", M),
    Rule("vllm:time_to_first_token_seconds", k.TTFT, "histogram", M),
    Rule("vllm:inter_token_latency_seconds", k.ITL, "histogram", M),
    Rule("vllm:time_per_output_token_seconds", k.ITL, "histogram", M, note="vLLM < 0.11 name"),
    Rule("vllm:num_requests_running", k.IN_FLIGHT, "gauge", M),
    Rule("vllm:num_requests_waiting", k.PENDING, "gauge", M),
    Rule("vllm:kv_cache_usage_perc", k.KV_CACHE, "gauge", M, note="already 0..1"),
    Rule("vllm:gpu_cache_usage_perc", k.KV_CACHE, "gauge", M, note="vLLM < 0.10 name"),
)
