"""The Kubernetes API stand-in, driven only through the real `kubernetes` client."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from gpulens.sim.inferenceservices import fixtures, inference_service, predictor_pod
from gpulens.sim.kubeapi import KubeAPI

G, V, P = "serving.kserve.io", "v1beta1", "inferenceservices"


def _load(api: KubeAPI) -> None:
    for isvc, pods in fixtures().values():
        api.add(isvc)
        for pod in pods:
            api.add(pod)


def test_lists_inferenceservices_cluster_wide_and_per_namespace(kubeapi: KubeAPI, client) -> None:
    _load(kubeapi)
    kubeapi.add(inference_service("other", namespace="team-b"))
    custom = k8s.CustomObjectsApi(client)
    everything = custom.list_cluster_custom_object(G, V, P)
    assert everything["kind"] == "InferenceServiceList"
    assert int(everything["metadata"]["resourceVersion"]) > 1000
    assert sorted(i["metadata"]["name"] for i in everything["items"]) == ["bert", "llama", "other", "resnet", "sklearn-iris"]
    one = custom.list_namespaced_custom_object(G, V, "team-b", P)
    assert [i["metadata"]["name"] for i in one["items"]] == ["other"]
    item = custom.list_namespaced_custom_object(G, V, "models", P, label_selector="")["items"][0]
    assert item["apiVersion"] == "serving.kserve.io/v1beta1" and item["metadata"]["uid"]


def test_pods_with_label_and_field_selectors_as_typed_models(kubeapi: KubeAPI, client) -> None:
    _load(kubeapi)
    kubeapi.add(predictor_pod("sklearn-iris", index=7, node="gpu-node-2"))
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "coredns", "namespace": "kube-system"},
             "spec": {"nodeName": "gpu-node-2", "containers": []}, "status": {"phase": "Running"}}
    kubeapi.add(plain)
    core = k8s.CoreV1Api(client)
    labelled = core.list_pod_for_all_namespaces(label_selector="serving.kserve.io/inferenceservice")
    assert isinstance(labelled, k8s.V1PodList)
    assert len(labelled.items) == 8 and all(p.metadata.labels for p in labelled.items)
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=gpu-node-2")
    assert sorted(p.metadata.name for p in on_node.items) == sorted(["coredns", predictor_pod("sklearn-iris", index=7)["metadata"]["name"]])
    both = core.list_namespaced_pod("models", label_selector="serving.kserve.io/inferenceservice in (bert,llama),component=predictor",
                                    field_selector="spec.nodeName!=gpu-node-2")
    assert sorted(p.metadata.labels["serving.kserve.io/inferenceservice"] for p in both.items) == ["bert", "bert", "llama", "llama"]
    with pytest.raises(ApiException) as err:
        core.list_pod_for_all_namespaces(field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_watch_streams_changes_from_a_resource_version(kubeapi: KubeAPI, client) -> None:
    custom = k8s.CustomObjectsApi(client)
    kubeapi.add(inference_service("a"))
    rv = custom.list_cluster_custom_object(G, V, P)["metadata"]["resourceVersion"]
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume() -> None:
        for e in w.stream(custom.list_cluster_custom_object, G, V, P, resource_version=rv, timeout_seconds=10):
            events.append((e["type"], e["object"]["metadata"]["name"]))
            if len(events) == 3:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    kubeapi.add(inference_service("b"))
    modified = inference_service("a", ready=False)
    kubeapi.modify(modified)
    kubeapi.delete("InferenceService", "models", "b")
    t.join(10)
    assert events == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_without_resource_version_starts_with_the_current_state(kubeapi: KubeAPI, client) -> None:
    _load(kubeapi)
    core = k8s.CoreV1Api(client)
    names = [e["object"].metadata.name for e in watch.Watch().stream(core.list_pod_for_all_namespaces, timeout_seconds=1)]
    assert len(names) == 7


def test_a_watch_ends_after_timeout_seconds(kubeapi: KubeAPI, client) -> None:
    custom = k8s.CustomObjectsApi(client)
    rv = kubeapi.resource_version
    assert list(watch.Watch().stream(custom.list_cluster_custom_object, G, V, P, resource_version=rv, timeout_seconds=1)) == []


def test_too_old_resource_version_is_410_gone(kubeapi: KubeAPI, client) -> None:
    custom = k8s.CustomObjectsApi(client)
    old = kubeapi.resource_version
    kubeapi.add(inference_service("a"))
    kubeapi.expire()
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(custom.list_cluster_custom_object, G, V, P, resource_version=old, timeout_seconds=5))
    assert err.value.status == 410 and "Expired" in str(err.value.reason)


def test_410_mid_watch(kubeapi: KubeAPI, client) -> None:
    custom = k8s.CustomObjectsApi(client)
    rv = kubeapi.resource_version
    seen: list[str] = []
    errors: list[ApiException] = []

    def consume() -> None:
        try:
            for e in watch.Watch().stream(custom.list_cluster_custom_object, G, V, P, resource_version=rv, timeout_seconds=20):
                seen.append(e["type"])
        except ApiException as err:
            errors.append(err)

    t = threading.Thread(target=consume)
    t.start()
    kubeapi.add(inference_service("a"))
    while not seen:
        t.join(0.05)
    kubeapi.expire()
    t.join(10)
    assert seen == ["ADDED"] and [e.status for e in errors] == [410]


def test_selector_changes_turn_into_added_and_deleted(kubeapi: KubeAPI, client) -> None:
    core = k8s.CoreV1Api(client)
    pod = predictor_pod("a")
    kubeapi.add(pod)
    rv = kubeapi.resource_version
    got: list[str] = []
    w = watch.Watch()

    def consume() -> None:
        for e in w.stream(core.list_pod_for_all_namespaces, label_selector="team=x", resource_version=rv, timeout_seconds=10):
            got.append(e["type"])
            if len(got) == 2:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    pod["metadata"]["labels"]["team"] = "x"
    kubeapi.modify(pod)
    pod["metadata"]["labels"]["team"] = "y"
    kubeapi.modify(pod)
    t.join(10)
    assert got == ["ADDED", "DELETED"]


def test_errors_are_status_bodies(kubeapi: KubeAPI, client) -> None:
    custom = k8s.CustomObjectsApi(client)
    kubeapi.fail(500, count=1)
    with pytest.raises(ApiException) as err:
        custom.list_cluster_custom_object(G, V, P)
    assert err.value.status == 500 and '"kind": "Status"' in err.value.body
    assert custom.list_cluster_custom_object(G, V, P)["items"] == []  # only the next request failed
    kubeapi.forbid("inferenceservices", verbs=("list",))
    with pytest.raises(ApiException) as err:
        custom.list_cluster_custom_object(G, V, P)
    assert err.value.status == 403
    assert 'cannot list resource \\"inferenceservices\\" in API group \\"serving.kserve.io\\" at the cluster scope' in err.value.body
    kubeapi.allow("inferenceservices")
    custom.list_cluster_custom_object(G, V, P)


def test_slow_and_down(kubeapi: KubeAPI, client) -> None:
    from urllib3.exceptions import HTTPError, ReadTimeoutError

    custom = k8s.CustomObjectsApi(client)
    kubeapi.delay(1.0)
    with pytest.raises(ReadTimeoutError):
        custom.list_cluster_custom_object(G, V, P, _request_timeout=0.2)
    kubeapi.delay(0)
    kubeapi.down()
    with pytest.raises(HTTPError):  # api_client() turns urllib3 retries off: the caller's loop retries
        custom.list_cluster_custom_object(G, V, P, _request_timeout=1)
    kubeapi.up()
    assert custom.list_cluster_custom_object(G, V, P)["items"] == []


def test_silenced_watch_delivers_nothing_and_stays_open(kubeapi: KubeAPI, client) -> None:
    from urllib3.exceptions import ReadTimeoutError

    custom = k8s.CustomObjectsApi(client)
    kubeapi.silence()
    rv = kubeapi.resource_version
    kubeapi.add(inference_service("a"))
    with pytest.raises(ReadTimeoutError):
        list(watch.Watch().stream(custom.list_cluster_custom_object, G, V, P, resource_version=rv, timeout_seconds=1,
                                  _request_timeout=(1, 1.5)))
    kubeapi.silence(False)
    events = list(watch.Watch().stream(custom.list_cluster_custom_object, G, V, P, resource_version=rv, timeout_seconds=1))
    assert [e["type"] for e in events] == ["ADDED"]
    assert [r.verb for r in kubeapi.requests] == ["watch", "watch"]


def test_paginated_list(kubeapi: KubeAPI, client) -> None:
    for i in range(7):
        kubeapi.add(inference_service(f"m{i}"))
    custom = k8s.CustomObjectsApi(client)
    first = custom.list_cluster_custom_object(G, V, P, limit=3)
    assert len(first["items"]) == 3 and first["metadata"]["remainingItemCount"] == 4
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = custom.list_cluster_custom_object(G, V, P, limit=3, _continue=token)
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [f"m{i}" for i in range(7)]
    kubeapi.add(inference_service("later"))
    kubeapi.expire()  # compaction past the token's revision
    with pytest.raises(ApiException) as err:
        custom.list_cluster_custom_object(G, V, P, limit=3, _continue=first["metadata"]["continue"])
    assert err.value.status == 410
