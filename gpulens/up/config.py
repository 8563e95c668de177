"""`gpulens up` settings: flags, GPULENS_* variables and YAML keys come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens.config import opt

PORTS = ("gpu_port", "kserve_port", "probe_port", "canary_port", "model_port", "prometheus_port", "alertmanager_port", "webhook_port")


@dataclass(frozen=True)
class UpConfig:
    """`gpulens up`: the whole suite on this machine, on 127.0.0.1, until Ctrl-C."""

    gpu_port: int = opt(9445, "GPU exporter port.", minimum=1, maximum=65535)
    kserve_port: int = opt(9446, "KServe exporter port.", minimum=1, maximum=65535)
    probe_port: int = opt(9447, "Inference probe port.", minimum=1, maximum=65535)
    canary_port: int = opt(9449, "GPU canary port (torch matmul and copy; on the CPU when there is no GPU).",
                           minimum=1, maximum=65535)
    model_port: int = opt(9450, "Demo KServe model server port (v1/v2 REST and /metrics).", minimum=1, maximum=65535)
    prometheus_port: int = opt(9090, "Prometheus port.", minimum=1, maximum=65535)
    alertmanager_port: int = opt(9093, "Alertmanager port.", minimum=1, maximum=65535)
    webhook_port: int = opt(9452, "Port of the local webhook that receives Alertmanager's pages and prints them "
                                  "(0: any free port).", minimum=0, maximum=65535)
    run_dir: str = opt("", "Directory for logs, generated configs and Prometheus data (default: a new one under "
                           "$XDG_STATE_HOME/gpulens/up).")
    simulate: str = opt("auto", "GPU exporter --simulate: 'auto' = real NVML if a driver is present, else 8 simulated H100s.")
    models: str = opt("classifier", "Demo models the model server serves (kinds: classifier, slow, broken, wrong-shape).")
    fault: str = opt("", "Inject a simulated fault once the stack is up, e.g. 'xid79', 'lost', 'thermal', or the GPU "
                         "exporter's own syntax ('xid:79@gpu3'); comma-separated for several.")
    fault_after_seconds: float = opt(10.0, "Seconds after the stack is healthy to inject --fault.", minimum=0)
    scrape_interval_seconds: float = opt(5.0, "Prometheus scrape and rule evaluation interval.", minimum=0.5)
    exporter_interval_seconds: float = opt(1.0, "Sampling/probing interval of the gpulens components.", minimum=0.1)
    canary_interval_seconds: float = opt(60.0, "Time between two GPU canary runs.", minimum=1)
    load_rps: float = opt(5.0, "Requests per second the load generator sends to the demo model (0: no load).", minimum=0)
    otlp_endpoint: str = opt("", "OTLP gRPC endpoint for probe spans (host:port); default: 127.0.0.1:4317 if something "
                                 "listens there, else spans stay in the probe.")
    prometheus_bin: str = opt("prometheus", "Prometheus binary (Debian package prometheus).")
    alertmanager_bin: str = opt("prometheus-alertmanager", "Alertmanager binary (Debian package prometheus-alertmanager).")
    duration_seconds: float = opt(0.0, "Stop after this many seconds (0: run until Ctrl-C/SIGTERM).", minimum=0)
    log_level: str = opt("info", "Log level of the components (their logs go to the run directory).",
                         choices=("debug", "info", "warning", "error"))
