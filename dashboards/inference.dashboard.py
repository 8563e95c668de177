"""Inference Services: per namespace / InferenceService / model — health, traffic, errors, latency, GPUs and cost."""

from gpulens.alerts import cost, inference
from gpulens.alerts.gpu import ACTIVITY
from gpulens.alerts.rule import selector as s
from gpulens.dashboards import panels as p
from gpulens.dashboards.uids import FLEET, INFERENCE, NODE, PROBE
from gpulens.metrics import gpu as g
from gpulens.metrics import kserve as k

ISVC = {"cluster": "~$cluster", "namespace": "~$namespace", "inferenceservice": "~$inferenceservice"}
M = {**ISVC, "model": "~$model"}
BY = "namespace, inferenceservice, model"
LM = "{{inferenceservice}}/{{model}}"
# GPUs of a service through pod attribution: KServe names predictor pods <isvc>-predictor-….
PODS = {"cluster": "~$cluster", "namespace": "~$namespace", "pod": "~($inferenceservice)-predictor-.+"}

variables = [
    p.query_variable("cluster", "Cluster", f"label_values({k.ISVC_INFO.name}, cluster)"),
    p.query_variable("namespace", "Namespace", f'label_values({s(k.ISVC_INFO.name, cluster="~$cluster")}, namespace)'),
    p.query_variable("inferenceservice", "InferenceService",
                     f'label_values({s(k.ISVC_INFO.name, cluster="~$cluster", namespace="~$namespace")}, inferenceservice)'),
    p.query_variable("model", "Model", f"label_values({s(k.REQUESTS.name, **ISVC)}, model)"),
]


def rec(name: str) -> str:
    return s(name, **M)


rows = [
    ("Health", [
        (p.state_timeline("Ready", [p.q(s(k.ISVC_READY.name, **ISVC), "{{namespace}}/{{inferenceservice}}")],
                          "The InferenceService's Ready condition.", steps=((None, "red"), (1, "green")), links=[p.POD_LOGS]), 12),
        (p.timeseries("Replicas", [
            p.q(f"sum by (inferenceservice, component) ({s(k.ISVC_REPLICAS_DESIRED.name, **ISVC)})", "{{inferenceservice}} {{component}}"),
            p.q(f"sum by (inferenceservice, component) ({s(k.ISVC_REPLICAS_READY.name, **ISVC)})",
                "{{inferenceservice}} {{component}} ready"),
        ], "none", "Pods per component, and how many are Ready.", minimum=0), 6),
        (p.table("Conditions", [p.q(f"{s(k.ISVC_CONDITION.name, **ISVC)} == 1", table=True)], "none",
                 "Every status condition and its status."), 6),
    ]),
    ("Traffic and errors", [
        (p.timeseries("Request rate", [p.q(rec(inference.REQUESTS), LM)], "reqps", "Requests per second (recording rule).",
                      minimum=0), 8),
        (p.timeseries("Error ratio", [p.q(rec(inference.ERROR_RATIO), LM)], "percentunit",
                      "Failed over all requests, 5-minute rate.", minimum=0, maximum=1,
                      steps=((None, "green"), (0.01, "orange"), (0.05, "red"))), 8),
        (p.timeseries("In flight and queued", [
            p.q(f"sum by ({BY}) ({s(k.IN_FLIGHT.name, **M)})", LM + " in flight"),
            p.q(f"sum by ({BY}) ({s(k.PENDING.name, **M)})", LM + " queued"),
        ], "none", "Requests being processed, and waiting in the server's queue.", minimum=0), 8),
    ]),
    ("Latency", [
        (p.timeseries("Latency p50 / p95 / p99", [
            p.q(rec(inference.LATENCY["p50_5m"]), LM + " p50"), p.q(rec(inference.LATENCY["p95_5m"]), LM + " p95"),
            p.q(rec(inference.LATENCY["p99_5m"]), LM + " p99"),
        ], "s", "Server-side request duration quantiles (recording rules over the normalised histogram).", minimum=0), 12),
        (p.timeseries("Queue vs compute time per request", [
            p.q(f"sum by ({BY}) (rate({s(k.QUEUE_DURATION_SUM.name, **M)}[5m])) / sum by ({BY}) (rate({s(k.REQUESTS.name, **M)}[5m]))",
                LM + " queue"),
            p.q(f"sum by ({BY}) (rate({s(k.COMPUTE_DURATION_SUM.name, **M)}[5m])) / sum by ({BY}) (rate({s(k.REQUESTS.name, **M)}[5m]))",
                LM + " compute"),
        ], "s", "Mean seconds a request waits in the queue against the seconds it computes.", minimum=0), 12),
        (p.timeseries("Time to first token p95 (LLM)", [p.q(rec(inference.TTFT_P95), LM)], "s",
                      "LLM servers: 95th percentile time to the first token.", minimum=0), 12),
        (p.timeseries("KV cache usage (LLM)", [p.q(f"max by ({BY}) ({s(k.KV_CACHE.name, **M)})", LM)], "percentunit",
                      "LLM servers: KV-cache blocks in use.", minimum=0, maximum=1), 12),
    ]),
    ("Rollout", [
        (p.timeseries("Traffic per revision (canary)", [
            p.q(s(k.ISVC_TRAFFIC.name, **ISVC), "{{inferenceservice}} {{revision}}"),
        ], "percentunit", "Share of traffic per revision: a canary rollout shows two.", minimum=0, maximum=1), 12),
        (p.timeseries("Revision mismatch", [p.q(s(k.ISVC_REVISION_MISMATCH.name, **ISVC), "{{inferenceservice}} {{component}}")], "none",
                      "1 while the latest created revision is not the latest ready one.", steps=((None, "green"), (1, "red"))), 12),
    ]),
    ("GPUs serving it", [
        (p.timeseries("GPU activity of its pods", [p.q(s(ACTIVITY, **PODS), "{{pod}} GPU {{gpu}}")], "percentunit",
                      "Activity of the GPUs the service's predictor pods hold (pod attribution).", minimum=0, maximum=1,
                      links=[p.node_dashboard_link(NODE), p.POD_LOGS]), 12),
        (p.timeseries("GPU memory of its pods", [p.q(s(g.MEM_USED.name, **PODS), "{{pod}} GPU {{gpu}}")], "bytes",
                      "Memory on the GPUs the predictor pods hold.", minimum=0), 12),
        (p.stat("GPUs allocated", [p.q(s(cost.ISVC_ALLOCATED, **ISVC), "{{inferenceservice}}")], "none",
                "Devices the service's pods hold."), 8),
        (p.stat("Mean GPU activity", [p.q(s(cost.ISVC_ACTIVITY, **ISVC), "{{inferenceservice}}")], "percentunit",
                "Mean activity of those devices.", minimum=0, maximum=1, steps=((None, "red"), (0.2, "orange"), (0.5, "green"))), 8),
        (p.stat("Cost per 1000 inferences", [p.q(s(cost.ISVC_COST, **ISVC), "{{inferenceservice}}")], "currencyUSD",
                "GPUs × hourly GPU price / thousands of requests per hour."), 8),
    ]),
]

dashboard = p.dashboard(INFERENCE, "gpulens / Inference Services",
                        "KServe InferenceServices: readiness, traffic, errors, latency, the GPUs serving them and their cost.",
                        variables, p.layout(rows),
                        [p.dashboard_link(PROBE, "Probe & SLO"), p.dashboard_link(FLEET, "GPU Fleet"), p.dashboard_link(NODE, "GPU Node")])
