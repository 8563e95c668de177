"""GPU Node / Device: one node's GPUs in detail — every exporter family, MIG, processes, links, clocks."""

from gpulens.alerts.gpu import ACTIVITY, THROTTLE_REASONS
from gpulens.alerts.rule import selector as s
from gpulens.dashboards import panels as p
from gpulens.dashboards.uids import FLEET, INFERENCE, NODE
from gpulens.metrics import gpu as g
from gpulens.metrics import pod

N = {"cluster": "~$cluster", "node": "~$node"}
S = {**N, "gpu": "~$gpu"}
L = "GPU {{gpu}}"
RATE = "[$__rate_interval]"

variables = [
    p.query_variable("cluster", "Cluster", f"label_values({g.GPU_INFO.name}, cluster)"),
    p.query_variable("node", "Node", f'label_values({s(g.GPU_INFO.name, cluster="~$cluster")}, node)', multi=False, include_all=False),
    p.query_variable("gpu", "GPU", f"label_values({s(g.GPU_INFO.name, **N)}, gpu)"),
]
logs = [p.NODE_LOGS]


def ts(title: str, family: g.Family, unit: str, description: str, **kw: object) -> object:
    return p.timeseries(title, [p.q(s(family.name, **S), L)], unit, description, **kw)


rows = [
    ("Identity and health", [
        (p.table("GPUs", [p.q(s(g.GPU_INFO.name, **S), table=True)], "none",
                 f"Model, PCI bus id, serial, VBIOS, driver and CUDA versions ({g.GPU_INFO.name})."), 12),
        (p.stat("GPUs up", [p.q(f"sum({s(g.GPU_UP.name, **S)})")], "none", "GPUs answering NVML."), 3),
        (p.stat("NVML", [p.q(s(g.NVML_UP.name, **N))], "bool_on_off", "1 while NVML is initialised on the node.",
                steps=((None, "red"), (1, "green"))), 3),
        (p.stat("Sample age", [p.q(s(g.SAMPLE_AGE.name, **N))], "s", "Seconds since the served snapshot was taken.",
                steps=((None, "green"), (5, "orange"), (30, "red"))), 3),
        (p.stat("Pod attribution", [p.q(s(g.PODRES_UP.name, **N))], "bool_on_off", "1 if the last kubelet PodResources List() worked.",
                steps=((None, "red"), (1, "green"))), 3),
    ]),
    ("Activity", [
        (p.timeseries("Activity (GPM SM activity, else utilization)", [p.q(s(ACTIVITY, **S), L)], "percentunit",
                      "The recording rule every 'is it busy' panel and alert uses.", minimum=0, maximum=1, links=logs), 8),
        (ts("NVML utilization", g.GPU_UTIL, "percentunit", "Fraction of time a kernel ran (coarse).", minimum=0, maximum=1), 8),
        (ts("Memory controller utilization", g.GPU_MEM_UTIL, "percentunit", "Fraction of time memory was read or written.",
            minimum=0, maximum=1), 8),
        (p.timeseries("Pipes (GPM)", [
            p.q(s(g.GPM_TENSOR.name, **S), "GPU {{gpu}} tensor"), p.q(s(g.GPM_FP16.name, **S), "GPU {{gpu}} fp16"),
            p.q(s(g.GPM_FP32.name, **S), "GPU {{gpu}} fp32"), p.q(s(g.GPM_FP64.name, **S), "GPU {{gpu}} fp64"),
        ], "percentunit", "Pipe activity (Hopper+ GPM).", minimum=0, maximum=1), 8),
        (p.timeseries("SM occupancy and DRAM bandwidth (GPM)", [
            p.q(s(g.GPM_SM_OCC.name, **S), "GPU {{gpu}} occupancy"), p.q(s(g.GPM_DRAM.name, **S), "GPU {{gpu}} DRAM"),
        ], "percentunit", "Resident warps over the maximum; DRAM bandwidth over peak.", minimum=0, maximum=1), 8),
        (p.timeseries("Video engines", [
            p.q(s(g.GPU_ENC_UTIL.name, **S), "GPU {{gpu}} encoder"), p.q(s(g.GPU_DEC_UTIL.name, **S), "GPU {{gpu}} decoder"),
        ], "percentunit", "Encoder and decoder utilization.", minimum=0, maximum=1), 8),
    ]),
    ("Memory", [
        (p.timeseries("Framebuffer", [
            p.q(s(g.MEM_USED.name, **S), "GPU {{gpu}} used"), p.q(s(g.MEM_FREE.name, **S), "GPU {{gpu}} free"),
            p.q(s(g.MEM_RESERVED.name, **S), "GPU {{gpu}} reserved"), p.q(s(g.MEM_TOTAL.name, **S), "GPU {{gpu}} total"),
        ], "bytes", "Used, free and driver-reserved memory against the total.", minimum=0), 12),
        (p.table("Processes", [p.q(s(g.PROCESS_MEMORY.name, **S), table=True)], "bytes",
                 "Memory per compute process (opt-in: --processes, needs hostPID).", links=[p.POD_LOGS]), 12),
        (p.timeseries("Per-pod SM utilization (shared GPUs)", [
            p.q(s(pod.SM_UTIL.name, **S), "GPU {{gpu}} {{namespace}}/{{pod}}"),
            p.q(s(pod.UNATTRIBUTED_SM.name, **S), "GPU {{gpu}} unattributed"),
        ], "percentunit", "Time-sliced or MPS GPUs: each pod's share, plus the share no pod owns.", minimum=0, maximum=1), 12),
        (p.timeseries("Per-pod memory (shared GPUs)", [
            p.q(s(pod.MEM_USED.name, **S), "GPU {{gpu}} {{namespace}}/{{pod}}"),
            p.q(s(pod.UNATTRIBUTED_MEM.name, **S), "GPU {{gpu}} unattributed"),
        ], "bytes", "Memory per pod on shared GPUs, plus memory no pod owns.", minimum=0), 12),
    ]),
    ("MIG", [
        (p.table("MIG instances", [p.q(s(g.MIG_INFO.name, **S), table=True)], "none",
                 "Instances with their profile, GPU/compute instance ids and parent GPU."), 12),
        (p.timeseries("MIG memory", [
            p.q(s(g.MIG_MEM_USED.name, **S), "GPU {{gpu}} {{mig_profile}} gi{{gpu_instance_id}} used"),
            p.q(s(g.MIG_MEM_TOTAL.name, **S), "GPU {{gpu}} {{mig_profile}} gi{{gpu_instance_id}} total"),
        ], "bytes", "Memory per MIG instance.", minimum=0), 12),
    ]),
    ("Power, thermals and clocks", [
        (p.timeseries("Power", [
            p.q(s(g.POWER.name, **S), "GPU {{gpu}} draw"), p.q(s(g.POWER_LIMIT.name, **S), "GPU {{gpu}} limit"),
            p.q(s(g.POWER_ENFORCED.name, **S), "GPU {{gpu}} enforced"),
            p.q(f"rate({s(g.ENERGY.name, **S)}{RATE})", "GPU {{gpu}} from energy"),
        ], "watt", "Board power against its limits; the energy counter's rate as a cross-check.", minimum=0), 8),
        (p.timeseries("Temperatures", [
            p.q(s(g.TEMP.name, **S), "GPU {{gpu}} die"), p.q(s(g.MEM_TEMP.name, **S), "GPU {{gpu}} HBM"),
        ], "celsius", "Die and memory temperature.", steps=((None, "green"), (80, "orange"), (85, "red"))), 8),
        (p.timeseries("Clocks vs max", [
            p.q(s(g.SM_CLOCK.name, **S), "GPU {{gpu}} SM"), p.q(s(g.SM_CLOCK_MAX.name, **S), "GPU {{gpu}} SM max"),
            p.q(s(g.MEM_CLOCK.name, **S), "GPU {{gpu}} memory"), p.q(s(g.MEM_CLOCK_MAX.name, **S), "GPU {{gpu}} memory max"),
        ], "hertz", "Current clocks against their maxima."), 8),
        (p.state_timeline("Clock event reasons",
                          [p.q(f'{s(g.CLOCK_EVENT.name, **S, reason="~" + "|".join(THROTTLE_REASONS + ("sw_power_cap", "gpu_idle")))} == 1',
                               "GPU {{gpu}} {{reason}}")],
                          "What holds clocks down; gpu_idle is normal when nothing runs.", steps=((None, "green"), (1, "red"))), 16),
        (ts("Performance state", g.PSTATE, "none", "P0 (max) to P15 (min)."), 8),
    ]),
    ("PCIe and NVLink", [
        (p.timeseries("PCIe link", [
            p.q(s(g.PCIE_GEN.name, **S), "GPU {{gpu}} gen"), p.q(s(g.PCIE_GEN_MAX.name, **S), "GPU {{gpu}} max gen"),
            p.q(s(g.PCIE_WIDTH.name, **S), "GPU {{gpu}} width"), p.q(s(g.PCIE_WIDTH_MAX.name, **S), "GPU {{gpu}} max width"),
        ], "none", "Current link generation and width against the maximum: a downgrade means a bad slot or riser."), 8),
        (p.timeseries("PCIe throughput", [
            p.q(f"rate({s(g.PCIE_TX.name, **S)}{RATE})", "GPU {{gpu}} tx"), p.q(f"rate({s(g.PCIE_RX.name, **S)}{RATE})", "GPU {{gpu}} rx"),
            p.q(s(g.GPM_PCIE_TX.name, **S), "GPU {{gpu}} tx (GPM)"), p.q(s(g.GPM_PCIE_RX.name, **S), "GPU {{gpu}} rx (GPM)"),
        ], "Bps", "Bytes per second over PCIe, from the cumulative counters and from GPM."), 8),
        (p.timeseries("PCIe replays", [p.q(f"rate({s(g.PCIE_REPLAY.name, **S)}{RATE})", L)], "ops",
                      "Link-level retries per second: a sign of a bad link."), 8),
        (p.timeseries("NVLink throughput", [
            p.q(f"sum by (gpu) (rate({s(g.NVLINK_TX.name, **S)}{RATE}))", "GPU {{gpu}} tx"),
            p.q(f"sum by (gpu) (rate({s(g.NVLINK_RX.name, **S)}{RATE}))", "GPU {{gpu}} rx"),
            p.q(s(g.GPM_NVLINK_TX.name, **S), "GPU {{gpu}} tx (GPM)"), p.q(s(g.GPM_NVLINK_RX.name, **S), "GPU {{gpu}} rx (GPM)"),
        ], "Bps", "NVLink bytes per second, all links."), 8),
        (p.timeseries("NVLink links up", [
            p.q(s(g.NVLINK_LINKS_UP.name, **S), "GPU {{gpu}} up"), p.q(s(g.NVLINK_LINKS.name, **S), "GPU {{gpu}} links"),
        ], "none", "Active NVLink links against the links the GPU has."), 8),
        (p.timeseries("NVLink errors", [p.q(f"sum by (gpu, type) (rate({s(g.NVLINK_ERRORS.name, **S)}{RATE}))", "GPU {{gpu}} {{type}}")],
                      "ops", "NVLink replay, recovery and CRC errors per second."), 8),
    ]),
    ("Errors and events", [
        (p.table("XIDs", [p.q(s(g.XID_LAST.name, **S), table=True)], "dateTimeAsIso",
                 "When each XID code was last seen per GPU.", links=logs), 8),
        (p.timeseries("ECC errors", [p.q(f"rate({s(g.ECC.name, **S, scope='volatile')}{RATE})", "GPU {{gpu}} {{type}}")], "ops",
                      "Corrected and uncorrected ECC errors per second (volatile counters)."), 8),
        (p.timeseries("Row remapping", [
            p.q(s(g.REMAPPED_ROWS.name, **S), "GPU {{gpu}} {{type}}"),
            p.q(s(g.ROW_REMAP_PENDING.name, **S), "GPU {{gpu}} pending"), p.q(s(g.ROW_REMAP_FAILURE.name, **S), "GPU {{gpu}} failed"),
        ], "none", "Remapped rows, and whether a remap is pending (reset needed) or failed (replace)."), 8),
        (p.timeseries("NVML events", [p.q(f"sum by (gpu, type) (increase({s(g.GPU_EVENTS.name, **S)}{RATE}))", "GPU {{gpu}} {{type}}")],
                      "none", "NVML events by type."), 12),
        (p.timeseries("NVML call errors", [p.q(f"sum by (function, error) (rate({s(g.NVML_ERRORS.name, **N)}{RATE}))",
                                               "{{function}} {{error}}")], "ops",
                      "NVML calls failing per second by function and error."), 12),
    ]),
]

dashboard = p.dashboard(NODE, "gpulens / GPU Node", "One node's GPUs: every exporter family, MIG, processes, PCIe and NVLink.",
                        variables, p.layout(rows),
                        [p.dashboard_link(FLEET, "GPU Fleet"), p.dashboard_link(INFERENCE, "Inference Services")])
