"""`gpulens top` settings: flags, GPULENS_* variables and YAML keys come from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from gpulens.config import opt


@dataclass(frozen=True)
class TopConfig:
    """`gpulens top`: read Prometheus (or the exporters directly) and draw the suite on the terminal."""

    source: str = opt("auto", "Where to read: Prometheus, the exporters' /metrics, or auto (Prometheus if it answers).",
                      choices=("auto", "prometheus", "exporters"))
    prometheus_url: str = opt("http://127.0.0.1:9090", "Prometheus base URL.")
    gpu_url: str = opt("http://127.0.0.1:9445/metrics", "GPU exporter /metrics (exporters source).")
    kserve_url: str = opt("http://127.0.0.1:9446/metrics", "KServe exporter /metrics (exporters source).")
    probe_url: str = opt("http://127.0.0.1:9447/metrics", "Inference probe /metrics (exporters source).")
    spans_url: str = opt("http://127.0.0.1:9452/spans", "Recent probe spans kept by `gpulens up` when there is no Jaeger "
                                                         "(empty: do not show traces).")
    interval_seconds: float = opt(1.0, "Refresh interval.", minimum=0.1)
    once: bool = opt(False, "Draw one frame and exit (for scripts).")
    plain: bool = opt(False, "Plain text even on a terminal (default when stdout is not a TTY).")
    width: int = opt(0, "Terminal width for the rich view (0: detect).", minimum=0)
