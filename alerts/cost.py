"""GPU cost and waste: allocated vs used GPUs per namespace and per InferenceService, cost per 1000 inferences.

Allocation comes from pod attribution (kubelet PodResources); a MIG instance counts as one device.
InferenceServices are found from their predictor pods' names (`<isvc>-predictor-…`, KServe's naming
in both raw and serverless mode).
"""

from __future__ import annotations

from gpulens.alerts.config import AlertConfig
from gpulens.alerts.gpu import ACTIVITY
from gpulens.alerts.inference import REQUESTS
from gpulens.alerts.rule import Group, Record, selector
from gpulens.metrics import gpu as g

NS_ALLOCATED = "gpulens:namespace_gpus_allocated:count"
NS_USED = "gpulens:namespace_gpus_used:sum"
ISVC_ALLOCATED = "gpulens:inferenceservice_gpus_allocated:count"
ISVC_ACTIVITY = "gpulens:inferenceservice_gpu_activity:avg"
ISVC_COST = "gpulens:inferenceservice_cost_per_1k_requests:rate5m"
PREDICTOR_POD = "(.+)-predictor-.+"


def predictors(metric: str) -> str:
    """Only the series of KServe predictor pods."""
    return selector(metric, pod="~" + PREDICTOR_POD)


def isvc_of(expr: str) -> str:
    """Adds an `inferenceservice` label derived from the pod name."""
    return f'label_replace({expr}, "inferenceservice", "$1", "pod", "{PREDICTOR_POD}")'


def records(cfg: AlertConfig) -> list[Record]:
    alloc = g.GPU_ALLOCATION.name
    return [
        Record(NS_ALLOCATED, f"count by (cluster, namespace) (count by (cluster, namespace, uuid) ({alloc}))"),
        Record(NS_USED, f'sum by (cluster, namespace) ({ACTIVITY}{{namespace!=""}})'),
        Record(ISVC_ALLOCATED, "count by (cluster, namespace, inferenceservice) "
                               f"(count by (cluster, namespace, inferenceservice, uuid) ({isvc_of(predictors(alloc))}))"),
        Record(ISVC_ACTIVITY, f"avg by (cluster, namespace, inferenceservice) ({isvc_of(predictors(ACTIVITY))})"),
        # GPUs × price per hour / thousands of requests per hour; absent while a service has no traffic.
        Record(ISVC_COST, f"{ISVC_ALLOCATED} * {cfg.gpu_hourly_price:g}\n/ on(cluster, namespace, inferenceservice)\n"
                          f"(sum by (cluster, namespace, inferenceservice) ({REQUESTS}) * 3.6 > 0)"),
    ]


def groups(cfg: AlertConfig) -> list[Group]:
    return [Group("gpulens-cost", "cost", tuple(records(cfg)))]
