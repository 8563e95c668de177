"""Per-process NVML samples → per-container figures + unattributed remainder, on the simulated NVML and a fixture /proc."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpulens.exporters.pods.collector import collect
from gpulens.exporters.pods.procfs import ProcFS
from gpulens.exporters.pods.usage import MEMORY_USED, SM, Owner, Resolver, UsageReader, split
from gpulens.exposition import Renderer
from gpulens.sim import SimulatedNVML
from gpulens.sim.sharedgpu import DOCKER_OUTSIDE_K8S_CGROUP, HOST_PROCESS_CGROUP, LAYOUTS, ProcTree, container_id, pod_uid

GIB = 1 << 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    containers: dict[str, str] = field(default_factory=dict)


class Pods:
    """The pod index's interface over a dict (the real PodIndex is tested against the API stand-in)."""

    def __init__(self, up: bool = True) -> None:
        self.by_uid: dict[str, Pod] = {}
        self.up = up
        self.version = 0  # tests that change pods after a cycle bump it, as PodIndex does on every event

    def add(self, name: str, containers: dict[str, str], namespace: str = "models") -> Pod:
        pod = Pod(namespace, name, pod_uid(name), containers)
        self.by_uid[pod.uid] = pod
        return pod

    def lookup(self, uid: str) -> Any:
        return self.by_uid.get(uid)


@dataclass
class World:
    nv: SimulatedNVML
    clock: Clock
    tree: ProcTree
    pods: Pods
    reader: UsageReader
    uuid: str

    def place(self, pid: int, name: str, container: str = "main", layout: int = 0, known: bool = True) -> None:
        """A process of pod `name` (container `container`) in /proc, and the pod in the index if known."""
        uid, cid = pod_uid(name), container_id(f"{name}/{container}")
        self.tree.process(pid, LAYOUTS[layout].text(uid, cid))
        if known:
            pod = self.pods.by_uid.get(uid) or self.pods.add(name, {})
            pod.containers[cid] = container


def _world(tmp_path: Path, host_pid: bool = True, count: int = 1, log: logging.Logger | None = None) -> World:
    clock = Clock()
    nv = SimulatedNVML(count=count, clock=clock)
    nv.nvmlInit()
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    devices = [(i, nv.nvmlDeviceGetUUID(h), h) for i, h in enumerate(handles)]
    tree = ProcTree(str(tmp_path / "proc"), host_pid=host_pid)
    pods = Pods()
    log = log or logging.getLogger("test.pods")
    reader = UsageReader(nv, lambda: devices, Resolver(ProcFS(tree.root), pods, log, clock=clock), log, clock=clock)
    return World(nv, clock, tree, pods, reader, devices[0][1])


def _three_pods(w: World) -> None:
    """The issue's scenario: 3 pods time-sharing one GPU at 10 / 30 / 50 % SM."""
    for pid, name, layout in ((101, "a-0", 0), (102, "b-0", 4), (103, "c-0", 9)):
        w.place(pid, name, layout=layout)
    w.nv.set_processes(0, [(101, 2 * GIB), (102, 4 * GIB), (103, 6 * GIB)])
    w.nv.set_process_utilization(0, {101: 0.1, 102: 0.3, 103: 0.5})


def test_three_pods_read_their_shares_and_add_up_to_the_device(tmp_path: Path) -> None:
    w = _world(tmp_path)
    _three_pods(w)
    gpu = w.reader.cycle().gpus[0]
    sm = {o.pod: v[SM] for o, v in gpu.pods.items()}
    assert sm == pytest.approx({"a-0": 0.1, "b-0": 0.3, "c-0": 0.5})
    assert gpu.unattributed[SM] == pytest.approx(0.0)
    assert gpu.device[SM] == pytest.approx(0.9)
    assert {o.pod: v[MEMORY_USED] for o, v in gpu.pods.items()} == {"a-0": 2 * GIB, "b-0": 4 * GIB, "c-0": 6 * GIB}
    for q in range(5):
        assert sum(v[q] for v in gpu.pods.values()) + gpu.unattributed[q] == pytest.approx(gpu.device[q])


