"""`gpulens canary` settings: flags, GPULENS_* variables and YAML keys come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens.config import opt


@dataclass(frozen=True)
class CanaryConfig:
    """`gpulens canary`: a small torch workload per GPU on an interval, against expected figures."""

    listen_address: str = opt("0.0.0.0", "Address to bind the metrics server to.")
    port: int = opt(9449, "Port for /metrics, /healthz and /readyz.", minimum=0, maximum=65535)
    web_config_file: str = opt("", "Prometheus exporter-toolkit web-config.yml for TLS and basic auth.")
    interval_seconds: float = opt(300.0, "Time between two canary runs (each GPU in turn).", minimum=1.0)
    jitter: float = opt(0.1, "Spread of each interval, as a fraction of it (±).", minimum=0.0, maximum=0.5)
    device: str = opt("auto", "Where to run: every CUDA GPU, or the CPU (auto: CUDA when present).", choices=("auto", "cuda", "cpu"))
    matmul_size: int = opt(0, "Square matmul size n (0: 8192 on GPU, 512 on CPU).", minimum=0, maximum=32768)
    copy_bytes: int = opt(0, "Bytes per copy phase (0: 256 MiB on GPU, 16 MiB on CPU).", minimum=0)
    memory_cap_bytes: int = opt(2 * 1024**3, "Most device memory one run may allocate; sizes shrink to fit.", minimum=16 * 1024**2)
    busy_threshold: float = opt(0.5, "Skip a GPU whose utilization (NVML) is above this ratio: real work comes first.",
                                minimum=0.0, maximum=1.0)
    otlp_endpoint: str = opt("", "OTLP endpoint for the canary's spans (as `gpulens probe`); empty: no export.")
    otlp_protocol: str = opt("grpc", "OTLP transport.", choices=("grpc", "http"))
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))
