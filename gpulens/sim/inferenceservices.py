"""Realistic InferenceService and predictor Pod objects, as the Kubernetes API returns them.

Shaped after what KServe 0.13–0.15 writes (status.conditions, components.predictor.traffic,
modelStatus.states/copies/transitionStatus) and what the kubelet writes for its pods (conditions,
containerStatuses, initContainerStatuses of the storage-initializer). The KubeAPI stand-in serves
them to tests, the benchmark and the local-stack demo; `FIXTURES` holds the named cases:

- `serverless`: a Knative (Serverless) predictor, Ready, one revision with 100 % traffic;
- `raw`: a RawDeployment (no Knative, no queue-proxy), Ready;
- `canary`: Serverless with canaryTrafficPercent 10 (90/10 split between two revisions);
- `failed`: a new revision whose model failed to load: Ready False, latestCreated ≠ latestReady,
  modelStatus BlockedByFailedLoad with one failed copy.
"""

from __future__ import annotations

import time
from typing import Any

Obj = dict[str, Any]
ISVC_LABEL = "serving.kserve.io/inferenceservice"
BASE_TIME = 1_764_000_000.0  # a fixed instant (2025-11-24) so fixtures are reproducible


def ts(epoch: float) -> str:
    """RFC 3339 UTC, second precision, as the API server writes timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _cond(type_: str, ok: bool | None, at: float, reason: str = "", message: str = "", severity: str = "") -> Obj:
    c: Obj = {"type": type_, "status": "Unknown" if ok is None else ("True" if ok else "False"), "lastTransitionTime": ts(at)}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    if severity:
        c["severity"] = severity
    return c


def inference_service(name: str, namespace: str = "models", mode: str = "Serverless", model_format: str = "pytorch",
                      runtime: str = "kserve-torchserve", protocol: str = "v1", ready: bool = True,
                      canary_percent: int | None = None, failed: bool = False, revision: int = 1,
                      at: float = BASE_TIME, labels: dict[str, str] | None = None,
                      annotations: dict[str, str] | None = None) -> Obj:
    """One InferenceService with a plausible status for the given deployment mode and health."""
    serverless = mode == "Serverless"
    domain = "example.com"
    predictor = f"{name}-predictor"
    latest = f"{predictor}-{revision:05d}"
    ready_rev = f"{predictor}-{revision - 1:05d}" if failed and revision > 1 else latest
    conditions = [
        _cond("IngressReady", True, at),
        _cond("PredictorReady", ready and not failed, at + 30,
              "" if ready and not failed else "RevisionFailed",
              "" if ready and not failed else f'Revision "{latest}" failed with message: model failed to load.'),
        _cond("Ready", ready and not failed, at + 30,
              "" if ready and not failed else "RevisionFailed"),
    ]
    if serverless:
        conditions += [
            _cond("LatestDeploymentReady", ready and not failed, at + 30, severity="Info"),
            _cond("PredictorConfigurationReady", ready and not failed, at + 30),
            _cond("PredictorRouteReady", True, at + 30),
            _cond("RoutesReady", True, at + 30, severity="Info"),
        ]
    component: Obj = {
        "latestCreatedRevision": latest if serverless else None,
        "url": f"http://{predictor}-{namespace}.{domain}" if not serverless else f"http://{predictor}.{namespace}.{domain}",
        "address": {"url": f"http://{predictor}.{namespace}.svc.cluster.local"},
    }
    if serverless:
        component["latestReadyRevision"] = ready_rev
        component["latestRolledoutRevision"] = ready_rev
        if canary_percent is not None and revision > 1:
            previous = f"{predictor}-{revision - 1:05d}"
            component["previousRolledoutRevision"] = previous
            component["traffic"] = [
                {"latestRevision": False, "percent": 100 - canary_percent, "revisionName": previous, "tag": "prev",
                 "url": f"http://prev-{predictor}.{namespace}.{domain}"},
                {"latestRevision": True, "percent": canary_percent, "revisionName": latest, "tag": "latest",
                 "url": f"http://latest-{predictor}.{namespace}.{domain}"},
            ]
        else:
            component["traffic"] = [{"latestRevision": True, "percent": 100, "revisionName": ready_rev}]
    else:
        component = {k: v for k, v in component.items() if v is not None}
    model_status: Obj = {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        "copies": {"failedCopies": 0, "totalCopies": 1},
    }
    if failed:
        model_status = {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "Failed to load model: unexpected EOF in model.pt",
                                "location": f"{latest}-deployment-6b7d9c-abcde"},
            "copies": {"failedCopies": 1, "totalCopies": 1},
        }
    elif not ready:
        model_status = {"transitionStatus": "InProgress", "states": {"activeModelState": "Pending", "targetModelState": "Loaded"},
                        "copies": {"failedCopies": 0, "totalCopies": 1}}
    spec_predictor: Obj = {
        "model": {"modelFormat": {"name": model_format}, "runtime": runtime, "protocolVersion": protocol,
                  "storageUri": f"gs://models/{name}/1", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
    }
    if canary_percent is not None:
        spec_predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name, "namespace": namespace, "generation": revision, "creationTimestamp": ts(at),
            "labels": dict(labels or {}),
            "annotations": {"serving.kserve.io/deploymentMode": mode, **(annotations or {})},
        },
        "spec": {"predictor": spec_predictor},
        "status": {
            "url": f"http://{name}.{namespace}.{domain}" if serverless else f"http://{name}-{namespace}.{domain}",
            "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
            "components": {"predictor": component},
            "conditions": conditions,
            "deploymentMode": mode,
            "modelStatus": model_status,
            "observedGeneration": revision,
        },
    }


def predictor_pod(isvc: str, namespace: str = "models", index: int = 0, serverless: bool = True, revision: int = 1,
                  ip: str = "10.0.0.10", metrics_port: int = 8080, metrics_path: str = "/metrics",
                  node: str = "gpu-node-1", created: float = BASE_TIME, scheduled_after: float = 2.0,
                  initialized_after: float = 20.0, started_after: float = 45.0, ready_after: float = 75.0,
                  ready: bool = True, crash_loop: bool = False, restarts: int = 0,
                  queue_proxy_port: int = 9091) -> Obj:
    """A predictor pod of `isvc`: storage-initializer, kserve-container (+ queue-proxy when serverless).

    The phase times (seconds after creation) feed the cold-start histogram: scheduled, storage
    initializer done (model downloaded), kserve-container started (image pulled), Ready (model loaded).
    """
    rev = f"{isvc}-predictor-{revision:05d}"
    name = f"{rev}-deployment-{index:04x}c9d8f-{index:05x}" if serverless else f"{isvc}-predictor-7d9f8c6b5-{index:05x}"
    labels = {ISVC_LABEL: isvc, "component": "predictor", "app": rev if serverless else f"isvc.{isvc}-predictor"}
    if serverless:
        labels.update({"serving.knative.dev/revision": rev, "serving.knative.dev/configuration": f"{isvc}-predictor",
                       "serving.knative.dev/service": f"{isvc}-predictor"})
    containers = [{"name": "kserve-container", "image": "kserve/torchserve:0.15.0",
                   "ports": [{"containerPort": 8080, "name": "user-port", "protocol": "TCP"}]}]
    if serverless:
        containers.append({"name": "queue-proxy", "image": "gcr.io/knative-releases/queue:v1.15",
                           "ports": [{"containerPort": 8022, "name": "http-queueadm"},
                                     {"containerPort": 9090, "name": "http-autometric"},
                                     {"containerPort": queue_proxy_port, "name": "http-usermetric"},
                                     {"containerPort": 8012, "name": "queue-port"}]})
    t_ready = created + ready_after
    running = {"running": {"startedAt": ts(created + started_after)}}
    if crash_loop:
        main_state: Obj = {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": "back-off 5m0s restarting failed container=kserve-container"}}
        restarts = max(restarts, 7)
    else:
        main_state = running
    is_ready = ready and not crash_loop
    statuses = [{"name": "kserve-container", "ready": is_ready, "restartCount": restarts, "started": not crash_loop,
                 "state": main_state, "image": containers[0]["image"], "imageID": "docker-pullable://kserve/torchserve@sha256:0"}]
    if serverless:
        statuses.append({"name": "queue-proxy", "ready": is_ready, "restartCount": 0, "started": True, "state": running,
                         "image": containers[1]["image"], "imageID": "docker-pullable://queue@sha256:0"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "labels": labels, "creationTimestamp": ts(created),
            "annotations": {"prometheus.kserve.io/port": str(metrics_port), "prometheus.kserve.io/path": metrics_path},
        },
        "spec": {"nodeName": node, "containers": containers,
                 "initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.15.0"}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "startTime": ts(created + scheduled_after),
            "conditions": [
                _cond("PodScheduled", True, created + scheduled_after),
                _cond("Initialized", True, created + initialized_after),
                _cond("ContainersReady", is_ready, t_ready if is_ready else created + started_after),
                _cond("Ready", is_ready, t_ready if is_ready else created + started_after),
            ],
            "initContainerStatuses": [{
                "name": "storage-initializer", "ready": True, "restartCount": 0, "started": False,
                "image": "kserve/storage-initializer:v0.15.0", "imageID": "docker-pullable://kserve/storage-initializer@sha256:0",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": ts(created + scheduled_after + 3),
                                         "finishedAt": ts(created + initialized_after)}},
            }],
            "containerStatuses": statuses,
        },
    }


def fixtures(namespace: str = "models") -> dict[str, tuple[Obj, list[Obj]]]:
    """The named cases (see the module docstring): name → (InferenceService, its pods)."""
    return {
        "serverless": (inference_service("sklearn-iris", namespace, model_format="sklearn", runtime="kserve-sklearnserver",
                                         protocol="v2"),
                       [predictor_pod("sklearn-iris", namespace, 0, ip="10.0.1.10")]),
        "raw": (inference_service("bert", namespace, mode="RawDeployment", model_format="triton",
                                  runtime="kserve-tritonserver", protocol="v2"),
                [predictor_pod("bert", namespace, i, serverless=False, ip=f"10.0.2.{10 + i}") for i in range(2)]),
        "canary": (inference_service("llama", namespace, model_format="huggingface", runtime="kserve-huggingfaceserver",
                                     protocol="v2", canary_percent=10, revision=2),
                   [predictor_pod("llama", namespace, 0, revision=1, ip="10.0.3.10"),
                    predictor_pod("llama", namespace, 1, revision=2, ip="10.0.3.11")]),
        "failed": (inference_service("resnet", namespace, failed=True, revision=2),
                   [predictor_pod("resnet", namespace, 0, revision=1, ip="10.0.4.10"),
                    predictor_pod("resnet", namespace, 1, revision=2, ip="10.0.4.11", crash_loop=True)]),
    }
