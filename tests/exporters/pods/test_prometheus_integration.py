"""A real Prometheus scrapes the GPU exporter with per-pod usage: 3 pods time-sharing 1 GPU at 10/30/50 % SM.

The whole path: simulated NVML processes → PIDs in a fixture /proc (cgroups in three runtimes'
formats) → pod UIDs served by the Kubernetes API stand-in (list+watch, real client) → the exporter's
HTTP server → Prometheus → PromQL, where pods + unattributed add up to the device per uuid.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.pods.collector import PodUsage
from gpulens.metrics import gpu as g
from gpulens.metrics import pod as c
from gpulens.server import MetricsServer
from gpulens.sim import SimulatedNVML
from gpulens.sim.kubeapi import KubeAPI
from gpulens.sim.sharedgpu import HOST_PROCESS_CGROUP, LAYOUTS, ProcTree, container_id, gpu_pod, pod_uid
from tests.prometheus_server import Prometheus, free_port

NODE = "gpu-node-1"
SHARES = {"a-0": 0.1, "b-0": 0.3, "c-0": 0.5}
TOLERANCE = 0.011  # NVML reports whole percents


def _add_pod(api: KubeAPI, tree: ProcTree, pid: int, name: str, layout: int, node: str = NODE) -> None:
    uid, cid = pod_uid(name), container_id(f"{name}/server")
    tree.process(pid, LAYOUTS[layout].text(uid, cid))
    api.add(gpu_pod(name, "models", uid, node, [("server", LAYOUTS[layout].runtime, cid)]))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prometheus_bin: str) -> Any:
    tmp = tmp_path_factory.mktemp("pods")
    api = KubeAPI().start()
    tree = ProcTree(str(tmp / "proc"))
    nv = SimulatedNVML(count=2)
    # GPU 0: three pods, each in another runtime/cgroup format (containerd v2 systemd, CRI-O v1, Docker hybrid)
    for pid, name, layout in ((101, "a-0", 0), (102, "b-0", 10), (103, "c-0", 20)):
        _add_pod(api, tree, pid, name, layout)
    _add_pod(api, tree, 9999, "elsewhere-0", 0, node="gpu-node-2")  # another node's pod: never listed here
    nv.set_processes(0, [(101, 2 << 30), (102, 4 << 30), (103, 6 << 30)])
    nv.set_process_utilization(0, {101: 0.1, 102: 0.3, 103: 0.5})
    # GPU 1: the default workload (pids 20101, 20102): one a host process, the other gone from /proc
    tree.process(20101, HOST_PROCESS_CGROUP)
    nv.set_load(1, 0.35)
    log = logging.getLogger("test.pods.integration")
    cfg = GpuExporterConfig(interval_seconds=0.5, xid_events=False, pod_attribution=False, pod_usage=True)
    exporter = GpuExporter(cfg, nv, "simulated", log=log)
    exporter.usage = PodUsage.from_config(nv, exporter.sampler.devices, cfg.interval_seconds, tree.root, NODE,
                                          api.kubeconfig(str(tmp / "kubeconfig")), log)
    server = MetricsServer("127.0.0.1", 0, exporter.render_parts, exporter.ready, title="test", log=log)
    server.start()
    exporter.start()
    prom = Prometheus(prometheus_bin, tmp, {"gpulens-gpu": f"127.0.0.1:{server.port}"})
    try:
        prom.wait_for(f'{c.SM_UTIL.name}{{pod="c-0"}}', timeout=60)
        yield prom, api, nv
    finally:
        prom.stop()
        server.stop()
        exporter.stop()
        api.stop()


def _by(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_three_pods_read_10_30_50_percent(stack: Any) -> None:
    prom, _, nv = stack
    uuid = nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(0))
    result = prom.query(c.SM_UTIL.name)
    assert {r["metric"]["pod"] for r in result} == set(SHARES)
    for r in result:
        assert r["metric"]["namespace"] == "models" and r["metric"]["container"] == "server"
        assert r["metric"]["uuid"] == uuid and r["metric"]["gpu"] == "0"
        assert float(r["value"][1]) == pytest.approx(SHARES[r["metric"]["pod"]], abs=TOLERANCE)
    rest = _by(prom.query(c.UNATTRIBUTED_SM.name), "gpu")
    assert rest["0"] == pytest.approx(0.0, abs=TOLERANCE)
    assert rest["1"] == pytest.approx(0.35, abs=TOLERANCE)  # host process + exited process: all unattributed
    assert _by(prom.query(c.MEM_USED.name), "pod") == {"a-0": 2 << 30, "b-0": 4 << 30, "c-0": 6 << 30}


@pytest.mark.parametrize(("pods", "rest", "device"), [
    (c.SM_UTIL, c.UNATTRIBUTED_SM, g.GPU_UTIL), (c.MEM_UTIL, c.UNATTRIBUTED_MEM_UTIL, g.GPU_MEM_UTIL),
    (c.ENC_UTIL, c.UNATTRIBUTED_ENC, g.GPU_ENC_UTIL), (c.DEC_UTIL, c.UNATTRIBUTED_DEC, g.GPU_DEC_UTIL),
    (c.MEM_USED, c.UNATTRIBUTED_MEM, g.MEM_USED)], ids=lambda f: getattr(f, "name", ""))
def test_prometheus_sums_pods_and_remainder_to_the_device(stack: Any, pods: Any, rest: Any, device: Any) -> None:
    prom = stack[0]
    both = f'sum by (uuid) ({{__name__=~"{pods.name}|{rest.name}"}})'
    diff = prom.query(f"abs({both} - on (uuid) sum by (uuid) ({device.name}))")
    assert len(diff) == 2, diff  # both GPUs, from the same scrape
    assert all(float(r["value"][1]) < 1e-6 * max(1.0, float(prom.query(f"sum({device.name})")[0]["value"][1]))
               for r in diff), diff


def test_readme_queries_check_out(stack: Any) -> None:
    """The README's sum check and its power-estimate recipe, as written there."""
    prom, _, nv = stack
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    lines = readme.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith('sum by (uuid) ({__name__=~"gpulens_pod_gpu_sm'))
    check = f"{lines[at].strip()} {lines[at + 1].strip()}"
    assert check.endswith("== on (uuid) sum by (uuid) (gpulens_gpu_utilization_ratio)")
    assert len(prom.query(check)) == 2  # both GPUs hold
    power = readme.split("# estimated watts per pod")[1].split("```")[0].split("\n", 1)[1]
    estimate = _by(prom.query(power), "pod")
    watts = float(prom.query(f'{g.POWER.name}{{gpu="0"}}')[0]["value"][1])
    assert set(estimate) == set(SHARES)
    assert sum(estimate.values()) == pytest.approx(watts, rel=TOLERANCE / 0.9)  # the pods hold all of GPU 0's SM time
    usage = readme.split("GPU-hours used per namespace on shared GPUs are\n")[1].split("`")[1]
    assert prom.query(usage)[0]["metric"] == {"namespace": "models"}


