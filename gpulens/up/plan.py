"""What `gpulens up` starts: one `ChildSpec` per component, with the configs it needs written to the run directory.

Components land in gpulens over time: a component is planned only when its subcommand is in this
build's `COMMANDS` (or its binary is installed); the others are listed in `Plan.skipped` with how to
get them. Each gpulens child gets only the flags its config dataclass has.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpulens.up.config import UpConfig
from gpulens.up.prometheus import local_alertmanager, render_alertmanager, render_prometheus
from gpulens.up.supervisor import ChildSpec

HOST = "127.0.0.1"
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


def alertmanager_base() -> dict[str, Any] | None:
    """Our Alertmanager routing (alerts/alertmanager.yml), if this build has it."""
    folder = _package_dir("gpulens.alerts")
    path = folder / "alertmanager.yml" if folder else None
    return dict(yaml.safe_load(path.read_text(encoding="utf-8"))) if path and path.is_file() else None


def alertmanager_config(local_url: str, group_wait_seconds: float) -> dict[str, Any]:
    base = alertmanager_base()
    if base is None:
        return render_alertmanager(local_url, group_wait_seconds)
    return local_alertmanager(base, local_url, group_wait_seconds)


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


def otlp_reachable(address: tuple[str, int] = OTLP_DEFAULT, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


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

    # What scrapes or probes the model server starts once it answers, so the first minute is not all errors.
    needs_model = ("modelserver",) if "modelserver" in p.scrape else ()

    if "kserve-exporter" in commands:
        targets = _write_yaml(run_dir / "kserve-targets.yaml", kserve_targets(model_url, models))
        p.children.append(ChildSpec("kserve-exporter", command_argv("kserve-exporter", commands["kserve-exporter"], {
            **common, "port": cfg.kserve_port, "mode": "static", "targets_file": targets,
            "interval_seconds": cfg.exporter_interval_seconds}),
            f"http://{HOST}:{cfg.kserve_port}/healthz", url=f"http://{HOST}:{cfg.kserve_port}/metrics", after=needs_model))
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
            f"http://{HOST}:{cfg.probe_port}/healthz", url=f"http://{HOST}:{cfg.probe_port}/metrics", after=needs_model))
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
        am_config = _write_yaml(run_dir / "alertmanager.yml", alertmanager_config(local_url, min(cfg.scrape_interval_seconds, 1.0)))
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
                                             "--models", ",".join(models), "--rps", f"{cfg.load_rps:g}"],
                                    after=needs_model))
    return p


def _go_level(level: str) -> str:
    return {"warning": "warn"}.get(level, level)
