"""GPU Fleet: every GPU of the selected clusters and nodes, what it is doing, what breaks, what it costs."""

from gpulens.alerts import cost
from gpulens.alerts.gpu import ACTIVITY, GPU_KEY, THROTTLE_REASONS
from gpulens.alerts.rule import selector as s
from gpulens.dashboards import panels as p
from gpulens.dashboards.uids import FLEET, INFERENCE, NODE, PROBE
from gpulens.metrics import gpu as g

F = {"cluster": "~$cluster", "node": "~$node"}
NS = {**F, "namespace": "~$namespace"}
IDLE = f"max_over_time({s(ACTIVITY, **F)}[30m]) == 0 and on({GPU_KEY}) {g.GPU_ALLOCATION.name}"

variables = [
    p.query_variable("cluster", "Cluster", f"label_values({g.GPU_INFO.name}, cluster)"),
    p.query_variable("node", "Node", f'label_values({s(g.GPU_INFO.name, cluster="~$cluster")}, node)'),
    p.query_variable("namespace", "Namespace", f'label_values({s(g.GPU_ALLOCATION.name, **F)}, namespace)', all_value=".+"),
]
gpu_link = [p.node_dashboard_link(NODE), p.NODE_LOGS]

rows = [
    ("Overview", [
        (p.stat("GPUs", [p.q(f"count({s(g.GPU_INFO.name, **F)})")], "none", "GPUs the exporters enumerate."), 4),
        (p.stat("GPUs up", [p.q(f"sum({s(g.GPU_UP.name, **F)})")], "none", "GPUs answering NVML now."), 4),
        (p.stat("Fleet activity", [p.q(f"avg({s(ACTIVITY, **F)})")], "percentunit",
                "Mean GPU activity: GPM SM activity where available, else NVML utilization.", minimum=0, maximum=1,
                steps=((None, "red"), (0.2, "orange"), (0.5, "green"))), 4),
        (p.stat("Allocated but idle", [p.q(f"count({IDLE})")], "none",
                "GPUs a pod holds that had zero activity for 30 minutes.", steps=((None, "green"), (1, "orange"))), 4),
        (p.table("GPUs by node and model", [p.q(f"count by (cluster, node, name) ({s(g.GPU_INFO.name, **F)})", table=True)],
                 "none", f"Count of GPUs per node and model ({g.GPU_INFO.name} name label).", links=[p.NODE_LOGS]), 8),
    ]),
    ("Utilization and memory", [
        (p.heatmap("Activity across GPUs", [p.q(s(ACTIVITY, **F), "{{node}}/{{gpu}}")], "percentunit",
                   "One row per GPU: activity over time.",
                   options={"calculate": False, "yAxis": {"axisPlacement": "left"}, "cellGap": 1}), 12),
        (p.timeseries("Memory used vs total per node", [
            p.q(f"sum by (node) ({s(g.MEM_USED.name, **F)})", "{{node}} used"),
            p.q(f"sum by (node) ({s(g.MEM_TOTAL.name, **F)})", "{{node}} total"),
        ], "bytes", "Framebuffer memory allocated against the installed total.", minimum=0), 12),
    ]),
    ("Power and thermals", [
        (p.timeseries("Power per namespace", [p.q(f'sum by (namespace) ({s(g.POWER.name, **NS)})', "{{namespace}}")],
                      "watt", "Board power of the GPUs each namespace holds (pod attribution).", minimum=0), 8),
        (p.bargauge("Energy per namespace over the range",
                    [p.q(f"sum by (namespace) (increase({s(g.ENERGY.name, **NS)}[$__range]))", "{{namespace}}", instant=True)],
                    "joule", "Energy drawn by each namespace's GPUs over the dashboard's time range."), 8),
        (p.timeseries("Temperatures", [p.q(s(g.TEMP.name, **F), "{{node}}/{{gpu}}")], "celsius", "GPU die temperature.",
                      steps=((None, "green"), (80, "orange"), (85, "red")), links=gpu_link), 8),
        (p.state_timeline("Throttle reasons",
                          [p.q(f'{s(g.CLOCK_EVENT.name, **F, reason="~" + "|".join(THROTTLE_REASONS + ("sw_power_cap",)))} == 1',
                               "{{node}}/{{gpu}} {{reason}}")],
                          "Clock-event reasons holding clocks down (thermal, power brake, power cap, hardware slowdown).",
                          steps=((None, "green"), (1, "red")), links=gpu_link), 24),
    ]),
    ("Errors", [
        (p.table("XID, ECC and row remaps", [
            p.q(f"sum by (node, gpu, uuid, xid) ({s(g.XID_ERRORS.name, **F)})", table=True),
            p.q(f'sum by (node, gpu, uuid) ({s(g.ECC.name, **F, type="uncorrected", scope="volatile")})', table=True),
            p.q(f"sum by (node, gpu, uuid, type) ({s(g.REMAPPED_ROWS.name, **F)})", table=True),
        ], "none", "XIDs seen since the exporter started, volatile uncorrectable ECC errors and remapped rows per GPU.",
            links=gpu_link), 24),
    ]),
    ("Cost and allocation", [
        (p.table("Allocated but idle GPUs", [p.q(IDLE, table=True)], "none",
                 "Pods holding a GPU that did no work for 30 minutes: candidates to release.", links=[p.POD_LOGS]), 12),
        (p.bargauge("GPUs per namespace", [p.q(s(cost.NS_ALLOCATED, cluster="~$cluster", namespace="~$namespace"), "{{namespace}}",
                                               instant=True)], "none", "Devices (GPUs or MIG instances) allocated per namespace."), 6),
        (p.bargauge("GPU-hours allocated vs used", [
            p.q(f"sum by (namespace) (avg_over_time({s(cost.NS_ALLOCATED, cluster='~$cluster', namespace='~$namespace')}[$__range]))"
                " * $__range_s / 3600", "{{namespace}} allocated", instant=True),
            p.q(f"sum by (namespace) (avg_over_time({s(cost.NS_USED, cluster='~$cluster', namespace='~$namespace')}[$__range]))"
                " * $__range_s / 3600", "{{namespace}} used", instant=True),
        ], "h", "GPU-hours each namespace held against the GPU-hours of activity it used (pod attribution × activity)."), 6),
        (p.table("GPUs per pod", [p.q(f"count by (namespace, pod, node) ({s(g.GPU_ALLOCATION.name, **NS)})", table=True)], "none",
                 "Devices each pod holds (kubelet PodResources).", links=[p.POD_LOGS]), 24),
    ]),
]

dashboard = p.dashboard(
    FLEET, "gpulens / GPU Fleet", "Every GPU: utilization, memory, power, thermals, errors and cost.", variables, p.layout(rows),
    [p.dashboard_link(NODE, "GPU Node"), p.dashboard_link(INFERENCE, "Inference Services"), p.dashboard_link(PROBE, "Probe & SLO")],
)
