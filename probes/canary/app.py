"""`gpulens canary`: the canary on its own, serving /metrics (the GPU exporter can host it instead)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from gpulens.config import ConfigError
from gpulens.exposition import EOF, Renderer
from gpulens.probes.canary.collectors import Canary
from gpulens.probes.canary.config import CanaryConfig
from gpulens.server import MetricsServer


class CanaryApp:
    """Renders the canary's families after each round; scrapes serve the last bytes."""

    def __init__(self, canary: Canary):
        self.canary = canary
        self._renderer = Renderer()
        self._rendered = self._renderer.render(self._families())

    def _families(self) -> list[Any]:
        return [f for f in self.canary.collect() if f.samples]

    def step(self) -> None:
        self.canary.run_once()
        self._rendered = self._renderer.render(self._families())

    def render_parts(self, openmetrics: bool) -> tuple[bytes, bytes]:
        text, om = self._rendered
        return (om, EOF) if openmetrics else (text, b"")

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


def run(cfg: CanaryConfig, log: logging.Logger) -> int:
    from gpulens.loop import Loop
    from gpulens.probes.inference.otel import otlp_exporter, tracer_provider
    from gpulens.webconfig import load_web_config

    provider = None
    tracer = None
    if cfg.otlp_endpoint:
        provider = tracer_provider("gpulens-canary", otlp_exporter(cfg.otlp_endpoint, cfg.otlp_protocol), lambda n: None)
        tracer = provider.get_tracer("gpulens.canary")
    app = CanaryApp(Canary(cfg, log=log, tracer=tracer))
    web_config = load_web_config(cfg.web_config_file) if cfg.web_config_file else None
    server = MetricsServer(cfg.listen_address, cfg.port, app.render_parts, app.ready, web_config, title="gpulens canary", log=log)
    try:
        server.start()
    except OSError as err:
        log.error(f"cannot listen on {cfg.listen_address}:{cfg.port}: {err.strerror}")
        return 1
    loop = Loop("canary", app.step, cfg.interval_seconds, log, jitter=cfg.jitter).start()
    log.info(f"canary serving on {cfg.listen_address}:{server.port} (device {cfg.device})", extra={"event": {"action": "started"}})
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    loop.stop()
    server.stop()
    if provider is not None:
        provider.shutdown()
    return 0


def main(cfg: CanaryConfig) -> int:
    """`gpulens canary`: check torch is there (the `canary` extra), then run."""
    from gpulens import logs

    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise ConfigError(["torch is not installed: pip install 'gpulens[canary]'"]) from err
    if cfg.otlp_endpoint and cfg.otlp_protocol == "http" and not cfg.otlp_endpoint.startswith(("http://", "https://")):
        raise ConfigError([f"otlp_endpoint: {cfg.otlp_endpoint!r} must be an http(s):// URL with otlp_protocol http"])
    return run(cfg, logs.setup(cfg.log_level, "gpulens-canary"))
