"""`gpulens up`: the whole suite on this machine, each component a supervised child on 127.0.0.1.

Order: the demo model server, the GPU exporter, the KServe exporter and the probe pointed at the
model server, Alertmanager (pages go to a webhook in this process that prints them), Prometheus with
our rules, and a small load generator. Components whose subcommand is not in this build of gpulens,
or whose binary is not installed, are left out with a line saying how to get them.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpulens.config import ConfigError
from gpulens.up import faults, links
from gpulens.up.config import PORTS, UpConfig
from gpulens.up.prometheus import render_alertmanager, render_prometheus
from gpulens.up.supervisor import ChildSpec, Supervisor, healthy
from gpulens.up.traces import SpanRing
from gpulens.up.webhook import PageReceiver

HOST = "127.0.0.1"
HEALTH_TIMEOUT_SECONDS = 120.0
OTLP_DEFAULT = (HOST, 4317)
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager (Debian/Ubuntu, as root; `make run` does it when root)"
DASHBOARDS_DIR = Path(__file__).resolve().parent.parent.parent / "dashboards" / "json"


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def rule_files() -> list[Path]:
    """The generated Prometheus rule files (alerts/rules/*.yaml)."""
    folder = _package_dir("gpulens.alerts")
    return sorted((folder / "rules").glob("*.yaml")) if folder else []


def dashboards_dir() -> Path:
    folder = _package_dir("gpulens.dashboards")
    return folder / "json" if folder else DASHBOARDS_DIR


def available_commands() -> dict[str, type]:
    """gpulens subcommand → its config class, for the commands this build has (components land over time)."""
    from gpulens.cli import COMMANDS, _resolve

    return {name: _resolve(cmd.config) for name, cmd in COMMANDS.items()}


def command_argv(command: str, config_cls: type, values: Mapping[str, Any]) -> list[str]:
    """`python -m gpulens <command> --flag value …` for the `values` the command's config has; others are dropped."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    argv = [sys.executable, "-m", "gpulens", command]
    for key, value in values.items():
        if key in fields:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            argv += ["--" + key.replace("_", "-"), text]
    return argv


def port_problems(ports: Mapping[str, int], host: str = HOST) -> list[str]:
    """One line per configured port that something already listens on, naming the flag to change it."""
    problems = []
    seen: dict[int, str] = {}
    for name, port in ports.items():
        flag = "--" + name.replace("_", "-")
        if port in seen:
            problems.append(f"port {port} given twice ({flag} and --{seen[port].replace('_', '-')})")
            continue
        seen[port] = name
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as err:
                problems.append(f"port {port} on {host} is in use ({err.strerror}): stop what listens there or "
                                f"pick another with {flag}")
    return problems


def otlp_reachable(address: tuple[str, int] = OTLP_DEFAULT, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def default_run_dir() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "gpulens" / "up"
    return base / datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class Plan:
    """What `gpulens up` will start, and what it leaves out (with why)."""

    children: list[ChildSpec] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    scrape: dict[str, str] = field(default_factory=dict)  # component → host:port for Prometheus
    ports: dict[str, int] = field(default_factory=dict)  # config field → port, for the port check
    notes: list[str] = field(default_factory=list)  # what the user should know (printed with the URLs)
    span_ring: bool = False  # the probe sends its spans to this process (no OTLP collector)


def _write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


INFERENCESERVICE = ("default", "demo")  # what the KServe exporter calls the demo model server


def kserve_targets(model_url: str, models: list[str]) -> list[dict[str, Any]]:
    """The KServe exporter's static targets: the demo model server as one InferenceService."""
    namespace, name = INFERENCESERVICE
    return [{"name": name, "namespace": namespace, "url": model_url, "protocol": "v2", "server": "kserve",
             "metrics_url": f"{model_url}/metrics", "models": models}]


def probe_targets(model_url: str, models: list[str]) -> dict[str, Any]:
    """The probe's targets: each demo model over v2 (payload from its metadata, outputs checked) and v1."""
    from gpulens.sim.modelserver import sample_input

    targets: list[dict[str, Any]] = []
    for m in models:
        targets.append({"name": f"{m}-v2", "url": model_url, "model": m, "protocol": "v2", "payload": "metadata"})
        targets.append({"name": f"{m}-v1", "url": model_url, "model": m, "protocol": "v1",
                        "payload": {"instances": sample_input(1)}})
    return {"targets": targets}


def plan(cfg: UpConfig, run_dir: Path, local_url: str, commands: Mapping[str, type] | None = None,
         which: Callable[[str], str | None] = shutil.which) -> Plan:
    """Decide the children and write their config files into `run_dir`; pure apart from those files."""
    commands = available_commands() if commands is None else commands
    p = Plan()
    model_url = f"http://{HOST}:{cfg.model_port}"
    models = [m.partition("=")[0] for m in cfg.models.split(",") if m]
    common = {"listen_address": HOST, "log_level": cfg.log_level}

    if importlib.util.find_spec("kserve") is not None:
        p.children.append(ChildSpec(
            "modelserver", [sys.executable, "-m", "gpulens.sim.modelserver", "--host", HOST, "--http-port", str(cfg.model_port),
                            "--models", cfg.models], f"{model_url}/v2/health/ready", url=model_url))
        p.scrape["modelserver"] = f"{HOST}:{cfg.model_port}"
        p.ports["model_port"] = cfg.model_port
    else:
        p.skipped.append("demo model server: kserve is not installed (pip install 'gpulens[modelserver]')")

    if "gpu-exporter" in commands:
        p.children.append(ChildSpec("gpu-exporter", command_argv("gpu-exporter", commands["gpu-exporter"], {
            **common, "port": cfg.gpu_port, "simulate": cfg.simulate, "simulate_kubelet": True,
            "interval_seconds": cfg.exporter_interval_seconds}),
            f"http://{HOST}:{cfg.gpu_port}/readyz", url=f"http://{HOST}:{cfg.gpu_port}/metrics"))
        p.scrape["gpu-exporter"] = f"{HOST}:{cfg.gpu_port}"
        p.ports["gpu_port"] = cfg.gpu_port

    if "kserve-exporter" in commands:
        targets = _write_yaml(run_dir / "kserve-targets.yaml", kserve_targets(model_url, models))
        p.children.append(ChildSpec("kserve-exporter", command_argv("kserve-exporter", commands["kserve-exporter"], {
            **common, "port": cfg.kserve_port, "mode": "static", "targets_file": targets,
            "interval_seconds": cfg.exporter_interval_seconds}),
            f"http://{HOST}:{cfg.kserve_port}/healthz", url=f"http://{HOST}:{cfg.kserve_port}/metrics"))
        p.scrape["kserve-exporter"] = f"{HOST}:{cfg.kserve_port}"
        p.ports["kserve_port"] = cfg.kserve_port
    else:
        p.skipped.append("KServe exporter: not in this build of gpulens yet")

    if "probe" in commands:
        targets = _write_yaml(run_dir / "probe-targets.yaml", probe_targets(model_url, models))
        otlp = cfg.otlp_endpoint or (f"{OTLP_DEFAULT[0]}:{OTLP_DEFAULT[1]}" if otlp_reachable() else "")
        # No collector: spans go to the ring on this process's local endpoint (OTLP/HTTP), for `gpulens top`.
        p.span_ring = not otlp
        span_flags = {"otlp_endpoint": otlp, "otlp_protocol": "http" if otlp.startswith("http") else "grpc"} if otlp else \
            {"otlp_endpoint": local_url + "v1/traces", "otlp_protocol": "http"}
        p.children.append(ChildSpec("probe", command_argv("probe", commands["probe"], {
            **common, "port": cfg.probe_port, "targets_file": targets, "interval_seconds": cfg.exporter_interval_seconds,
            **span_flags}),
            f"http://{HOST}:{cfg.probe_port}/healthz", url=f"http://{HOST}:{cfg.probe_port}/metrics"))
        p.scrape["probe"] = f"{HOST}:{cfg.probe_port}"
        p.ports["probe_port"] = cfg.probe_port
        p.notes.append(f"probe spans → {otlp}" if otlp else
                       f"probe spans: kept in a ring here ({local_url}spans, shown by gpulens top); nothing listens on "
                       f"{OTLP_DEFAULT[0]}:{OTLP_DEFAULT[1]} (start Jaeger there or pass --otlp-endpoint)")
    else:
        p.skipped.append("inference probe: not in this build of gpulens yet")

    if "canary" in commands:
        p.children.append(ChildSpec("canary", command_argv("canary", commands["canary"], {
            **common, "port": cfg.canary_port, "interval_seconds": cfg.canary_interval_seconds}),
            f"http://{HOST}:{cfg.canary_port}/healthz", url=f"http://{HOST}:{cfg.canary_port}/metrics"))
        p.scrape["canary"] = f"{HOST}:{cfg.canary_port}"
        p.ports["canary_port"] = cfg.canary_port
    else:
        p.skipped.append("GPU canary: not in this build of gpulens yet")

    alertmanager = which(cfg.alertmanager_bin) or which("alertmanager")
    if alertmanager:
        am_config = _write_yaml(run_dir / "alertmanager.yml", render_alertmanager(local_url, min(cfg.scrape_interval_seconds, 1.0)))
        p.children.append(ChildSpec("alertmanager", [
            alertmanager, f"--config.file={am_config}", f"--storage.path={run_dir / 'alertmanager-data'}",
            f"--web.listen-address={HOST}:{cfg.alertmanager_port}", "--cluster.listen-address=", f"--log.level={_go_level(cfg.log_level)}"],
            f"http://{HOST}:{cfg.alertmanager_port}/-/ready", url=f"http://{HOST}:{cfg.alertmanager_port}"))
        p.ports["alertmanager_port"] = cfg.alertmanager_port
    else:
        p.skipped.append(f"Alertmanager: {cfg.alertmanager_bin} not found; {INSTALL_HINT}")

    prometheus = which(cfg.prometheus_bin)
    if prometheus:
        interval = cfg.scrape_interval_seconds
        rules = rule_files()
        if not rules:
            p.notes.append("no alert rule files found (alerts/rules/*.yaml): Prometheus runs without rules, nothing pages")
        prom_config = _write_yaml(run_dir / "prometheus.yml", render_prometheus(
            p.scrape, rules, f"{HOST}:{cfg.alertmanager_port}", interval, socket.gethostname()))
        p.children.append(ChildSpec("prometheus", [
            prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={run_dir / 'prometheus-data'}",
            f"--web.listen-address={HOST}:{cfg.prometheus_port}", "--storage.tsdb.retention.time=2d",
            # Without a short resend delay the first alert reaches a just-started Alertmanager only after 60 s.
            f"--rules.alert.resend-delay={max(1, int(interval))}s", f"--log.level={_go_level(cfg.log_level)}"],
            f"http://{HOST}:{cfg.prometheus_port}/-/ready", url=f"http://{HOST}:{cfg.prometheus_port}"))
        p.ports["prometheus_port"] = cfg.prometheus_port
    else:
        p.skipped.append(f"Prometheus: {cfg.prometheus_bin} not found; {INSTALL_HINT}")

    if cfg.load_rps > 0 and "modelserver" in p.scrape:
        p.children.append(ChildSpec("load", [sys.executable, "-m", "gpulens.up.load", "--url", model_url,
                                             "--models", ",".join(models), "--rps", f"{cfg.load_rps:g}"]))
    return p


def _go_level(level: str) -> str:
    return {"warning": "warn"}.get(level, level)


def _now() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


class AlertWatch:
    """Polls Prometheus' /api/v1/alerts and prints each alert's move: pending → firing → resolved."""

    def __init__(self, prometheus_url: str, say: Callable[[str], None]):
        self._url = prometheus_url.rstrip("/") + "/api/v1/alerts"
        self._say = say
        self._state: dict[str, str] = {}

    def step(self) -> None:
        try:
            with urllib.request.urlopen(self._url, timeout=2) as resp:
                alerts = json.load(resp)["data"]["alerts"]
        except (OSError, ValueError, KeyError):
            return
        now: dict[str, str] = {}
        for alert in alerts:
            labels = alert.get("labels", {})
            key = json.dumps(labels, sort_keys=True)
            now[key] = alert.get("state", "?")
            if self._state.get(key) != now[key]:
                where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
                self._say(f"alert {labels.get('alertname')} [{labels.get('severity', '')}] {now[key]} ({where})")
        for key in set(self._state) - set(now):
            self._say(f"alert {json.loads(key).get('alertname')} resolved")
        self._state = now


class Stack:
    """The running suite: the supervisor, the page receiver, the alert watch and the fault timer."""

    def __init__(self, cfg: UpConfig, run_dir: Path, log: logging.Logger, say: Callable[[str], None]):
        self.cfg = cfg
        self.run_dir = run_dir
        self.log = log
        self.say = say
        self.receiver = PageReceiver(HOST, cfg.webhook_port, run_dir / "pages.jsonl", say=lambda s: say(s),
                                     spans=SpanRing())
        self.supervisor = Supervisor(run_dir, log, say=say)
        self.plan = plan(cfg, run_dir, self.receiver.url)
        self.stopped = threading.Event()

    def start(self) -> bool:
        """Start every child and wait until each is healthy; False if one never got there."""
        self.receiver.start()
        for spec in self.plan.children:
            self.supervisor.start(spec)
        self.supervisor.watch()
        waiting = {s.name: s for s in self.plan.children if s.health_url}
        started = time.monotonic()
        deadline = started + HEALTH_TIMEOUT_SECONDS
        while waiting and time.monotonic() < deadline and not self.stopped.is_set():
            for name, spec in list(waiting.items()):
                if healthy(spec.health_url):
                    self.say(f"{_now()} ok  {name:<16} {spec.url}  ({time.monotonic() - started:.1f}s)")
                    del waiting[name]
            self.stopped.wait(0.3)
        for name in waiting:
            self.say(f"{_now()} !!  {name} not healthy after {HEALTH_TIMEOUT_SECONDS:.0f}s: see {self.run_dir / (name + '.log')}")
        return not waiting

    def urls(self) -> dict[str, str]:
        out = {s.name: s.url for s in self.plan.children if s.url}
        out["webhook"] = self.receiver.url
        return out

    def banner(self) -> list[str]:
        urls = self.urls()
        lines = ["", "gpulens is up on this machine:"]
        lines += [f"  {name:<16} {url}" for name, url in urls.items()]
        lines.append(f"  {'pages':<16} printed here and appended to {self.run_dir / 'pages.jsonl'}")
        lines.append(f"  {'logs, configs':<16} {self.run_dir}")
        source = gpu_source(urls.get("gpu-exporter", ""))
        if source == "simulated":
            why = "no NVIDIA driver found" if self.cfg.simulate == "auto" else f"--simulate {self.cfg.simulate}"
            lines += ["", f"  !!! GPUs ARE SIMULATED ({why}): uuids GPU-sim-…, NOT REAL DATA !!!"]
        for skipped in self.plan.skipped:
            lines.append(f"  (not started) {skipped}")
        for note in self.plan.notes:
            lines.append(f"  (note) {note}")
        prometheus = urls.get("prometheus")
        folder = dashboards_dir()
        dashboards = links.load_dashboards(folder) if folder.is_dir() else []
        if dashboards and prometheus:
            lines += ["", f"Dashboards ({folder}): one Prometheus graph link per row"]
            for _path, dashboard in dashboards:
                lines.append(f"  {dashboard.get('title', _path.stem)}")
                for row in links.row_links(dashboard, prometheus):
                    lines.append(f"    {row.row or '(top)'}: {row.url}")
        if dashboards:
            lines += ["", "With a Grafana: gpulens dashboards import --grafana-url http://localhost:3000 --token-file TOKEN_FILE",
                      "  (a service-account token), or `docker compose up --build` for Grafana, Jaeger and Kibana ready-made"]
        lines += ["", "Watch it: gpulens top    Stop: Ctrl-C", ""]
        return lines

    def write_state(self) -> None:
        state = {"urls": self.urls(), "pids": {n: c.proc.pid for n, c in self.supervisor.children.items() if c.proc},
                 "run_dir": str(self.run_dir), "skipped": self.plan.skipped, "notes": self.plan.notes,
                 "span_ring": self.plan.span_ring}
        (self.run_dir / "stack.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")

    def inject_faults(self) -> None:
        gpu = self.urls().get("gpu-exporter", "").removesuffix("/metrics")
        for fault in faults.expand(self.cfg.fault):
            if self.stopped.wait(0):
                return
            try:
                answer = faults.inject(gpu, fault)
                self.say(f"{_now()} fault injected: {fault} ({answer})")
            except RuntimeError as err:
                self.say(f"{_now()} !! {err}")

    def run_until_stopped(self) -> None:
        prometheus = self.urls().get("prometheus")
        watch = AlertWatch(prometheus, lambda s: self.say(f"{_now()} {s}")) if prometheus else None
        fault_at = time.monotonic() + self.cfg.fault_after_seconds if self.cfg.fault else None
        end = time.monotonic() + self.cfg.duration_seconds if self.cfg.duration_seconds else None
        if fault_at is not None:
            self.say(f"{_now()} injecting {self.cfg.fault} in {self.cfg.fault_after_seconds:g}s")
        while not self.stopped.wait(1.0):
            if fault_at is not None and time.monotonic() >= fault_at:
                fault_at = None
                self.inject_faults()
            if watch is not None:
                watch.step()
            if end is not None and time.monotonic() >= end:
                break

    def stop(self) -> None:
        self.stopped.set()
        self.supervisor.stop()
        self.receiver.stop()


def gpu_source(metrics_url: str) -> str:
    """'real' or 'simulated', from the exporter's gpulens_build_info; '' when it cannot tell."""
    if not metrics_url:
        return ""
    from gpulens.metrics import gpu as g

    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(g.BUILD_INFO.name + "{"):
            for source in ("simulated", "real"):
                if f'nvml="{source}"' in line:
                    return source
    return ""


def run(cfg: UpConfig) -> int:
    """`gpulens up`: check ports, start the stack, print where everything is, stop cleanly on a signal."""
    from gpulens import logs

    if cfg.fault:
        try:
            faults.expand(cfg.fault)
        except ValueError as err:
            raise ConfigError([f"fault: {err}"]) from err
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "gpulens-up.log", "a", encoding="utf-8") as logfile:
        log = logs.setup(cfg.log_level, "gpulens-up", stream=logfile)
        return _run(cfg, run_dir, log)


def _say(line: str) -> None:
    print(line, flush=True)


def _run(cfg: UpConfig, run_dir: Path, log: logging.Logger) -> int:
    problems = port_problems({"webhook_port": cfg.webhook_port})
    if problems:
        raise ConfigError(problems)
    stack = Stack(cfg, run_dir, log, _say)
    problems = port_problems({name: getattr(cfg, name) for name in PORTS if name in stack.plan.ports})
    if problems:
        stack.receiver.stop()
        raise ConfigError(problems)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stack.stopped.set())
    _say(f"{_now()} gpulens up: starting {', '.join(s.name for s in stack.plan.children)} (logs in {run_dir})")
    code = 0
    try:
        if stack.start():
            stack.write_state()
            for line in stack.banner():
                _say(line)
            stack.run_until_stopped()
        elif not stack.stopped.is_set():
            code = 1
    finally:
        _say(f"{_now()} stopping…")
        stack.stop()
        _say(f"{_now()} stopped; logs in {run_dir}")
    return code
