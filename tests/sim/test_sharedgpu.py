"""The shared-GPU simulation: per-PID shares in the simulated NVML, fixture /proc trees, GPU pods."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

from gpulens.exporters.pods.podindex import parse_pod
from gpulens.exporters.pods.procfs import ProcFS, parse_cgroup
from gpulens.sim import SimulatedNVML
from gpulens.sim.sharedgpu import ProcTree, shared_node


def _util(nv: SimulatedNVML, gpu: int = 0) -> dict[int, tuple[int, int, int, int]]:
    h = nv.nvmlDeviceGetHandleByIndex(gpu)
    return {s.pid: (s.smUtil, s.memUtil, s.encUtil, s.decUtil) for s in nv.nvmlDeviceGetProcessUtilization(h, 0)}


def test_process_shares_are_exact_and_sum_to_the_device() -> None:
    nv = SimulatedNVML(count=1)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.set_processes(0, [(1, 1 << 30), (2, 1 << 30), (3, 1 << 30)])
    nv.set_process_utilization(0, {1: 0.1, 2: 0.3, 3: 0.5}, encoder={2: 0.25}, decoder={3: 0.4})
    util = _util(nv)
    assert {pid: u[0] for pid, u in util.items()} == {1: 10, 2: 30, 3: 50}
    assert nv.nvmlDeviceGetUtilizationRates(h).gpu == 90
    assert sum(u[1] for u in util.values()) == nv.nvmlDeviceGetUtilizationRates(h).memory
    assert util[2][2] == 25 and nv.nvmlDeviceGetEncoderUtilization(h)[0] == 25
    assert util[3][3] == 40 and nv.nvmlDeviceGetDecoderUtilization(h)[0] == 40
    samples = nv.nvmlDeviceGetProcessUtilization(h, 0)
    assert all(isinstance(s, pynvml.c_nvmlProcessUtilizationSample_t) for s in samples)
    with pytest.raises(pynvml.NVMLError_NotFound):  # nothing newer than the newest sample seen
        nv.nvmlDeviceGetProcessUtilization(h, max(s.timeStamp for s in samples))
    nv.set_process_utilization(0, None)  # back to splitting the load curve by memory
    assert nv.nvmlDeviceGetEncoderUtilization(h)[0] == 0


def test_bad_shares_are_refused() -> None:
    nv = SimulatedNVML(count=1)
    with pytest.raises(ValueError, match="sum to at most 1"):
        nv.set_process_utilization(0, {1: 0.7, 2: 0.6})
    with pytest.raises(ValueError, match=">= 0"):
        nv.set_process_utilization(0, {1: -0.1})


def test_add_processes_keeps_the_others_and_their_kinds() -> None:
    nv = SimulatedNVML(count=1)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    nv.set_processes(0, [(1, 100 << 20)])
    nv.add_processes(0, [(2, 200 << 20)], kind="mps")
    assert [p.pid for p in nv.nvmlDeviceGetComputeRunningProcesses(h)] == [1]
    assert [(p.pid, p.usedGpuMemory) for p in nv.nvmlDeviceGetMPSComputeRunningProcesses(h)] == [(2, 200 << 20)]


def test_shared_node_wires_nvml_proc_and_pods(tmp_path: Path) -> None:
    nv = SimulatedNVML(count=2)
    nv.nvmlInit()
    tree = ProcTree(str(tmp_path / "proc"))
    procs, pods = shared_node(nv, tree, gpus=2, per_gpu=4)
    assert len(procs) == len(pods) == 8
    by_uid = {parse_pod(p).uid: parse_pod(p) for p in pods}
    proc = ProcFS(tree.root)
    assert proc.host_pid_namespace()
    for p in procs:
        ref = parse_cgroup(proc.read_cgroup(p.pid))
        assert ref is not None and by_uid[ref.pod_uid].name == p.pod
        assert by_uid[ref.pod_uid].containers[ref.container_id] == p.container
    assert sum(u[0] for u in _util(nv, 1).values()) == 90  # 1..4 parts of 90 %
