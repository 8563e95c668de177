"""`gpulens up`: the whole suite on this machine, each component a supervised child on 127.0.0.1.

Order: the demo model server, the GPU exporter, the KServe exporter and the probe pointed at the
model server, Alertmanager (pages go to a webhook in this process that prints them), Prometheus with
our rules, and a small load generator. Components whose subcommand is not in this build of gpulens,
or whose binary is not installed, are left out with a line saying how to get them.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from gpulens.config import ConfigError
from gpulens.up import faults, links
from gpulens.up.config import PORTS, UpConfig
from gpulens.up.plan import HOST, dashboards_dir, plan
from gpulens.up.supervisor import ChildSpec, Supervisor, healthy
from gpulens.up.traces import SpanRing
from gpulens.up.webhook import PageReceiver

HEALTH_TIMEOUT_SECONDS = 120.0


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


def default_run_dir() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "gpulens" / "up"
    return base / datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


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
        """Start every child, each once the children it needs are healthy; False if one never got there."""
        self.receiver.start()
        self.supervisor.watch()
        pending = list(self.plan.children)
        waiting: dict[str, ChildSpec] = {}
        ready: set[str] = set()
        started = time.monotonic()
        deadline = started + HEALTH_TIMEOUT_SECONDS
        while (pending or waiting) and time.monotonic() < deadline and not self.stopped.is_set():
            for spec in [s for s in pending if ready.issuperset(s.after)]:
                pending.remove(spec)
                self.supervisor.start(spec)
                if spec.health_url:
                    waiting[spec.name] = spec
                else:
                    ready.add(spec.name)
            for name, spec in list(waiting.items()):
                if healthy(spec.health_url):
                    self.say(f"{_now()} ok  {name:<16} {spec.url}  ({time.monotonic() - started:.1f}s)")
                    del waiting[name]
                    ready.add(name)
            self.stopped.wait(0.3)
        for name in waiting:
            self.say(f"{_now()} !!  {name} not healthy after {HEALTH_TIMEOUT_SECONDS:.0f}s: see {self.run_dir / (name + '.log')}")
        for spec in pending:
            self.say(f"{_now()} !!  {spec.name} not started: it waits for {', '.join(sorted(set(spec.after) - ready))}")
        return not waiting and not pending

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
