"""A real Prometheus scrapes `gpulens gpu-exporter` (8 simulated H100s with MIG, stand-in kubelet).

Proves the whole path: CLI → sampler → pod attribution over gRPC → HTTP → Prometheus → PromQL,
including the five queries of Grafana dashboard 12239 against `--compat dcgm`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gpulens.metrics import gpu as c
from gpulens.sim import SimulatedNVML
from gpulens.sim.kubelet import FakeKubelet, PodSpec
from tests.prometheus_server import Prometheus, free_port

MIG = "3g.40gb+2x2g.20gb"


def _uuids() -> tuple[list[str], list[list[str]]]:
    """The simulated node's GPU and MIG uuids (deterministic for a given seed)."""
    nv = SimulatedNVML(count=8, model="h100", mig=MIG)
    nv.nvmlInit()
    gpus, migs = [], []
    for i in range(8):
        handle = nv.nvmlDeviceGetHandleByIndex(i)
        gpus.append(nv.nvmlDeviceGetUUID(handle))
        slots = []
        for slot in range(nv.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                slots.append(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)))
            except Exception:
                continue
        migs.append(slots)
    return gpus, migs


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prometheus_bin: str):
    tmp = tmp_path_factory.mktemp("stack")
    gpus, migs = _uuids()
    kubelet = FakeKubelet(str(tmp / "kubelet.sock")).start()
    kubelet.set_pods([
        PodSpec("models", "llama-predictor-0", [("kserve-container", "nvidia.com/mig-3g.40gb", [migs[0][0]])]),
        PodSpec("models", "bert-predictor-0", [("kserve-container", "nvidia.com/mig-2g.20gb", [migs[0][1], migs[1][1]])]),
        PodSpec("batch", "train-0", [("trainer", "nvidia.com/mig-3g.40gb", [migs[5][0]])]),
    ])
    port = free_port()
    log = open(tmp / "exporter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", "8:h100", "--simulate-mig", MIG,
         "--compat", "dcgm", "--listen-address", "127.0.0.1", "--port", str(port), "--interval-seconds", "0.5",
         "--podresources-socket", str(tmp / "kubelet.sock"), "--podresources-interval-seconds", "0.5",
         "--hostname", "gpu-node-1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    prom = Prometheus(prometheus_bin, tmp, {"gpulens-gpu": f"127.0.0.1:{port}"})
    try:
        prom.wait_for(f'{c.MIG_INFO.name}', timeout=60)
        prom.wait_for(f'{c.MIG_MEM_USED.name}{{pod="train-0"}}', timeout=60)
        yield prom, port, gpus, migs, tmp / "exporter.log"
    finally:
        prom.stop()
        proc.terminate()
        proc.wait(10)
        kubelet.stop()
        log.close()


def test_query_by_namespace_and_pod_returns_the_pods_gpus(stack) -> None:
    prom, _, gpus, migs, _ = stack
    result = prom.query(f'{c.MIG_MEM_USED.name}{{namespace="models"}}')
    got = sorted((r["metric"]["pod"], r["metric"]["uuid"]) for r in result)
    assert got == sorted([("llama-predictor-0", migs[0][0]), ("bert-predictor-0", migs[0][1]),
                          ("bert-predictor-0", migs[1][1])])
    parents = prom.query(f'count by (gpu) ({c.GPU_ALLOCATION.name}{{namespace="models", pod="bert-predictor-0"}})')
    assert sorted(r["metric"]["gpu"] for r in parents) == ["0", "1"]
    train = prom.query(f'{c.GPM_SM.name}{{pod="train-0"}}')
    assert [r["metric"]["gpu"] for r in train] == ["5"]


def test_every_gpu_reports(stack) -> None:
    prom, *_ = stack
    assert len(prom.query(f"{c.GPU_UP.name} == 1")) == 8
    assert prom.query(f"{c.NVML_UP.name}")[0]["value"][1] == "1"
    assert prom.query(f"{c.PODRES_UP.name}")[0]["value"][1] == "1"


DASHBOARD_12239 = [  # the panel queries of Grafana dashboard 12239, variables filled in
    'DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~".*"}',
    'DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~".*"}',
    'DCGM_FI_DEV_SM_CLOCK{instance=~"$instance", gpu=~".*"} * 1000000',
    'DCGM_FI_DEV_FB_USED{instance=~"$instance", gpu=~".*"}',
    'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{instance=~"$instance", gpu=~".*"}',  # from GPM on Hopper
]
# DCGM_FI_DEV_GPU_UTIL is the sixth panel: NVML has no utilization under MIG (this node is all MIG),
# so it is absent there, as with dcgm-exporter; test_dcgm_names_carry_nvml_integers covers it without MIG.


@pytest.mark.parametrize("query", DASHBOARD_12239)
def test_dcgm_dashboard_12239_queries_get_data(stack, query: str) -> None:
    prom, port, *_ = stack
    result = prom.wait_for(query.replace("$instance", f"127.0.0.1:{port}"))
    # FB_USED also has one series per MIG instance (GPU_I_ID), as dcgm-exporter does
    assert {r["metric"]["gpu"] for r in result} == {str(i) for i in range(8)}
    for r in result:
        assert r["metric"]["Hostname"] == "gpu-node-1"
        assert r["metric"]["modelName"] == "NVIDIA H100 80GB HBM3"


def test_dcgm_gpu_util_is_absent_under_mig_and_gpm_activity_is_there(stack) -> None:
    prom, port, *_ = stack
    prom.wait_for(f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{instance="127.0.0.1:{port}",GPU_I_PROFILE="3g.40gb"}}')
    assert prom.query(f'DCGM_FI_DEV_GPU_UTIL{{instance="127.0.0.1:{port}"}}') == []


def test_readyz_and_healthz(stack) -> None:
    _, port, *_ = stack
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            assert resp.status == 200


def test_exporter_log_is_ecs_json(stack) -> None:
    *_, log_path = stack
    lines = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    assert lines and all(line["ecs.version"] and line["log.level"] for line in lines)
    assert any("simulated" in line["message"] for line in lines)  # simulated data is never silent
