"""`gpulens gpu-exporter` settings: flags, GPULENS_* variables and YAML keys come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens.config import opt


@dataclass(frozen=True)
class GpuExporterConfig:
    """`gpulens gpu-exporter`: the NVML exporter that runs as a DaemonSet on every GPU node."""

    listen_address: str = opt("0.0.0.0", "Address to bind the metrics server to.")
    port: int = opt(9445, "Port for /metrics, /healthz and /readyz.", minimum=0, maximum=65535)
    web_config_file: str = opt("", "Prometheus exporter-toolkit web-config.yml for TLS and basic auth.")
    interval_seconds: float = opt(1.0, "How often the sampler reads every GPU.", minimum=0.05)
    simulate: str = opt("", "Use N simulated GPUs instead of NVML: 'N' or 'N:model' (h100, a100-40gb, l4).")
    simulate_mig: str = opt("", "MIG layout for simulated GPUs, e.g. '7x1g.10gb' or '3g.40gb+2x2g.20gb'.")
    simulate_kubelet: bool = opt(False, "With simulated GPUs: serve demo KServe pods from a stand-in kubelet socket.")
    compat: str = opt("none", "Also emit DCGM-named families for drop-in migration.", choices=("none", "dcgm"))
    processes: bool = opt(False, "Export per-process GPU memory (needs hostPID in Kubernetes).")
    gpm: bool = opt(True, "Sample NVML GPM activity metrics on GPUs that support them (Hopper+).")
    xid_events: bool = opt(True, "Watch NVML events (XID, ECC, clocks) on their own thread.")
    pod_attribution: bool = opt(True, "Label GPU series with the pod holding the GPU (kubelet PodResources).")
    podresources_socket: str = opt("/var/lib/kubelet/pod-resources/kubelet.sock", "kubelet PodResources v1 socket.")
    podresources_interval_seconds: float = opt(10.0, "How often to refresh pod attribution.", minimum=0.1)
    hostname: str = opt("", "Node name for DCGM's Hostname label; defaults to $NODE_NAME or the host name.")
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))
