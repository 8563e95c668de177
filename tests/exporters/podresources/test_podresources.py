"""Pod attribution against a real gRPC PodResources server (the stand-in kubelet) on a unix socket."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from gpulens.exporters.podresources.client import Allocation, PodResourcesWatcher
from gpulens.sim.kubelet import FakeKubelet, PodSpec

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(str(tmp_path / "kubelet.sock")).start()
    yield fake
    fake.stop()


def _watcher(kubelet: FakeKubelet, **kwargs: object) -> tuple[PodResourcesWatcher, CollectorRegistry]:
    clock = itertools.count(1000)  # each successful refresh reads a new, predictable timestamp
    watcher = PodResourcesWatcher(kubelet.socket_path, clock=lambda: float(next(clock)), **kwargs)
    registry = CollectorRegistry()
    registry.register(watcher)
    return watcher, registry


def _alloc(pod: str, container: str = "kserve-container", resource: str = GPU) -> Allocation:
    return Allocation("models", pod, container, resource)


def _errors(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("gpulens_podresources_refresh_errors_total", {"reason": reason})


def test_gpu_mig_and_time_sliced_devices_are_mapped_and_others_ignored(kubelet: FakeKubelet) -> None:
    kubelet.set_pods([
        PodSpec("models", "whole", [("kserve-container", GPU, ["GPU-aaa"])]),
        PodSpec("models", "small", [("kserve-container", MIG, ["MIG-bbb"])]),
        # time-slicing: one id per replica; t2 holds two replicas of GPU-ccc but is listed once
        PodSpec("models", "t2", [("kserve-container", GPU, ["GPU-ccc::0", "GPU-ccc::3"])]),
        PodSpec("models", "t1", [("kserve-container", GPU, ["GPU-ccc::1"]),
                                 ("sidecar", "nvidia.com/gpu.shared", ["GPU-ccc::2"])]),
        PodSpec("infra", "fpga", [("main", "example.com/fpga", ["fpga0"]), ("main", "cpu", ["0"])]),
        PodSpec("kube-system", "coredns"),
    ])
    watcher, registry = _watcher(kubelet)
    assert watcher.refresh()
    assert dict(watcher.mapping()) == {
        "GPU-aaa": (_alloc("whole"),),
        "GPU-ccc": (_alloc("t1"), _alloc("t1", "sidecar", "nvidia.com/gpu.shared"), _alloc("t2")),
        "MIG-bbb": (_alloc("small", resource=MIG),),
    }
    assert registry.get_sample_value("gpulens_podresources_up") == 1
    assert registry.get_sample_value("gpulens_podresources_pods") == 4
    assert registry.get_sample_value("gpulens_podresources_last_success_timestamp_seconds") == 1000
    assert registry.get_sample_value("gpulens_podresources_refresh_duration_seconds") > 0


def test_reply_over_grpcs_4_mib_default_is_received(kubelet: FakeKubelet) -> None:
    containers = [(f"worker-{c}-" + "c" * 50, GPU, [f"GPU-{c:08x}-0000-0000-0000-000000000000"])
                  for c in range(6)]
    kubelet.set_pods(PodSpec("inference-" + "n" * 40, f"{i:05d}-" + "p" * 240, containers)
                     for i in range(5000))
    assert kubelet.reply().ByteSize() > 4 * 1024 * 1024
    watcher, _ = _watcher(kubelet)
    assert watcher.refresh()
    assert len(watcher.mapping()["GPU-00000000-0000-0000-0000-000000000000"]) == 5000

    default_limit, registry = _watcher(kubelet, max_message_bytes=4 * 1024 * 1024)
    assert not default_limit.refresh()  # the limit is why max_message_bytes exists
    assert _errors(registry, "resource_exhausted") == 1


def test_kubelet_gone_keeps_last_mapping_and_logs_once_then_recovers(
        kubelet: FakeKubelet, caplog: pytest.LogCaptureFixture) -> None:
    kubelet.set_pods([PodSpec("models", "a", [("c", GPU, ["GPU-aaa"])])])
    watcher, registry = _watcher(kubelet)
    assert watcher.refresh()
    good = watcher.mapping()

    kubelet.stop()  # removes the socket, as when the kubelet restarts
    with caplog.at_level(logging.ERROR):
        assert not watcher.refresh()
        assert not watcher.refresh()
    assert watcher.mapping() is good
    assert registry.get_sample_value("gpulens_podresources_up") == 0
    assert _errors(registry, "unavailable") == 2
    assert registry.get_sample_value("gpulens_podresources_last_success_timestamp_seconds") == 1000
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # on state change only

    kubelet.start()
    assert watcher.refresh()
    assert registry.get_sample_value("gpulens_podresources_up") == 1
    assert registry.get_sample_value("gpulens_podresources_last_success_timestamp_seconds") == 1001


def test_slow_kubelet_hits_the_deadline_and_keeps_the_mapping(kubelet: FakeKubelet) -> None:
    kubelet.set_pods([PodSpec("models", "a", [("c", GPU, ["GPU-aaa"])])])
    watcher, registry = _watcher(kubelet, timeout=0.1)
    assert watcher.refresh()
    good = watcher.mapping()
    kubelet.set_delay(0.5)
    assert not watcher.refresh()
    assert watcher.mapping() is good
    assert _errors(registry, "deadline_exceeded") == 1


def test_unchanged_content_keeps_the_same_object_and_deleted_pods_disappear(kubelet: FakeKubelet) -> None:
    kubelet.set_pods([PodSpec("models", "a", [("c", GPU, ["GPU-aaa"])]),
                      PodSpec("models", "b", [("c", GPU, ["GPU-bbb"])])])
    watcher, registry = _watcher(kubelet)
    assert watcher.refresh()
    first = watcher.mapping()
    assert watcher.refresh()
    assert watcher.mapping() is first

    kubelet.set_pods([PodSpec("models", "a", [("c", GPU, ["GPU-aaa"])])])
    assert watcher.refresh()
    assert dict(watcher.mapping()) == {"GPU-aaa": (_alloc("a", "c"),)}
    assert registry.get_sample_value("gpulens_podresources_pods") == 1


def test_background_thread_refreshes_backs_off_and_stops_promptly(kubelet: FakeKubelet) -> None:
    kubelet.set_pods([PodSpec("models", "a", [("c", GPU, ["GPU-aaa"])])])
    watcher, _ = _watcher(kubelet, interval=0.05)
    watcher.start()
    deadline = time.monotonic() + 5
    while kubelet.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kubelet.calls >= 3
    assert "GPU-aaa" in watcher.mapping()

    kubelet.set_error(grpc.StatusCode.PERMISSION_DENIED)
    before = kubelet.calls
    time.sleep(0.6)  # retries after 0.05, 0.1, 0.2, 0.4 s: ~4 calls, not the ~12 of a fixed interval
    assert kubelet.calls - before <= 6
    assert "GPU-aaa" in watcher.mapping()

    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 1.0
    assert not any(thread.name == "podresources" for thread in threading.enumerate())
