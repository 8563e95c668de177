"""The KServe exporter's families: InferenceService state (Kubernetes API) and normalised model-server stats.

Model-server families carry `namespace`, `inferenceservice`, `model`, `server`, whatever server
(KServe, Triton, TorchServe, vLLM, Knative queue-proxy) the numbers came from; the mapping is a table
in exporters/kserve/servers/ and in the README.
"""

from __future__ import annotations

from gpulens.metrics.family import Family

ISVC = ("namespace", "inferenceservice")
MODEL = ISVC + ("model", "server")

ISVC_INFO = Family("gpulens_inferenceservice_info", "gauge",
                   "InferenceService identity, constant 1 (status.url, deployment mode annotation, predictor model format/runtime).",
                   ISVC + ("url", "deployment_mode", "model_format", "runtime"), "InferenceService", "kserve")
ISVC_READY = Family("gpulens_inferenceservice_ready", "gauge",
                    "1 if the InferenceService's Ready condition is True (status.conditions).", ISVC, "InferenceService", "kserve")
ISVC_CONDITION = Family("gpulens_inferenceservice_condition", "gauge",
                        "1 if the condition is True, per condition type and status (kube-state-metrics style, status=true|false|unknown).",
                        ISVC + ("condition", "status"), "InferenceService", "kserve")
ISVC_CONDITION_TRANSITION = Family("gpulens_inferenceservice_condition_last_transition_timestamp_seconds", "gauge",
                                   "When the condition last changed (status.conditions[].lastTransitionTime).",
                                   ISVC + ("condition",), "InferenceService", "kserve")
ISVC_TRAFFIC = Family("gpulens_inferenceservice_traffic_ratio", "gauge",
                      "Share of traffic per revision, 0..1 (status.components.<component>.traffic[].percent / 100).",
                      ISVC + ("component", "revision", "tag", "latest"), "InferenceService", "kserve")
ISVC_REVISION_MISMATCH = Family("gpulens_inferenceservice_revision_mismatch", "gauge",
                                "1 while the latest created revision is not the latest ready one (a rollout stuck or failing).",
                                ISVC + ("component",), "InferenceService", "kserve")
ISVC_MODEL_STATE = Family("gpulens_inferenceservice_model_state", "gauge",
                          "1 for the current model state (status.modelStatus.transitionStatus / activeModelState).",
                          ISVC + ("transition_status", "active_model_state"), "InferenceService", "kserve")
ISVC_MODEL_FAILED_COPIES = Family("gpulens_inferenceservice_model_failed_copies", "gauge",
                                  "Model copies that failed to load (status.modelStatus.copies.failedCopies).", ISVC,
                                  "InferenceService", "kserve")
ISVC_REPLICAS_DESIRED = Family("gpulens_inferenceservice_replicas", "gauge",
                               "Pods labelled serving.kserve.io/inferenceservice=<name>, per component.",
                               ISVC + ("component",), "Pod", "kserve")
ISVC_REPLICAS_READY = Family("gpulens_inferenceservice_replicas_ready", "gauge",
                             "Of those pods, how many are Ready.", ISVC + ("component",), "Pod", "kserve")
ISVC_DEGRADED = Family("gpulens_inferenceservice_degraded", "gauge",
                       "1 if Ready is True but pods crash-loop, are not ready, or fail the model readiness endpoint (reason).",
                       ISVC + ("reason",), "InferenceService", "kserve")
ISVC_COLD_START = Family("gpulens_inferenceservice_cold_start_seconds", "histogram",
                         "Pod starts, seconds from pod creation to each phase: scheduled, initialized (storage-initializer done: "
                         "model downloaded), container_started (image pulled, server started), ready (model loaded).",
                         ISVC + ("phase",), "Pod", "kserve")

REQUESTS = Family("gpulens_model_requests_total", "counter",
                  "Inference requests by outcome (success|error, or unknown where the server does not tell), normalised across "
                  "model servers; from the queue-proxy in serverless mode.",
                  MODEL + ("outcome",), "", "kserve")
REQUEST_DURATION = Family("gpulens_model_request_duration_seconds", "histogram",
                          "End-to-end request duration inside the model server (server's own buckets where it has them).",
                          MODEL, "", "kserve")
REQUEST_DURATION_SUM = Family("gpulens_model_request_duration_seconds_total", "counter",
                              "Cumulative time requests spent inside the server (all servers; Triton and TorchServe export only this).",
                              MODEL, "", "kserve")
QUEUE_DURATION_SUM = Family("gpulens_model_queue_duration_seconds_total", "counter",
                            "Cumulative time requests waited in the server's queue.", MODEL, "", "kserve")
COMPUTE_DURATION_SUM = Family("gpulens_model_compute_duration_seconds_total", "counter",
                              "Cumulative time spent in model compute (predict/infer).", MODEL, "", "kserve")
IN_FLIGHT = Family("gpulens_model_requests_in_flight", "gauge", "Requests being processed now.", MODEL, "", "kserve")
PENDING = Family("gpulens_model_requests_pending", "gauge", "Requests waiting in the server's queue now.", MODEL, "", "kserve")
TTFT = Family("gpulens_model_time_to_first_token_seconds", "histogram",
              "LLM time to first token (vLLM vllm:time_to_first_token_seconds).", MODEL, "", "kserve")
ITL = Family("gpulens_model_inter_token_latency_seconds", "histogram",
             "LLM time between output tokens (vLLM vllm:inter_token_latency_seconds).", MODEL, "", "kserve")
KV_CACHE = Family("gpulens_model_kv_cache_usage_ratio", "gauge",
                  "LLM KV-cache blocks in use, 0..1, the fullest pod's (vLLM vllm:kv_cache_usage_perc).",
                  MODEL, "", "kserve")
MODEL_READY = Family("gpulens_model_ready", "gauge",
                     "1 if the model answers ready on its v2 (/v2/models/{m}/ready) or v1 (/v1/models/{m}) endpoint.",
                     MODEL + ("endpoint",), "", "kserve")

KUBE_UP = Family("gpulens_kserve_kubernetes_up", "gauge", "1 if the last list/watch of the Kubernetes API succeeded.",
                 ("resource",), "", "kserve")
KUBE_LAST_SUCCESS = Family("gpulens_kserve_kubernetes_last_success_timestamp_seconds", "gauge",
                           "When the Kubernetes API last answered a list or watch event (stale data shows here).",
                           ("resource",), "", "kserve")
KUBE_RELISTS = Family("gpulens_kserve_kubernetes_relists_total", "counter",
                      "Full lists of the Kubernetes API, by reason: initial, resync (interval), expired (410 Gone), "
                      "silent (a watch that stopped delivering), error.", ("resource", "reason"), "", "kserve")
SCRAPE_UP = Family("gpulens_kserve_scrape_up", "gauge", "1 if the last scrape of the model server's /metrics succeeded.",
                   ISVC + ("endpoint",), "", "kserve")
SCRAPE_ERRORS = Family("gpulens_kserve_scrape_errors_total", "counter",
                       "Model-server scrapes that failed, by reason (timeout|connect|http|parse|too_large).",
                       ISVC + ("reason",), "", "kserve")
SCRAPE_LAST_SUCCESS = Family("gpulens_kserve_scrape_last_success_timestamp_seconds", "gauge",
                             "When the model server's /metrics was last scraped successfully.", ISVC + ("endpoint",), "", "kserve")
REFRESH_DURATION = Family("gpulens_kserve_refresh_duration_seconds", "gauge",
                          "Duration of the last full refresh (all InferenceServices and endpoints).", (), "", "kserve")
