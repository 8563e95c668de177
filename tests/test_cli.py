"""The `gpulens` command: version, help, and bad input as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

from gpulens import __version__


def _gpulens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpulens", *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    out = _gpulens("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"gpulens {__version__}"


def test_subcommand_help_lists_flags_and_env() -> None:
    out = _gpulens("gpu-exporter", "--help")
    assert out.returncode == 0
    for needle in ("--simulate", "--compat", "GPULENS_INTERVAL_SECONDS", "One of: none, dcgm"):
        assert needle in out.stdout


def test_unknown_flag_is_one_line_with_allowed_flags() -> None:
    out = _gpulens("gpu-exporter", "--prot", "1")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unrecognized arguments: --prot 1 (allowed: --canary, --canary-interval-seconds, --compat, --config," in lines[0]


def test_bad_value_exit_2() -> None:
    out = _gpulens("gpu-exporter", "--compat", "nvidia")
    assert out.returncode == 2
    assert out.stderr.strip() == "gpulens gpu-exporter: flag --compat: 'nvidia' is not allowed (allowed: none, dcgm)"


def test_bad_simulate_spec_exit_2() -> None:
    out = _gpulens("gpu-exporter", "--simulate", "8:h200x")
    assert out.returncode == 2
    assert out.stderr.startswith("gpulens gpu-exporter: simulate: ")
    assert "h100" in out.stderr  # names the allowed models


def test_bad_env_exit_2() -> None:
    out = subprocess.run([sys.executable, "-m", "gpulens", "gpu-exporter"], capture_output=True, text=True,
                         timeout=60, env={"GPULENS_PORT": "http", "PATH": "/usr/bin"})
    assert out.returncode == 2
    assert out.stderr.strip() == "gpulens gpu-exporter: environment variable GPULENS_PORT: 'http' is not an integer"


def test_no_command_prints_help_exit_2() -> None:
    out = _gpulens()
    assert out.returncode == 2
    assert "gpu-exporter" in out.stdout


def test_bad_simulated_mig_layout_exit_2() -> None:
    out = _gpulens("gpu-exporter", "--simulate", "2:h100", "--simulate-mig", "9g.90gb")
    assert out.returncode == 2
    assert out.stderr.startswith("gpulens gpu-exporter: simulate: ")
    assert "1g.10gb" in out.stderr  # names the profiles that exist


def test_readme_documents_every_flag() -> None:
    import dataclasses
    from pathlib import Path

    from gpulens.exporters.gpu.config import GpuExporterConfig

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for f in dataclasses.fields(GpuExporterConfig):
        assert f"`--{f.name.replace('_', '-')}`" in readme, f.name


def test_bad_web_config_exit_2(tmp_path) -> None:
    web = tmp_path / "web-config.yml"
    web.write_text("tls_server_config:\n  certfile: x.pem\n")
    out = _gpulens("gpu-exporter", "--simulate", "1", "--web-config-file", str(web))
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert "unknown key 'tls_server_config.certfile'" in line and "cert_file" in line


def test_simulate_auto_falls_back_loudly_without_a_driver(tmp_path) -> None:
    """`make run` uses --simulate auto: real NVML when a driver answers, else simulated GPUs, said loudly."""
    import json
    import time
    import urllib.request

    import pynvml

    from tests.prometheus_server import free_port

    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        expected = "real"
    except pynvml.NVMLError:
        expected = "simulated"
    port = free_port()
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", "auto", "--port", str(port),
                                 "--listen-address", "127.0.0.1", "--pod-attribution", "false"], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                if "gpulens_gpu_info" in body:  # the first sample is taken on the sampler thread
                    break
                raise OSError("no sample yet")
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    assert f'nvml="{expected}"' in body
    if expected == "simulated":
        first = json.loads(log.read_text().splitlines()[0])
        assert first["log.level"] == "warning" and "NOT REAL DATA" in first["message"]
        assert "GPU-sim-" in body
