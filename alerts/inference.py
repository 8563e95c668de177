"""Inference recording rules (normalised across model servers) and alerts for KServe, the probe and the canary."""

from __future__ import annotations

from gpulens.alerts.config import AlertConfig
from gpulens.alerts.rule import Alert, Group, Record, selector
from gpulens.metrics import canary, gpu, kserve, probe

BY = "cluster, namespace, inferenceservice, model, server"
REQUESTS = "gpulens:inference_requests:rate5m"
ERROR_RATIO = "gpulens:inference_error_ratio:rate5m"
QUANTILES = {"p50_5m": 0.5, "p95_5m": 0.95, "p99_5m": 0.99}
LATENCY = {k: f"gpulens:inference_latency_seconds:{k}" for k in QUANTILES}
TTFT_P95 = "gpulens:inference_ttft_seconds:p95_5m"
CANARY_BY_MODEL = "gpulens:canary_matmul_flops_per_second:by_model"
CANARY_FLEET_RATIO = "gpulens:canary_matmul_flops:fleet_median_ratio"
ISVC = "InferenceService {{ $labels.namespace }}/{{ $labels.inferenceservice }}"


def records(cfg: AlertConfig) -> list[Record]:
    rate = f"rate({kserve.REQUESTS.name}[5m])"
    errors = f'sum by ({BY}) (rate({selector(kserve.REQUESTS.name, outcome="error")}[5m]))'
    total = f"sum by ({BY}) ({rate})"
    out = [
        Record(REQUESTS, total),
        # A server that never failed has no outcome="error" series: count it as 0 errors, not as no data.
        Record(ERROR_RATIO, f"({errors} or {total} * 0)\n/\n{total}"),
    ]
    for key, q in QUANTILES.items():
        out.append(Record(LATENCY[key],
                          f"histogram_quantile({q}, sum by ({BY}, le) (rate({kserve.REQUEST_DURATION.name}_bucket[5m])))"))
    out.append(Record(TTFT_P95, f"histogram_quantile(0.95, sum by ({BY}, le) (rate({kserve.TTFT.name}_bucket[5m])))"))
    # The canary against its peers: each GPU's matmul FLOP/s over the median of the GPUs of the same model
    # (`name` from gpulens_gpu_info, joined on uuid), so a slow GPU shows even where no expected figure is known.
    out.append(Record(CANARY_BY_MODEL,
                      f'max by (cluster, node, gpu, uuid, name, dtype) ({canary.MATMUL_FLOPS.name}{{device="cuda"}}\n'
                      f"* on (uuid) group_left (name) max by (uuid, name) ({gpu.GPU_INFO.name}))"))
    out.append(Record(CANARY_FLEET_RATIO,
                      f"{CANARY_BY_MODEL}\n/ on (cluster, name, dtype) group_left\n"
                      f"quantile by (cluster, name, dtype) (0.5, {CANARY_BY_MODEL})"))
    return out


def alerts(cfg: AlertConfig) -> list[Alert]:
    return [
        Alert("GpulensInferenceServiceNotReady", f"{kserve.ISVC_READY.name} == 0", "5m", "critical",
              f"{ISVC} not ready",
              f"{ISVC} has not been Ready for 5 minutes: it is not serving (see its status.conditions)."),
        Alert("GpulensInferenceErrorRatioHigh",
              f"{ERROR_RATIO} > {cfg.error_ratio_warning:g}\nand {REQUESTS} > {cfg.error_ratio_min_rps:g}", "10m", "warning",
              f"{ISVC} model {{{{ $labels.model }}}} is failing requests",
              f"{{{{ $value | humanizePercentage }}}} of requests to model {{{{ $labels.model }}}} of {ISVC} "
              f"({{{{ $labels.server }}}}) failed over 5 minutes (threshold {cfg.error_ratio_warning:.0%})."),
        Alert("GpulensProbeFailing", f"{probe.SUCCESS.name} == 0", "5m", "critical",
              "Inference probe failing for {{ $labels.target }}",
              "The gpulens probe cannot get a valid answer from model {{ $labels.model }} at {{ $labels.target }} "
              "({{ $labels.protocol }}) for 5 minutes: users likely cannot either."),
        Alert("GpulensGpuCanaryFailing", f"{canary.SUCCESS.name} == 0", "15m", "warning",
              "GPU canary failing on GPU {{ $labels.gpu }} of node {{ $labels.node }}",
              "The GPU canary on GPU {{ $labels.gpu }} ({{ $labels.uuid }}) has not completed a verified run for 15 minutes."),
        Alert("GpulensGpuCanaryThroughputLow", f"{canary.MATMUL_RATIO.name} < {cfg.canary_ratio_warning:g}", "30m", "warning",
              "GPU {{ $labels.gpu }} of node {{ $labels.node }} is slow",
              "The canary's matmul reaches {{ $value | humanizePercentage }} of the FLOP/s expected for this GPU model "
              f"(threshold {cfg.canary_ratio_warning:.0%}) on GPU {{{{ $labels.gpu }}}} ({{{{ $labels.uuid }}}})."),
        Alert("GpulensGpuCanarySlowerThanFleet", f"{CANARY_FLEET_RATIO} < {cfg.canary_fleet_ratio_warning:g}", "30m", "warning",
              "GPU {{ $labels.gpu }} of node {{ $labels.node }} is slower than its fleet",
              "The canary's matmul on GPU {{ $labels.gpu }} ({{ $labels.uuid }}, {{ $labels.name }}) reaches "
              "{{ $value | humanizePercentage }} of the median of the other GPUs of that model "
              f"(threshold {cfg.canary_fleet_ratio_warning:.0%})."),
    ]


def groups(cfg: AlertConfig) -> list[Group]:
    return [Group("gpulens-inference", "inference", (*records(cfg), *alerts(cfg)))]
