"""The node's pods by UID through the real kubernetes client against the API stand-in: list, watch, faults."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpulens.exporters.pods.podindex import PodIndex, parse_pod
from gpulens.exporters.pods.procfs import ProcFS
from gpulens.exporters.pods.usage import SM, Resolver, UsageReader
from gpulens.loop import Backoff
from gpulens.sim import SimulatedNVML
from gpulens.sim.kubeapi import KubeAPI
from gpulens.sim.sharedgpu import LAYOUTS, ProcTree, container_id, gpu_pod, pod_uid
from tests.tools import wait_until

NODE = "gpu-node-1"


def _pod(name: str, node: str = NODE, containers: tuple[str, ...] = ("main",)) -> dict[str, Any]:
    return gpu_pod(name, "models", pod_uid(name), node, [(c, "containerd", container_id(f"{name}/{c}")) for c in containers])


@pytest.fixture
def index(client: Any) -> Iterator[PodIndex]:
    idx = PodIndex(client, NODE, resync_seconds=30.0, timeout_seconds=2.0, backoff=Backoff(base=0.1, cap=0.3), watch_grace=0.5)
    yield idx
    idx.stop()


def test_parse_pod_maps_every_container_id() -> None:
    pod = _pod("p-0", containers=("main", "sidecar"))
    pod["status"]["initContainerStatuses"] = [{"name": "init", "containerID": "cri-o://" + "a" * 64}]
    pod["status"]["ephemeralContainerStatuses"] = [{"name": "debugger", "containerID": "docker://" + "b" * 64}]
    pod["status"]["containerStatuses"].append({"name": "waiting", "state": {"waiting": {}}})  # no ID yet: skipped
    ref = parse_pod(pod)
    assert (ref.namespace, ref.name, ref.uid) == ("models", "p-0", pod_uid("p-0"))
    assert ref.containers == {container_id("p-0/main"): "main", container_id("p-0/sidecar"): "sidecar",
                              "a" * 64: "init", "b" * 64: "debugger"}


def test_lists_and_watches_only_this_nodes_pods(kubeapi: KubeAPI, index: PodIndex) -> None:
    kubeapi.add(_pod("here-0"))
    kubeapi.add(_pod("elsewhere-0", node="gpu-node-2"))
    index.start()
    wait_until(lambda: index.lookup(pod_uid("here-0")), what="listed pod")
    assert index.lookup(pod_uid("elsewhere-0")) is None
    assert all(r.query.get("fieldSelector") == f"spec.nodeName={NODE}" for r in kubeapi.requests if r.resource == "pods")
    kubeapi.add(_pod("new-0"))  # arrives through the watch
    pod = wait_until(lambda: index.lookup(pod_uid("new-0")), what="watched pod")
    assert pod.containers == {container_id("new-0/main"): "main"}
    kubeapi.delete("Pod", "models", "here-0")
    wait_until(lambda: index.lookup(pod_uid("here-0")) is None, what="deleted pod gone")
    assert index.up


def test_static_pod_resolves_through_its_mirror_annotation(kubeapi: KubeAPI, index: PodIndex) -> None:
    mirror = _pod("static-0")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "3e1b1d9c4f6a7b8c9d0e1f2a3b4c5d6e"}
    kubeapi.add(mirror)
    index.start()
    assert wait_until(lambda: index.lookup("3e1b1d9c4f6a7b8c9d0e1f2a3b4c5d6e"), what="mirror pod").name == "static-0"


def test_api_down_degrades_to_unattributed_then_recovers(kubeapi: KubeAPI, index: PodIndex, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """API down from the start: every pod process unattributed (logged once); up again: attributed."""
    nv = SimulatedNVML(count=1)
    nv.nvmlInit()
    handle = nv.nvmlDeviceGetHandleByIndex(0)
    tree = ProcTree(str(tmp_path / "proc"))
    kubeapi.add(_pod("a-0"))
    tree.process(101, LAYOUTS[0].text(pod_uid("a-0"), container_id("a-0/main")))
    nv.set_processes(0, [(101, 1 << 30)])
    nv.set_process_utilization(0, {101: 0.4})
    log = logging.getLogger("test.pods.api")
    reader = UsageReader(nv, lambda: [(0, "GPU-x", handle)], Resolver(ProcFS(tree.root), index, log), log, hold_seconds=60)
    kubeapi.down()
    index.start()
    with caplog.at_level(logging.INFO, logger="test.pods.api"):
        wait_until(lambda: index.loop.failures >= 2, what="list failures")
        for _ in range(3):
            snap = reader.cycle()
    assert snap.results == {"unknown_pod": 1} and snap.api_up is False
    assert snap.gpus[0].unattributed[SM] == pytest.approx(0.4)
    assert sum("Kubernetes API is unreachable" in r.getMessage() for r in caplog.records) == 1
    kubeapi.up()
    wait_until(lambda: index.lookup(pod_uid("a-0")), what="relisted after the API came back")
    snap = reader.cycle()
    assert snap.results == {"pod": 1} and snap.api_up is True
    kubeapi.down()  # down again after a list: known pods keep resolving (a UID never changes owner)
    wait_until(lambda: not index.up, what="watch failure noticed")
    assert reader.cycle().results == {"pod": 1}


def test_forbidden_is_an_rbac_message(kubeapi: KubeAPI, index: PodIndex, caplog: pytest.LogCaptureFixture) -> None:
    kubeapi.forbid("pods")
    with caplog.at_level(logging.ERROR):
        index.start()
        wait_until(lambda: index.loop.failures >= 1, what="forbidden list")
    assert not index.up
    assert any("RBAC" in r.getMessage() and "list" in r.getMessage() for r in caplog.records)