def test_attribution_self_metrics(stack: Any) -> None:
    prom = stack[0]
    assert float(prom.query(c.PROCESSES_VISIBLE.name)[0]["value"][1]) == 4  # 3 pods + the host process
    results = _by(prom.query(c.PROCESSES.name), "result")
    assert (results["pod"], results["not_in_pod"], results["exited"]) == (3, 1, 1)
    assert float(prom.query(c.API_UP.name)[0]["value"][1]) == 1
    assert prom.query(f'{c.SM_UTIL.name}{{pod="elsewhere-0"}}') == []


def test_pod_deleted_from_the_api_moves_to_unattributed(stack: Any) -> None:
    """Last (it changes the world): the watch drops c-0, its 50 % becomes unattributed; the sum still holds."""
    prom, api, _ = stack
    api.delete("Pod", "models", "c-0")
    prom.wait_for(f'{c.UNATTRIBUTED_SM.name}{{gpu="0"}} > 0.45', timeout=30)
    prom.wait_for(f'absent({c.SM_UTIL.name}{{pod="c-0"}})', timeout=30)
    assert set(_by(prom.query(c.SM_UTIL.name), "pod")) == {"a-0", "b-0"}


def test_cli_flags_wire_pod_usage_into_the_exporter(tmp_path: Path) -> None:
    """`gpulens gpu-exporter --pod-usage …` end to end: the simulated default workload's PID is a pod's."""
    with KubeAPI() as api:
        tree = ProcTree(str(tmp_path / "proc"))
        _add_pod(api, tree, 20001, "default-0", 1)  # GPU 0's default process (pid 20001) runs in this pod
        port = free_port()
        with open(tmp_path / "exporter.log", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", "1", "--listen-address", "127.0.0.1",
                 "--port", str(port), "--interval-seconds", "0.2", "--pod-usage", "--proc-root", tree.root,
                 "--node-name", NODE, "--kubeconfig", api.kubeconfig(str(tmp_path / "kubeconfig"))],
                stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                text = ""
                while 'pod="default-0"' not in text and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.2)
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                            text = resp.read().decode()
                    except OSError:
                        continue
            finally:
                proc.terminate()
                proc.wait(10)
        lines = [line for line in text.splitlines() if line.startswith(c.SM_UTIL.name + "{")]
        assert len(lines) == 1 and 'pod="default-0"' in lines[0] and 'gpu="0"' in lines[0], \
            (tmp_path / "exporter.log").read_text()[-3000:]
        assert 'gpulens_collector_success{collector="pod_usage"} 1' in text


def test_cli_pod_usage_without_a_node_name_exits_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "gpulens", "gpu-exporter", "--pod-usage", "--kubeconfig", str(tmp_path / "kc")],
                         capture_output=True, text=True, timeout=60, env=env, cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 2, out.stderr
    assert "flag --pod-usage needs --node-name or $NODE_NAME" in out.stderr


def _scrape_until(port: int, proc: subprocess.Popen[bytes], done: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + 60
    text = ""
    while not done(text) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
    return text


def test_simulated_demo_serves_pods_time_sharing_every_gpu(tmp_path: Path) -> None:
    """`--simulate 2 --pod-usage` alone: a simulated shared node (GPU 1 time-shared by 2 demo pods), the same code path."""
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    with open(tmp_path / "exporter.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", "2", "--listen-address",
                                 "127.0.0.1", "--port", str(port), "--interval-seconds", "0.2", "--pod-usage"],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            text = _scrape_until(port, proc, lambda t: t.count(c.SM_UTIL.name + "{") == 3)
        finally:
            proc.terminate()
            proc.wait(10)
    log = (tmp_path / "exporter.log").read_text()
    assert "simulated shared node" in log, log[-3000:]
    families = {f.name: f for f in text_string_to_metric_families(text)}
    pods = families[c.SM_UTIL.name].samples
    assert sorted((s.labels["gpu"], s.labels["pod"]) for s in pods) == [("0", "demo-g0-0"), ("1", "demo-g1-0"), ("1", "demo-g1-1")]
    for gpu in ("0", "1"):
        device = next(s.value for s in families[g.GPU_UTIL.name].samples if s.labels["gpu"] == gpu)
        rest = next(s.value for s in families[c.UNATTRIBUTED_SM.name].samples if s.labels["gpu"] == gpu)
        assert sum(s.value for s in pods if s.labels["gpu"] == gpu) + rest == pytest.approx(device)
