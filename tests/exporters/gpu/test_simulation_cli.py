"""`--simulate*` from the command line: exit-2 checks, --help, the fault schedule and the fault endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from gpulens.config import load
from gpulens.exporters.gpu.config import _MODELS, GpuExporterConfig
from gpulens.sim import MODELS, SimulatedNVML
from gpulens.sim.faults import FaultError, FaultInjector, parse_fault, parse_faults
from tests.prometheus_server import free_port


def _gpulens(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpulens", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("flag", ["--simulate-mig=7x1g.10gb", "--simulate-kubelet", "--simulate-faults=xid:79@gpu0"])
def test_simulate_flags_need_simulate(flag: str) -> None:
    out = _gpulens("gpu-exporter", flag)
    assert out.returncode == 2
    name = flag.split("=")[0]
    assert out.stderr.strip().splitlines() == [f"gpulens gpu-exporter: flag {name} needs --simulate (it only applies to simulated GPUs)"]


def test_help_lists_auto_and_every_model() -> None:
    out = _gpulens("gpu-exporter", "--help")
    assert "auto" in out.stdout and all(model in out.stdout for model in MODELS)
    assert _MODELS == ", ".join(MODELS)  # the help text names what the simulator has


def test_bad_fault_schedule_exits_2_with_the_grammar() -> None:
    out = _gpulens("gpu-exporter", "--simulate", "2", "--simulate-faults", "xid:79@gpu7")
    assert out.returncode == 2
    assert out.stderr.strip() == "gpulens gpu-exporter: simulate-faults: fault 'xid:79@gpu7': no gpu7; the simulation has gpu0..gpu1"


def test_unknown_gpulens_variable_warns_once() -> None:
    lines: list[str] = []
    load(GpuExporterConfig, env={"GPULENS_INTERVAL_SECOND": "5", "GPULENS_PORT": "1"}, warn=lines.append)
    assert len(lines) == 1 and lines[0].startswith("environment variable GPULENS_INTERVAL_SECOND names no setting")


@pytest.mark.parametrize("interval", ["1e10", "inf"])
def test_interval_upper_bound(interval: str) -> None:
    out = _gpulens("gpu-exporter", "--simulate", "1", "--interval-seconds", interval, "--podresources-interval-seconds", "1e10")
    assert out.returncode == 2 and "interval" in out.stderr


def test_fault_grammar() -> None:
    assert replace(parse_fault("xid:79@gpu3+60s", 8), spec="") == replace(parse_fault("xid:79@gpu3@60s", 8), spec="")
    f = parse_fault("lost:gpu2@120s..180s", 8)
    assert (f.kind, f.gpu, f.start, f.end) == ("lost", 2, 120.0, 180.0)
    f = parse_fault("hang:nvmlDeviceGetTemperatureV@30s..40s", 8)
    assert (f.kind, f.arg, f.gpu, f.start, f.end) == ("hang", "nvmlDeviceGetTemperatureV", None, 30.0, 40.0)
    assert parse_fault("throttle:thermal@gpu1", 8).start == 0.0  # no time: now
    assert [f.kind for f in parse_faults("pcie-downgrade@gpu0; ecc-dbe@gpu5\nload:0.5@gpu1@2m..3m", 8)] == [
        "pcie-downgrade", "ecc-dbe", "load"]
    for bad, why in [("boom@gpu0", "unknown kind"), ("xid@gpu0", "numeric code"), ("xid:79", "needs a GPU"),
                     ("hang:nvmlNoSuch", "not a simulated NVML function"), ("lost:gpu1@9s..3s", "ends before"),
                     ("throttle:cold@gpu0", "throttle reason"), ("load:2@gpu0", "ratio in 0..1"), ("xid:1@gpu0+soon", "bad time")]:
        with pytest.raises(FaultError, match=why):
            parse_fault(bad, 8)


def test_injector_applies_now_and_undoes_windows() -> None:
    now = [0.0]
    nv = SimulatedNVML(count=4)
    injector = FaultInjector(nv, clock=lambda: now[0])
    injector.add("throttle:thermal@gpu1; lost:gpu2@10s..20s; pcie-downgrade@gpu0@5s")
    assert injector.applied == ["throttle:thermal@gpu1"]  # no time: applied before add() returns
    now[0] = 10.0
    injector.run_due()
    assert injector.applied[1:] == ["pcie-downgrade@gpu0@5s", "lost:gpu2@10s..20s"]
    assert 2 in nv._lost
    now[0] = 20.0
    injector.run_due()
    assert injector.applied[-1] == "lost:gpu2@10s..20s (end)" and 2 not in nv._lost


def _get(url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_fault_schedule_and_endpoint_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", "4", "--port", str(port),
                                 "--listen-address", "127.0.0.1", "--interval-seconds", "0.2",
                                 "--simulate-faults", "xid:79@gpu3; lost:gpu2@0s..600s"], stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        body = ""
        while 'gpulens_gpu_up{gpu="2"' not in body or 'xid="79"' not in body:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
            try:
                body = _get(base + "/metrics")[1]
            except OSError:
                continue
        assert 'gpulens_gpu_up{gpu="2",uuid=' in body and body.split('gpulens_gpu_up{gpu="2"', 1)[1].split("\n")[0].endswith(" 0.0")
        status, text = _get(base + "/-/simulate/fault", b"ecc-dbe@gpu1")
        assert (status, text) == (200, "scheduled ecc-dbe@gpu1\n")
        assert _get(base + "/-/simulate/fault", b"ecc-dbe@gpu9")[0] == 400
        deadline = time.monotonic() + 30
        while 'xid="48"' not in _get(base + "/metrics")[1]:  # applied at once: the XID 48 event arrives
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "NVML" in _get(base + "/")[1] and "simulated" in _get(base + "/")[1]  # landing page: mode
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    messages = [json.loads(line)["message"] for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(m.startswith("simulated NVML initialised") and "simulated" in m for m in messages)
    assert any("pod attribution disabled: no kubelet socket" in m for m in messages)
    assert not any("PodResources List() failed" in m for m in messages)