def test_processes_of_one_container_are_summed_and_containers_kept_apart(tmp_path: Path) -> None:
    w = _world(tmp_path)
    w.place(201, "multi-0", "server")
    w.place(202, "multi-0", "server")
    w.place(203, "multi-0", "sidecar")
    w.nv.set_processes(0, [(201, GIB), (202, GIB), (203, GIB)])
    w.nv.set_process_utilization(0, {201: 0.2, 202: 0.2, 203: 0.1})
    pods = w.reader.cycle().gpus[0].pods
    assert {o.container: v[SM] for o, v in pods.items()} == pytest.approx({"server": 0.4, "sidecar": 0.1})
    assert {o.container: v[MEMORY_USED] for o, v in pods.items()} == {"server": 2 * GIB, "sidecar": GIB}


def test_mps_clients_and_encoder_decoder_split(tmp_path: Path) -> None:
    w = _world(tmp_path)
    w.tree.process(300, HOST_PROCESS_CGROUP, "nvidia-cuda-mps-server")  # the MPS server runs on the host
    w.place(301, "mps-a-0")
    w.place(302, "mps-b-0")
    w.nv.set_processes(0, [(300, GIB // 2)])
    w.nv.add_processes(0, [(301, 3 * GIB), (302, 5 * GIB)], kind="mps")
    w.nv.set_process_utilization(0, {301: 0.25, 302: 0.5}, encoder={301: 0.2}, decoder={302: 0.4})
    gpu = w.reader.cycle().gpus[0]
    by_pod = {o.pod: v for o, v in gpu.pods.items()}
    assert by_pod["mps-a-0"] == pytest.approx((0.25, by_pod["mps-a-0"][1], 0.2, 0.0, 3 * GIB))
    assert by_pod["mps-b-0"] == pytest.approx((0.5, by_pod["mps-b-0"][1], 0.0, 0.4, 5 * GIB))
    assert gpu.device[2:4] == pytest.approx((0.2, 0.4))
    assert gpu.unattributed[MEMORY_USED] == GIB // 2  # the MPS server: a host process
    assert w.reader.snapshot is not None and w.reader.snapshot.results == {"pod": 2, "not_in_pod": 1}


def test_split_scales_when_processes_add_up_to_more_than_the_device() -> None:
    a, b = Owner("ns", "a", "c"), Owner("ns", "b", "c")
    pods, rest = split((0.6, None, 0.0, 0.0, 100.0), {1: [0.5, 0.1, 0.0, 0.0, 30.0], 2: [0.3, 0.1, 0.0, 0.0, 20.0],
                                                    3: [0.2, 0.0, 0.0, 0.0, 0.0]}, {1: a, 2: b, 3: None})
    assert pods[a][SM] == pytest.approx(0.3) and pods[b][SM] == pytest.approx(0.18)  # ×0.6, the 0.12 of pid 3 unattributed
    assert rest[SM] == pytest.approx(0.12)
    assert pods[a][1] is None and rest[1] is None  # the device does not report it: left out, not 0
    assert rest[MEMORY_USED] == 50.0


def test_every_unresolvable_process_degrades_to_unattributed_and_is_logged_once(tmp_path: Path,
                                                                                caplog: pytest.LogCaptureFixture) -> None:
    w = _world(tmp_path)
    w.place(401, "good-0")
    w.tree.process(402, HOST_PROCESS_CGROUP)
    w.tree.process(403, DOCKER_OUTSIDE_K8S_CGROUP)
    w.place(404, "unknown-0", known=False)  # a pod the API has not shown (yet)
    w.place(405, "restarted-0")
    w.pods.by_uid[pod_uid("restarted-0")].containers.clear()  # its status does not list this container ID yet
    # 406 exited between NVML listing it and the cgroup read: no /proc entry
    w.tree.unreadable(407)
    w.tree.process(408, f"0::/kubepods/burstable/pod{pod_uid('x')}/libpod-{container_id('x')}.scope\n")  # unknown runtime
    pids = (401, 402, 403, 404, 405, 406, 407, 408)
    w.nv.set_processes(0, [(pid, GIB) for pid in pids])
    w.nv.set_process_utilization(0, {pid: 0.1 for pid in pids})
    with caplog.at_level(logging.INFO, logger="test.pods"):
        for _ in range(3):
            snap = w.reader.cycle()
            w.clock.tick()
    gpu = snap.gpus[0]
    assert list(gpu.pods) == [Owner("models", "good-0", "main")]
    assert gpu.pods[Owner("models", "good-0", "main")][SM] == pytest.approx(0.1)
    assert gpu.unattributed[SM] == pytest.approx(0.7)
    assert gpu.unattributed[MEMORY_USED] == 7 * GIB
    assert snap.results == {"pod": 1, "not_in_pod": 2, "unknown_pod": 1, "unknown_container": 1, "exited": 1,
                            "unreadable": 1, "unknown_format": 1}
    assert snap.visible == 6  # all but the exited and the unreadable one
    messages = [r.getMessage() for r in caplog.records]
    for needle in ("exited before its cgroup was read", "cannot read", "libpod-"):
        assert sum(needle in m for m in messages) == 1, (needle, messages)


def test_a_process_exiting_mid_cycle_later_resolves_again(tmp_path: Path) -> None:
    w = _world(tmp_path)
    w.nv.set_processes(0, [(501, GIB)])
    w.nv.set_process_utilization(0, {501: 0.4})
    assert w.reader.cycle().results == {"exited": 1}  # NVML listed it before /proc had it
    w.place(501, "late-0")  # the PID is (re)used by a pod process: read afresh, not a cached failure
    w.clock.tick()
    gpu = w.reader.cycle().gpus[0]
    assert {o.pod: v[SM] for o, v in gpu.pods.items()} == pytest.approx({"late-0": 0.4})


def test_no_host_pid_one_clear_line_zero_visible_no_pod_numbers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = _world(tmp_path, host_pid=False)
    _three_pods(w)  # the container's own /proc even happens to hold entries with those PIDs
    with caplog.at_level(logging.INFO, logger="test.pods"):
        for _ in range(3):
            snap = w.reader.cycle()
            w.clock.tick()
    assert snap.visible == 0 and not snap.host_pid
    assert snap.results == {"no_host_pid": 3}
    gpu = snap.gpus[0]
    assert gpu.pods == {}
    assert gpu.unattributed[SM] == pytest.approx(0.9)
    lines = [r.getMessage() for r in caplog.records if "hostPID" in r.getMessage()]
    assert len(lines) == 1 and "hostPID: true" in lines[0]


def test_no_newer_sample_holds_then_reads_idle(tmp_path: Path) -> None:
    w = _world(tmp_path)
    _three_pods(w)
    w.reader.cycle()
    w.clock.tick(0.01)  # inside the same driver sample period: NotFound, the last samples still hold
    assert {o.pod: v[SM] for o, v in w.reader.cycle().gpus[0].pods.items()} == pytest.approx({"a-0": 0.1, "b-0": 0.3, "c-0": 0.5})
    w.nv.set_processes(0, [])  # the driver's default workload: an idle GPU lists nothing
    w.nv.set_process_utilization(0, None)
    w.nv.set_load(0, 0.0)
    w.clock.tick(5)
    gpu = w.reader.cycle().gpus[0]
    assert gpu.pods == {} and gpu.unattributed[SM] == 0.0


def test_unsupported_and_failing_calls_leave_their_quantities_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = _world(tmp_path)
    _three_pods(w)
    w.nv.set_error("nvmlDeviceGetProcessUtilization", pynvml.NVML_ERROR_NOT_SUPPORTED)
    w.nv.set_error("nvmlDeviceGetComputeRunningProcesses", pynvml.NVML_ERROR_UNKNOWN)
    with caplog.at_level(logging.INFO, logger="test.pods"):
        gpu = w.reader.cycle().gpus[0]
        w.clock.tick()
        w.reader.cycle()
    assert gpu.device == (None,) * 5
    assert sum("nvmlDeviceGetComputeRunningProcesses" in r.getMessage() for r in caplog.records) == 1
    assert list(collect(w.reader.snapshot))  # only self-metrics, and nothing raises


def test_lost_gpu_is_skipped_others_still_split(tmp_path: Path) -> None:
    w = _world(tmp_path, count=2)
    _three_pods(w)
    w.nv.lose_gpu(1)
    snap = w.reader.cycle()
    assert [g.index for g in snap.gpus] == [0]


def test_collector_exposition_passes_promtool(tmp_path: Path, promtool: str) -> None:
    w = _world(tmp_path)
    _three_pods(w)
    w.tree.process(104, HOST_PROCESS_CGROUP)
    w.nv.add_processes(0, [(104, GIB)], kind="graphics")
    text, _ = Renderer().render(f for f in collect(w.reader.cycle()) if f.samples)
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    sm = {s.labels["pod"]: s.value for s in families["gpulens_pod_gpu_sm_utilization_ratio"].samples}
    assert sm == pytest.approx({"a-0": 0.1, "b-0": 0.3, "c-0": 0.5})
    assert families["gpulens_gpu_unattributed_memory_used_bytes"].samples[0].value == GIB
    assert families["gpulens_pod_attribution_processes_visible"].samples[0].value == 4
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_process_lists_are_reread_when_memory_or_the_process_set_moves(tmp_path: Path) -> None:
    w = _world(tmp_path)
    _three_pods(w)
    calls = w.nv.calls
    w.reader.cycle()
    read = calls["nvmlDeviceGetComputeRunningProcesses"]
    w.clock.tick()
    w.reader.cycle()
    assert calls["nvmlDeviceGetComputeRunningProcesses"] == read  # steady state: memory unchanged, same PIDs
    w.nv.set_processes(0, [(101, 3 * GIB), (102, 4 * GIB), (103, 6 * GIB)])  # 101 allocates: the device's memory moves
    w.clock.tick()
    gpu = w.reader.cycle().gpus[0]
    assert calls["nvmlDeviceGetComputeRunningProcesses"] == read + 1
    assert gpu.pods[Owner("models", "a-0", "main")][MEMORY_USED] == 3 * GIB
    w.place(104, "d-0")  # a new process whose memory is not counted yet (0 bytes): its utilization sample names it
    w.nv.set_processes(0, [(101, 3 * GIB), (102, 4 * GIB), (103, 6 * GIB), (104, 0)])
    w.nv.set_process_utilization(0, {101: 0.1, 102: 0.3, 103: 0.4, 104: 0.1})
    w.clock.tick()
    gpu = w.reader.cycle().gpus[0]
    assert calls["nvmlDeviceGetComputeRunningProcesses"] == read + 2
    assert gpu.pods[Owner("models", "d-0", "main")][SM] == pytest.approx(0.1)
    w.clock.tick(10)  # and at least every LISTS_MAX_AGE_SECONDS
    w.reader.cycle()
    assert calls["nvmlDeviceGetComputeRunningProcesses"] == read + 3


def test_a_failing_split_never_stops_sampling_and_shows_as_collector_failure(tmp_path: Path) -> None:
    from gpulens.exporters.gpu.app import GpuExporter
    from gpulens.exporters.gpu.config import GpuExporterConfig
    from gpulens.exporters.pods.collector import PodUsage

    clock = Clock()
    nv = SimulatedNVML(count=1, clock=clock)
    tree = ProcTree(str(tmp_path / "proc"))
    exporter = GpuExporter(GpuExporterConfig(xid_events=False, pod_attribution=False), nv, "simulated", clock=clock)
    exporter.usage = PodUsage(nv, exporter.sampler.devices, 1.0, tree.root, Pods())
    exporter.sampler.cycle()
    assert 'gpulens_collector_success{collector="pod_usage"} 1.0' in exporter.render(False).decode()

    def broken(readings: object = None) -> None:
        raise ZeroDivisionError("a bug in the split")

    exporter.usage.reader.cycle = broken  # type: ignore[method-assign]
    clock.tick()
    snapshot = exporter.sampler.cycle()  # the hook swallowed it: the sampler published its snapshot
    assert exporter.sampler.snapshot is snapshot and snapshot.nvml_up
    text = exporter.render(False).decode()
    assert 'gpulens_collector_success{collector="pod_usage"} 0.0' in text
    assert "gpulens_gpu_utilization_ratio{" in text  # the other collectors still export
