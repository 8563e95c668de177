"""Discovery: parsing real-shaped objects, list+watch through the real client against the stand-in, faults."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from gpulens.config import ConfigError
from gpulens.exporters.kserve.discovery import (
    KubeDiscovery,
    ProbeTarget,
    list_probe_targets,
    parse_inference_service,
    parse_pod,
    parse_targets,
)
from gpulens.loop import Backoff
from gpulens.sim.inferenceservices import BASE_TIME, fixtures, inference_service, predictor_pod
from gpulens.sim.kubeapi import KubeAPI
from tests.tools import wait_until


def test_parse_fixtures() -> None:
    f = fixtures()
    serverless = parse_inference_service(f["serverless"][0])
    assert (serverless.namespace, serverless.name, serverless.ready) == ("models", "sklearn-iris", True)
    assert serverless.deployment_mode == "Serverless" and serverless.protocol == "v2" and serverless.server == "kserve"
    assert serverless.address_url == "http://sklearn-iris.models.svc.cluster.local"
    assert {c.type for c in serverless.conditions} >= {"Ready", "PredictorReady", "IngressReady", "LatestDeploymentReady"}
    raw = parse_inference_service(f["raw"][0])
    assert raw.deployment_mode == "RawDeployment" and raw.server == "triton" and raw.traffic == ()
    canary = parse_inference_service(f["canary"][0])
    assert [(t.revision, t.percent, t.latest) for t in canary.traffic] == [
        ("llama-predictor-00001", 90.0, False), ("llama-predictor-00002", 10.0, True)]
    assert canary.server == "vllm"
    failed = parse_inference_service(f["failed"][0])
    assert failed.ready is False and failed.failed_copies == 1 and failed.transition_status == "BlockedByFailedLoad"
    assert failed.revisions == (("predictor", "resnet-predictor-00002", "resnet-predictor-00001"),)


def test_parse_survives_missing_status() -> None:
    isvc = parse_inference_service({"metadata": {"name": "new", "namespace": "ns"}, "spec": {}})
    assert isvc.ready is None and isvc.conditions == () and isvc.url == "" and isvc.failed_copies is None
    pod = parse_pod({"metadata": {"name": "p", "namespace": "ns"}})
    assert pod.ip == "" and not pod.ready and pod.metrics_port == 8080 and pod.created is None


def test_parse_pod_timings_and_ports() -> None:
    pod = parse_pod(predictor_pod("a", metrics_port=9000, metrics_path="/x/metrics"))
    assert pod.metrics_port == 9000 and pod.metrics_path == "/x/metrics" and pod.http_port == 8080
    assert pod.queue_proxy and pod.ready and pod.inferenceservice == "a"
    assert (pod.created, pod.scheduled, pod.initialized, pod.started, pod.ready_at) == (
        BASE_TIME, BASE_TIME + 2, BASE_TIME + 20, BASE_TIME + 45, BASE_TIME + 75)
    crash = parse_pod(predictor_pod("a", crash_loop=True, serverless=False))
    assert crash.crash_looping and not crash.ready and not crash.queue_proxy


def _discovery(client: Any, **kw: Any) -> KubeDiscovery:
    kw.setdefault("resync_seconds", 30.0)
    kw.setdefault("timeout_seconds", 2.0)
    return KubeDiscovery(client, backoff=Backoff(base=0.1, cap=0.3), watch_grace=0.5, **kw)


def _names(d: KubeDiscovery) -> set[str]:
    return {i.name for i in d.snapshot()[0]}


def _load(api: KubeAPI) -> None:
    for isvc, pods in fixtures().values():
        api.add(isvc)
        for pod in pods:
            api.add(pod)


def test_lists_then_follows_the_watch(kubeapi: KubeAPI, client: Any) -> None:
    _load(kubeapi)
    d = _discovery(client).start()
    try:
        wait_until(lambda: _names(d) == {"sklearn-iris", "bert", "llama", "resnet"}, what="initial list")
        assert len(d.snapshot()[1]) == 7
        kubeapi.add(inference_service("new"))
        kubeapi.delete("InferenceService", "models", "bert")
        wait_until(lambda: _names(d) == {"sklearn-iris", "llama", "resnet", "new"}, what="watch events")
        assert d.relists() == {("inferenceservices", "initial"): 1, ("pods", "initial"): 1}  # no relist needed
        assert d.health()["inferenceservices"][0] is True
    finally:
        d.stop()


def test_namespaces_and_label_selector(kubeapi: KubeAPI, client: Any) -> None:
    kubeapi.add(inference_service("a", namespace="team-a", labels={"tier": "gold"}))
    kubeapi.add(inference_service("b", namespace="team-a"))
    kubeapi.add(inference_service("c", namespace="team-c", labels={"tier": "gold"}))
    d = _discovery(client, namespaces=("team-a", "team-b"), label_selector="tier=gold").start()
    try:
        wait_until(lambda: _names(d) == {"a"} and all(r.listed for r in d.isvcs), what="filtered lists of both namespaces")
        assert {(r.verb, r.namespace) for r in kubeapi.requests if r.resource == "inferenceservices"} >= {
            ("list", "team-a"), ("list", "team-b")}
    finally:
        d.stop()


def test_410_mid_watch_relists(kubeapi: KubeAPI, client: Any) -> None:
    kubeapi.add(inference_service("a"))
    d = _discovery(client).start()
    try:
        wait_until(lambda: _names(d) == {"a"})
        kubeapi.expire()
        kubeapi.add(inference_service("b"))
        wait_until(lambda: d.relists().get(("inferenceservices", "expired"), 0) >= 1, what="relist after 410")
        wait_until(lambda: _names(d) == {"a", "b"})
        assert d.health()["inferenceservices"][0] is True
    finally:
        d.stop()


def test_silent_watch_is_caught_by_the_resync(kubeapi: KubeAPI, client: Any) -> None:
    kubeapi.add(inference_service("a"))
    d = _discovery(client, resync_seconds=2.0).start()
    try:
        wait_until(lambda: _names(d) == {"a"})
        kubeapi.silence()
        kubeapi.add(inference_service("b"))  # the open watch never delivers this
        time.sleep(0.3)
        assert _names(d) == {"a"}
        kubeapi.silence(False)
        wait_until(lambda: _names(d) == {"a", "b"}, what="relist after a silent watch")
        reasons = {reason for (resource, reason) in d.relists() if resource == "inferenceservices"}
        assert reasons & {"silent", "resync"}
    finally:
        d.stop()


def test_api_down_keeps_the_last_state_and_recovers(kubeapi: KubeAPI, client: Any) -> None:
    kubeapi.add(inference_service("a"))
    d = _discovery(client).start()
    try:
        wait_until(lambda: _names(d) == {"a"})
        listed_at = d.health()["inferenceservices"][1]
        kubeapi.down()
        wait_until(lambda: d.health()["inferenceservices"][0] is False, what="up 0 while down")
        assert _names(d) == {"a"}  # last known state is still there
        assert d.health()["inferenceservices"][1] == listed_at or d.health()["inferenceservices"][1] is not None
        kubeapi.up()
        kubeapi.add(inference_service("b"))
        wait_until(lambda: _names(d) == {"a", "b"} and d.health()["inferenceservices"][0], what="recovery")
    finally:
        d.stop()


def test_slow_api_times_out_and_keeps_state(kubeapi: KubeAPI, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    kubeapi.add(inference_service("a"))
    d = _discovery(client, timeout_seconds=0.5, resync_seconds=1.0)  # the step's watch ends at once
    r = d.isvcs[0]
    r.loop.run_once()  # list ok, then watch until… stop it quickly: resync deadline reached at once
    assert _names(d) == {"a"}
    kubeapi.delay(2.0)  # the "10 s" API, scaled down: slower than the 0.5 s timeout
    with caplog.at_level(logging.ERROR):
        assert r.loop.run_once() is False
        assert r.loop.run_once() is False
    assert "KubeUnavailable" in r.loop.last_error and "timed out" in r.loop.last_error.lower()
    assert len([rec for rec in caplog.records if "KubeUnavailable" in rec.getMessage()]) == 1  # logged once
    assert _names(d) == {"a"} and r.state.up is False
    kubeapi.delay(0)


def test_403_names_the_missing_verb_and_resource_once(kubeapi: KubeAPI, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    kubeapi.forbid("pods", verbs=("list",))
    d = _discovery(client)
    r = d.pods[0]
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert r.loop.run_once() is False
    messages = [rec.getMessage() for rec in caplog.records if "KubeForbidden" in rec.getMessage()]
    assert len(messages) == 1
    assert "may not list pods at the cluster scope" in messages[0]
    assert 'cannot list resource "pods"' in messages[0]


def test_500_then_recovery(kubeapi: KubeAPI, client: Any) -> None:
    kubeapi.add(inference_service("a"))
    kubeapi.fail(500, count=2)
    d = _discovery(client).start()
    try:
        wait_until(lambda: _names(d) == {"a"}, what="list after two 500s")
        wait_until(lambda: len(d.snapshot()[1]) == 0 and d.health()["pods"][0], what="pods listed")
        # each reflector got one of the two 500s; its successful list is counted as a relist after an error
        assert d.relists() == {("inferenceservices", "error"): 1, ("pods", "error"): 1}
    finally:
        d.stop()


def test_probe_targets_without_threads(kubeapi: KubeAPI, kubeconfig: str) -> None:
    import threading

    _load(kubeapi)
    targets = list_probe_targets(kubeconfig=kubeconfig, namespaces=("models",))
    assert not [t.name for t in threading.enumerate() if t.name.startswith("gpulens-")]  # no loop was started
    assert ProbeTarget("models", "sklearn-iris", "sklearn-iris", "http://sklearn-iris.models.svc.cluster.local", "v2") in targets
    assert {t.inferenceservice for t in targets} == {"sklearn-iris", "bert", "llama", "resnet"}


@pytest.mark.parametrize(("targets", "message"), [
    ([{"name": "a", "namespace": "ns", "url": "http://h:1", "server": "onnx"}],
     "targets: targets[0]: unknown server kind 'onnx' (allowed: kserve, triton, torchserve, vllm)"),
    ([{"name": "a", "namespace": "ns", "url": "localhost:8080"}],
     "targets: targets[0]: url: 'localhost:8080' is not an http(s) URL with a host"),
    ([{"name": "a", "url": "http://h:1"}], "targets: targets[0]: missing 'namespace'"),
    ([{"name": "a", "namespace": "ns", "url": "http://h:1", "protocol": "v3"}],
     "targets: targets[0]: unknown protocol 'v3' (allowed: v1, v2)"),
    ([{"name": "a", "namespace": "ns", "url": "http://h:99999"}], "targets: targets[0]: url: 'http://h:99999' has a bad port"),
    ([], "targets: expected a non-empty list of targets (name, namespace, url, protocol, server, metrics_url)"),
])
def test_bad_static_targets(targets: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_targets(targets)
    assert err.value.problems == [message]


def test_static_targets() -> None:
    [t] = parse_targets({"targets": [{"name": "demo", "namespace": "local", "url": "http://127.0.0.1:8080/",
                                      "protocol": "v1", "models": ["classifier", "slow"]}]})
    assert t.metrics_url == "http://127.0.0.1:8080/metrics" and t.server == "kserve" and t.models == ("classifier", "slow")


def test_lists_page_by_page(kubeapi: KubeAPI, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpulens.exporters.kserve import discovery

    for i in range(5):
        kubeapi.add(inference_service(f"m{i}"))
    monkeypatch.setattr(discovery, "PAGE_SIZE", 2)
    monkeypatch.setattr(discovery._list_pages, "__defaults__", (2,))
    d = _discovery(client)
    d.isvcs[0].relist()
    assert _names(d) == {f"m{i}" for i in range(5)}
    pages = [r for r in kubeapi.requests if r.resource == "inferenceservices"]
    assert [r.query.get("limit") for r in pages] == ["2", "2", "2"] and "continue" in pages[1].query
