"""KServe's Python ModelServer (`kserve.ModelServer`): per-model request_*_seconds histograms, label model_name.

It exports no request counter and no error counter: request counts come from the predict
histogram's `_count`, which counts every predict call that returned (a model raising → HTTP 500
is observed too, so the outcome is `unknown`); in serverless mode the queue-proxy's per-status
counts are used instead (see queue_proxy.py).
"""

from __future__ import annotations

from gpulens.exporters.kserve.servers import Rule
from gpulens.metrics import kserve as k

KIND = "kserve"
M = "model_name"
TABLE: tuple[Rule, ...] = (
    Rule("request_predict_seconds", k.REQUEST_DURATION, "histogram", M, note="predict() time per request"),
    Rule("request_predict_seconds", k.REQUESTS, "histogram_count", M, outcome="unknown",
         note="used only without a queue-proxy (RawDeployment, static targets)"),
    Rule("request_predict_seconds", k.COMPUTE_DURATION_SUM, "histogram_sum", M),
    Rule("request_preprocess_seconds", k.REQUEST_DURATION_SUM, "histogram_sum", M),
    Rule("request_predict_seconds", k.REQUEST_DURATION_SUM, "histogram_sum", M),
    Rule("request_postprocess_seconds", k.REQUEST_DURATION_SUM, "histogram_sum", M,
         note="pre + predict + post = time inside the server"),
)
