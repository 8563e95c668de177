"""`gpulens probe`: one Loop per target (interval ± jitter), each probe traced, recorded and served.

A probe's failure is data (success 0, a reason, a span with ERROR status, one log line carrying
`trace.id`/`span.id` so Kibana, Jaeger and Grafana link up), never a crash or a backoff.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Mapping

from gpulens import events
from gpulens.config import ConfigError
from gpulens.loop import Loop
from gpulens.probes.inference import openai, v1, v2
from gpulens.probes.inference.collectors import Recorder
from gpulens.probes.inference.config import ProbeConfig, Target, load_targets
from gpulens.probes.inference.discovery import Discovery, kserve_lister
from gpulens.probes.inference.otel import Prober, Tracing, parse_headers
from gpulens.probes.inference.result import ProbeResult
from gpulens.probes.inference.transport import Session
from gpulens.server import MetricsServer

# protocol → its prober; every prober has the same signature (Target, Session, headers) -> ProbeResult
PROBERS: Mapping[str, Prober] = {v1.PROTOCOL: v1.probe, v2.PROTOCOL: v2.probe, openai.PROTOCOL: openai.probe}


class ProbeApp:
    """The running probe: `start()` the loops, `render_parts` for scrapes, `ready()` for /readyz."""

    def __init__(self, cfg: ProbeConfig, targets: list[Target], tracing: Tracing, log: logging.Logger | None = None):
        self.cfg = cfg
        self.log = log or logging.getLogger("gpulens.probe")
        self.tracing = tracing
        self.recorder = Recorder()
        tracing.on_export_failure = self._export_failed
        self.targets: dict[str, Target] = {}
        self.sessions: dict[str, Session] = {}
        self.loops: dict[str, Loop] = {}
        self._rendered = (self.recorder.render(False), self.recorder.render(True))
        self._lock = threading.Lock()
        self._started = False
        self.set_targets(targets)

    def set_targets(self, targets: list[Target]) -> None:
        """Start probing new targets and stop (and forget the series of) vanished or changed ones."""
        wanted = {t.name: t for t in targets}
        with self._lock:
            for name, old in list(self.targets.items()):
                if wanted.get(name) != old:
                    self._drop(name)
            for name, target in wanted.items():
                if name in self.targets:
                    continue
                self.targets[name] = target
                self.sessions[name] = Session(target.url, target.connection == "persistent", target.tls_verify, target.ca_file)
                self.recorder.add(target, target.protocol)
                loop = Loop(f"probe-{name}", functools.partial(self._step, target), target.interval_seconds, self.log,
                            jitter=self.cfg.jitter)
                self.loops[name] = loop
                if self._started:
                    loop.start()
        self._render()

    def _drop(self, name: str) -> None:
        target = self.targets.pop(name)
        self.loops.pop(name).stop(timeout=0.5)
        self.sessions.pop(name).close()
        self.recorder.forget(target, target.protocol)

    def probe_once(self, target: Target) -> ProbeResult:
        """Probe `target` now: trace, record, log a failure, re-render the exposition."""
        result = self.tracing.run(target, PROBERS[target.protocol], self.sessions[target.name], target.protocol)
        if id(self.targets.get(target.name)) != id(target):
            return result  # dropped (discovery) while this probe ran: recording would bring its series back
        self.recorder.record(target, target.protocol, result)
        if not result.success:
            events.emit(events.probe_failed(
                target.name, result.reason or "unknown", url=target.url, protocol=target.protocol,
                status_code=result.status or None, duration_seconds=result.duration, trace_id=result.trace_id,
                span_id=result.span_id, model=target.model))
        self._render()
        return result

    def _export_failed(self, spans: int) -> None:
        """Called on the span processor's thread: count, and refresh the served exposition."""
        self.recorder.span_export_errors.inc(spans)
        self._render()

    def _step(self, target: Target) -> None:
        self.probe_once(target)

    def _render(self) -> None:
        rendered = (self.recorder.render(False), self.recorder.render(True))
        self._rendered = rendered

    def render_parts(self, openmetrics: bool) -> tuple[bytes, bytes]:
        """The exposition rendered after the last probe (OpenMetrics carries the exemplars)."""
        text, om = self._rendered
        return (om if openmetrics else text), b""

    def render(self, openmetrics: bool) -> bytes:
        return b"".join(self.render_parts(openmetrics))

    def ready(self) -> tuple[bool, str]:
        dead = [name for name, loop in self.loops.items() if self._started and not loop.alive]
        if dead:
            return False, f"probe loops not running: {', '.join(sorted(dead))}"
        return True, "ok"

    def start(self) -> None:
        with self._lock:
            self._started = True
            for loop in self.loops.values():
                loop.start()

    def stop(self) -> None:
        with self._lock:
            for loop in self.loops.values():
                loop.stop(timeout=1.0)
            for session in self.sessions.values():
                session.close()
        self.tracing.shutdown()


def run(cfg: ProbeConfig, targets: list[Target], log: logging.Logger) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    from gpulens.webconfig import load_web_config

    web_config = load_web_config(cfg.web_config_file) if cfg.web_config_file else None
    app = ProbeApp(cfg, targets, Tracing(cfg), log)
    discovery = Discovery(cfg, targets, app.set_targets, kserve_lister(cfg), log) if cfg.discover else None
    server = MetricsServer(cfg.listen_address, cfg.port, app.render_parts, app.ready, web_config,
                           title="gpulens inference probe", log=log)
    try:
        server.start()
    except OSError as err:
        log.error(f"cannot listen on {cfg.listen_address}:{cfg.port}: {err.strerror}")
        return 1
    app.start()
    if discovery is not None:
        discovery.loop.start()
    log.info(f"probe serving on {cfg.listen_address}:{server.port}, {len(targets)} targets, "
             f"spans to {cfg.otlp_endpoint or 'nowhere (no --otlp-endpoint)'}", extra={"event": {"action": "started"}})
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    if discovery is not None:
        discovery.loop.stop()
    server.stop()
    app.stop()
    return 0


def main(cfg: ProbeConfig) -> int:
    """`gpulens probe`: validate the config and the targets file (all problems at once), then run."""
    from gpulens import logs
    from gpulens.webconfig import WebConfigError, load_web_config

    problems: list[str] = []
    targets: list[Target] = []
    if not cfg.targets_file and not cfg.discover:
        problems.append("targets_file: required (a YAML file with a `targets:` list), unless discover is on")
    elif cfg.targets_file:
        try:
            targets = load_targets(cfg.targets_file, cfg)
        except ConfigError as err:
            problems.extend(err.problems)
    if cfg.otlp_endpoint and cfg.otlp_protocol == "http" and not cfg.otlp_endpoint.startswith(("http://", "https://")):
        problems.append(f"otlp_endpoint: {cfg.otlp_endpoint!r} must be an http(s):// URL with otlp_protocol http")
    try:
        parse_headers(cfg.otlp_headers)
    except ValueError as err:
        problems.append(f"otlp_headers: {err}")
    if cfg.web_config_file:
        try:
            load_web_config(cfg.web_config_file)
        except WebConfigError as err:
            problems.append(str(err))
    if cfg.discover:
        try:
            import gpulens.exporters.kserve.discovery  # noqa: F401
        except ImportError as err:
            problems.append(f"discover: needs the KServe exporter's discovery and the kubernetes client ({err})")
    if problems:
        raise ConfigError(problems)
    return run(cfg, targets, logs.setup(cfg.log_level, "gpulens-probe"))
