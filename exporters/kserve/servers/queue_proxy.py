"""Knative queue-proxy (serverless InferenceServices), port 9091: the only per-status request counts.

KServe's own server exports no error counter, so in serverless mode requests_total comes from here:
`revision_app_request_count{response_code_class}`, 5xx → error, anything else → success (a 4xx
is the client's mistake, not the model's). The queue-proxy knows no model: the InferenceService's
name is used, which is also the name KServe gives the model it serves.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpulens.exporters.kserve.servers import Rule
from gpulens.metrics import kserve as k

KIND = "queue-proxy"


def outcome(labels: Mapping[str, str]) -> str:
    return "error" if labels.get("response_code_class") == "5xx" else "success"


TABLE: tuple[Rule, ...] = (
    Rule("revision_app_request_count", k.REQUESTS, "counter", outcome=outcome, note="outcome: 5xx → error, else success"),
    Rule("revision_queue_depth", k.PENDING, "gauge", note="requests queued in the proxy"),
)
