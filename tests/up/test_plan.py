"""What `gpulens up` starts, with which flags and configs; ports in use; missing binaries."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.up import app, plan
from gpulens.up.config import UpConfig
from gpulens.up.prometheus import JOBS, render_alertmanager, render_prometheus
from tests.tools import require_tool


def test_command_argv_passes_only_the_flags_the_command_has() -> None:
    argv = plan.command_argv("gpu-exporter", GpuExporterConfig, {"port": 1234, "simulate_kubelet": True, "no_such": 1})
    assert argv[1:] == ["-m", "gpulens", "gpu-exporter", "--port", "1234", "--simulate-kubelet", "true"]


def test_gpu_exporter_flags_parse_with_the_real_cli(tmp_path: Path) -> None:
    from gpulens.cli import build_parser

    p = plan.plan(UpConfig(), tmp_path, "http://127.0.0.1:1/", which=lambda _: None)
    spec = next(c for c in p.children if c.name == "gpu-exporter")
    parser, _ = build_parser()
    ns, extra = parser.parse_known_args(list(spec.argv[3:]))
    assert extra == [] and ns.port == "9445" and ns.listen_address == "127.0.0.1" and ns.simulate == "auto"


def test_missing_prometheus_and_alertmanager_say_how_to_install(tmp_path: Path) -> None:
    p = plan.plan(UpConfig(), tmp_path, "http://127.0.0.1:1/", which=lambda _: None)
    names = [c.name for c in p.children]
    assert "prometheus" not in names and "alertmanager" not in names
    assert any(s.startswith("Prometheus: prometheus not found; apt-get install prometheus prometheus-alertmanager")
               for s in p.skipped)


def test_components_not_in_this_build_are_left_out(tmp_path: Path) -> None:
    p = plan.plan(UpConfig(), tmp_path, "http://127.0.0.1:1/", commands={"gpu-exporter": GpuExporterConfig},
                    which=lambda _: None)
    assert [c.name for c in p.children] == ["modelserver", "gpu-exporter", "load"]
    assert "KServe exporter: not in this build of gpulens yet" in p.skipped


def test_prometheus_and_alertmanager_configs_are_written_and_wired(tmp_path: Path) -> None:
    cfg = UpConfig(prometheus_port=19090, alertmanager_port=19093, scrape_interval_seconds=2)
    p = plan.plan(cfg, tmp_path, "http://127.0.0.1:9452/", which=lambda name: f"/usr/bin/{name}")
    prom = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    jobs = {j["job_name"]: j["static_configs"][0]["targets"][0] for j in prom["scrape_configs"]}
    assert jobs[JOBS["gpu-exporter"]] == "127.0.0.1:9445"
    assert prom["global"]["scrape_interval"] == "2s"
    am = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    assert am["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:9452/"
    prometheus = next(c for c in p.children if c.name == "prometheus")
    assert "--web.listen-address=127.0.0.1:19090" in prometheus.argv
    assert "--rules.alert.resend-delay=2s" in prometheus.argv


def test_port_in_use_is_named_with_its_flag() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        problems = app.port_problems({"prometheus_port": port})
    assert problems == [f"port {port} on 127.0.0.1 is in use (Address already in use): stop what listens there or "
                        f"pick another with --prometheus-port"]


def test_up_exits_2_naming_the_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gpulens.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["up", "--run-dir", str(tmp_path), "--gpu-port", str(port), "--webhook-port", "0"])
    assert code == 2
    assert f"gpulens up: port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_same_port_twice_is_refused() -> None:
    assert app.port_problems({"gpu_port": 5, "probe_port": 5})[-1] == "port 5 given twice (--probe-port and --gpu-port)"


def test_bad_fault_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from gpulens.cli import main

    assert main(["up", "--fault", "melt"]) == 2
    assert "gpulens up: fault: unknown fault 'melt'" in capsys.readouterr().err


def test_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups: []\n")
    config = render_prometheus({"gpu-exporter": "127.0.0.1:9445", "probe": "127.0.0.1:9447"}, [rules],
                               "127.0.0.1:9093", 0.5, node="n")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_alertmanager_config_passes_amtool_and_keeps_our_routing(tmp_path: Path) -> None:
    """alerts/alertmanager.yml's routes and inhibitions, every receiver that notifies replaced by the local webhook."""
    amtool = require_tool("amtool")
    config = plan.alertmanager_config("http://127.0.0.1:9452/", 1.0)
    base = plan.alertmanager_base()
    assert base is not None and config["inhibit_rules"] == base["inhibit_rules"]
    assert config["route"]["group_wait"] == "1s" and config["route"]["routes"][0]["group_wait"] == "1s"
    urls = {r["name"]: [w["url"] for w in r.get("webhook_configs", [])] for r in config["receivers"]}
    assert urls == {r["name"]: ["http://127.0.0.1:9452/"] if any(k.endswith("_configs") for k in r) else []
                    for r in base["receivers"]}
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for labels, receiver in ((["severity=critical", "alertname=GpulensGpuXidCritical"], "pager"),
                             (["severity=warning", "alertname=GpulensGpuThrottled"], "ticket")):
        route = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}", *labels],
                               capture_output=True, text=True)
        assert route.stdout.strip() == receiver, route.stdout + route.stderr


def test_without_our_routing_everything_goes_to_the_terminal(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(render_alertmanager("http://127.0.0.1:9452/")))
    check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    route = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}", "severity=critical"],
                           capture_output=True, text=True)
    assert route.stdout.strip() == "terminal", route.stdout + route.stderr


def test_what_uses_the_model_server_starts_after_it(tmp_path: Path) -> None:
    p = plan.plan(UpConfig(), tmp_path, "http://127.0.0.1:1/", which=lambda _: None)
    after = {c.name: c.after for c in p.children}
    assert after["modelserver"] == () and after["gpu-exporter"] == ()
    assert after["kserve-exporter"] == after["probe"] == after["load"] == ("modelserver",)
