"""`gpulens gpu-exporter` settings: flags, GPULENS_* variables and YAML keys come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens.config import opt

# The simulated models, spelled out for --help without importing gpulens.sim (the real path never does).
_MODELS = "h100, a100-40gb, l4, v100"


@dataclass(frozen=True)
class GpuExporterConfig:
    """`gpulens gpu-exporter`: the NVML exporter that runs as a DaemonSet on every GPU node."""

    listen_address: str = opt("0.0.0.0", "Address to bind the metrics server to.")
    port: int = opt(9445, "Port for /metrics, /healthz and /readyz.", minimum=0, maximum=65535)
    web_config_file: str = opt("", "Prometheus exporter-toolkit web-config.yml for TLS and basic auth.")
    max_connections: int = opt(64, "Concurrent HTTP connections; beyond it the oldest idle one is closed, else the new one.",
                               minimum=1, maximum=10000)
    header_timeout_seconds: float = opt(10.0, "Seconds a client may take to send a request's line and headers.",
                                        minimum=0.1, maximum=300)
    idle_timeout_seconds: float = opt(120.0, "Seconds a kept-alive connection may idle between requests.", minimum=0.1, maximum=3600)
    interval_seconds: float = opt(1.0, "How often the sampler reads every GPU.", minimum=0.05, maximum=3600)
    simulate: str = opt("", f"Use simulated GPUs instead of NVML: 'N', 'N:MODEL' (MODEL one of {_MODELS}; default h100), "
                            "or 'auto' (real NVML if a driver answers, else 8 simulated H100s).")
    simulate_mig: str = opt("", "With --simulate: MIG layout for every simulated GPU, e.g. '7x1g.10gb' or '3g.40gb+2x2g.20gb'.")
    simulate_kubelet: bool = opt(False, "With --simulate: serve demo KServe pods from a stand-in kubelet socket.")
    simulate_faults: str = opt("", "With --simulate: fault schedule, ';'-separated, e.g. 'xid:79@gpu3+60s; lost:gpu2@120s..180s; "
                                   "hang:nvmlDeviceGetTemperatureV@30s..40s; throttle:thermal@gpu1; pcie-downgrade@gpu0; ecc-dbe@gpu5'. "
                                   "Times count from start; none means now. See README 'Simulated faults'.")
    compat: str = opt("none", "Also emit DCGM-named families for drop-in migration.", choices=("none", "dcgm"))
    processes: bool = opt(False, "Export per-process GPU memory (needs hostPID in Kubernetes).")
    nvlink_per_link: bool = opt(False, "Export NVLink bytes, errors and state per link (108 series per H100) besides the per-GPU totals.")
    gpm: bool = opt(True, "Sample NVML GPM activity metrics on GPUs that support them (Hopper+).")
    xid_events: bool = opt(True, "Watch NVML events (XID, ECC, clocks) on their own thread.")
    canary: bool = opt(False, "Run the torch GPU canary in this process (needs the canary extra; see `gpulens canary`).")
    canary_interval_seconds: float = opt(300.0, "Time between two canary rounds.", minimum=1.0, maximum=86400.0)
    pod_attribution: bool = opt(True, "Label GPU series with the pod holding the GPU (kubelet PodResources).")
    podresources_socket: str = opt("/var/lib/kubelet/pod-resources/kubelet.sock", "kubelet PodResources v1 socket.")
    podresources_interval_seconds: float = opt(10.0, "How often to refresh pod attribution.", minimum=0.1, maximum=3600)
    hostname: str = opt("", "Node name for DCGM's Hostname label; defaults to $NODE_NAME or the host name.")
    pod_usage: bool = opt(False, "Per-pod GPU usage on shared GPUs (time-slicing, MPS) from per-process NVML samples and "
                                 "/proc/<pid>/cgroup; needs hostPID: true and list/watch on pods (README 'Per-pod GPU usage').")
    proc_root: str = opt("/proc", "With --pod-usage: where the host's /proc is mounted (as node_exporter's --path.procfs).")
    node_name: str = opt("", "With --pod-usage: this node's name, to list and watch only its pods; defaults to $NODE_NAME.")
    kubeconfig: str = opt("", "With --pod-usage: kubeconfig file for the Kubernetes API; empty: the in-cluster service account "
                              "(with --simulate: a simulated shared node with demo pods).")
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))
