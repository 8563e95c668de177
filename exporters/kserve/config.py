"""`gpulens kserve-exporter` settings: flags, GPULENS_* variables and YAML keys come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens.config import opt


@dataclass(frozen=True)
class KserveExporterConfig:
    """`gpulens kserve-exporter`: a Deployment that watches InferenceServices and scrapes their model servers."""

    listen_address: str = opt("0.0.0.0", "Address to bind the metrics server to.")
    port: int = opt(9446, "Port for /metrics, /healthz and /readyz.", minimum=0, maximum=65535)
    web_config_file: str = opt("", "Prometheus exporter-toolkit web-config.yml for TLS and basic auth.")
    mode: str = opt("kubernetes", "Where targets come from: the Kubernetes API, or a static YAML list (--targets-file).",
                    choices=("kubernetes", "static"))
    kubeconfig: str = opt("", "kubeconfig file; empty: in-cluster config if running in a pod, else $KUBECONFIG or ~/.kube/config.")
    kube_context: str = opt("", "kubeconfig context to use (default: the current context).")
    namespaces: str = opt("", "Comma-separated namespaces to watch; empty: all namespaces.")
    label_selector: str = opt("", "Only InferenceServices matching this label selector.")
    resync_seconds: float = opt(300.0, "Relist the API this often even when the watch looks healthy (a silent watch).",
                                minimum=1.0)
    kube_timeout_seconds: float = opt(30.0, "Timeout of one Kubernetes API list request.", minimum=0.1)
    targets_file: str = opt("", "Static mode: YAML list of targets (name, namespace, url, protocol, server, metrics_url, models).")
    interval_seconds: float = opt(15.0, "How often every model server's /metrics is scraped and the state re-rendered.",
                                  minimum=0.1)
    scrape_timeout_seconds: float = opt(5.0, "Timeout of one model-server /metrics scrape or readiness request.", minimum=0.05)
    scrape_max_bytes: int = opt(16 * 1024 * 1024, "Largest /metrics body read from a model server; larger is an error.",
                                minimum=1024)
    scrape_concurrency: int = opt(8, "Model servers scraped in parallel.", minimum=1, maximum=256)
    readiness_probes: bool = opt(True, "Ask each endpoint whether its models are ready (v2 /v2/models/{m}/ready, v1 /v1/models/{m}).")
    readiness_interval_seconds: float = opt(30.0, "How often the readiness of every model is asked (at a refresh, when due).",
                                            minimum=0.0)
    queue_proxy_port: int = opt(9091, "Knative queue-proxy user-metrics port (serverless pods).", minimum=1, maximum=65535)
    degraded_grace_seconds: float = opt(120.0, "A pod not ready for longer than this marks a Ready InferenceService degraded.",
                                        minimum=0.0)
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))
