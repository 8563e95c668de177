"""GPU alerts and recording rules: hardware faults page, slow degradation tickets, waste is a cost ticket.

Every metric name comes from the catalogue (`gpulens.metrics.gpu`); the node and cluster labels come
from the scrape's relabelling, so the rules carry them through without naming them.
"""

from __future__ import annotations

from gpulens.alerts.config import AlertConfig
from gpulens.alerts.rule import Alert, Group, Record, selector
from gpulens.metrics import gpu as g

ACTIVITY = "gpulens:gpu_activity:ratio"
IDLE_POWER = "gpulens:gpu_idle_power_threshold:watts"
WHERE = "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on node {{ $labels.node }}"
# How one GPU is matched across families: uuids are unique, but scoping by cluster and node keeps a
# cloned or simulated uuid on two nodes from breaking one-to-one matching.
GPU_KEY = "cluster, node, uuid"
THROTTLE_REASONS = ("hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


def _num(x: float) -> str:
    return f"{x:g}"


def records(cfg: AlertConfig) -> list[Record]:
    # "Is this GPU busy": GPM SM activity (Hopper+, whole-GPU series) where the GPU has it, else NVML
    # utilization. `or on(...)` keeps a GPU's utilization only when that GPU has no SM-activity series.
    activity = Record(ACTIVITY, f'{selector(g.GPM_SM.name, gpu_instance_id="")} or on({GPU_KEY}) {g.GPU_UTIL.name}')
    by = "cluster, node, gpu, uuid"
    per_model = [f'max by ({by}) ({selector(g.GPU_INFO.name, name=model)}) * 0 + {_num(watts)}'
                 for model, watts in sorted(cfg.idle_power_watts.items())]
    fallback = f"max by ({by}) ({g.POWER_LIMIT.name}) * {_num(cfg.idle_power_default_ratio)}"
    idle_power = Record(IDLE_POWER, "\nor\n".join(per_model + [fallback]))
    return [activity, idle_power]


def alerts(cfg: AlertConfig) -> list[Alert]:
    job = selector("up", job=cfg.gpu_exporter_job)
    xids = "|".join(str(x) for x in cfg.critical_xids)
    return [
        Alert("GpulensGpuXidCritical",
              f'time() - {selector(g.XID_LAST.name, xid="~" + xids)} < {cfg.xid_alert_seconds}', "0s", "critical",
              "GPU XID {{ $labels.xid }} on node {{ $labels.node }}",
              f"{WHERE} reported critical XID {{{{ $labels.xid }}}} {{{{ $value | humanizeDuration }}}} ago; "
              "drain the node and reset or replace the GPU."),
        Alert("GpulensGpuEccUncorrectable",
              f'increase({selector(g.ECC.name, type="uncorrected", scope="volatile")}[10m]) > 0', "0s", "critical",
              "Uncorrectable ECC errors on a GPU on node {{ $labels.node }}",
              f"{WHERE} had {{{{ $value | humanize }}}} uncorrectable ECC errors in 10 minutes; running jobs may have "
              "read corrupt memory."),
        Alert("GpulensGpuRowRemapFailed", f"{g.ROW_REMAP_FAILURE.name} == 1", "1m", "critical",
              "GPU row remapping failed on node {{ $labels.node }}",
              f"{WHERE} could not remap a failing memory row: the GPU must be replaced."),
        Alert("GpulensGpuRowRemapPending", f"{g.ROW_REMAP_PENDING.name} == 1", "15m", "warning",
              "GPU needs a reset for a pending row remap on node {{ $labels.node }}",
              f"{WHERE} has a memory row remap pending; reset the GPU at the next drain."),
        # While NVML itself is down every GPU reads as not up: that is GpulensNvmlDown, not a lost GPU.
        Alert("GpulensGpuLost", f"{g.GPU_UP.name} == 0\nand on(cluster, node, instance) {g.NVML_UP.name} == 1", "1m", "critical",
              "GPU lost on node {{ $labels.node }}",
              f"{WHERE} stopped answering NVML (GpuIsLost, usually XID 79: fell off the bus)."),
        Alert("GpulensNodeGpusMissing",
              f"count by (cluster, node) ({g.GPU_INFO.name}) < max_over_time((count by (cluster, node) ({g.GPU_INFO.name}))[1d:5m])",
              "10m", "critical", "Node {{ $labels.node }} lost GPUs",
              "Node {{ $labels.node }} shows {{ $value }} GPUs, fewer than it had in the last day: a GPU is no longer enumerated."),
        Alert("GpulensGpuThrottled",
              f'{selector(g.CLOCK_EVENT.name, reason="~" + "|".join(THROTTLE_REASONS))} == 1', "10m", "warning",
              "GPU clocks held down by {{ $labels.reason }} on node {{ $labels.node }}",
              f"{WHERE} has been throttled by {{{{ $labels.reason }}}} for 10 minutes: check cooling and power delivery."),
        Alert("GpulensGpuTemperatureHigh", f"{g.TEMP.name} > {_num(cfg.temperature_warning_celsius)}", "10m", "warning",
              "GPU temperature high on node {{ $labels.node }}",
              f"{WHERE} is at {{{{ $value }}}} °C (threshold {_num(cfg.temperature_warning_celsius)} °C)."),
        Alert("GpulensGpuMemoryNearlyFull", f"{g.MEM_USED.name} / {g.MEM_TOTAL.name} > {_num(cfg.memory_full_ratio)}", "15m",
              "warning", "GPU memory nearly full on node {{ $labels.node }}",
              f"{WHERE} has {{{{ $value | humanizePercentage }}}} of its memory allocated "
              "(pod {{ $labels.namespace }}/{{ $labels.pod }})."),
        Alert("GpulensGpuAllocatedIdle",
              f"max_over_time({ACTIVITY}[30m]) == 0\nand on({GPU_KEY}) ({g.POWER.name} < on({GPU_KEY}) {IDLE_POWER})\n"
              f"and on({GPU_KEY}) {g.GPU_ALLOCATION.name}",
              cfg.idle_for, "warning", "GPU allocated to {{ $labels.namespace }}/{{ $labels.pod }} but idle",
              f"{WHERE} is allocated to pod {{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} and has done no work for "
              f"{cfg.idle_for} (activity 0, power below the idle threshold): release it or scale the workload down."),
        Alert("GpulensGpuExporterDown", f"{job} == 0", "5m", "critical",
              "gpulens GPU exporter down on node {{ $labels.node }}",
              "Prometheus cannot scrape the GPU exporter at {{ $labels.instance }}: no GPU on that node is monitored."),
        Alert("GpulensGpuExporterAbsent", f"absent({job})", "15m", "critical",
              "No gpulens GPU exporter is scraped",
              f"Prometheus has no target for job {cfg.gpu_exporter_job}: no GPU in the cluster is monitored."),
        Alert("GpulensNvmlDown", f"{g.NVML_UP.name} == 0", "5m", "critical",
              "NVML down on node {{ $labels.node }}",
              "The GPU exporter on node {{ $labels.node }} cannot initialise NVML (driver unloaded or upgrading); "
              "GPU metrics from that node are missing."),
        Alert("GpulensGpuSampleStale", f"{g.SAMPLE_AGE.name} > {_num(cfg.sample_stale_seconds)}", "2m", "critical",
              "GPU metrics on node {{ $labels.node }} are stale",
              "The GPU exporter on node {{ $labels.node }} last sampled NVML {{ $value | humanizeDuration }} ago: "
              "an NVML call hangs (driver or GPU wedged)."),
    ]


def groups(cfg: AlertConfig) -> list[Group]:
    # One group, records first: rules in a group run in order, so an alert never reads a stale record.
    return [Group("gpulens-gpu", "gpu", (*records(cfg), *alerts(cfg)))]
