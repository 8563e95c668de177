"""A stand-in kubelet: the real PodResources v1 gRPC service on a unix socket, serving pods we set.

Tests, benchmarks and `make run` demos point the pod-attribution client at it exactly as they would at
/var/lib/kubelet/pod-resources/kubelet.sock. Only grpcio and the generated stubs are needed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from gpulens.exporters.podresources.pb import api_pb2, api_pb2_grpc

# (container name, resource name, device ids), e.g. ("kserve-container", "nvidia.com/gpu", ["GPU-…"]);
# no device ids -> a container without device-plugin resources, e.g. ("queue-proxy", "", [])
Container = tuple[str, str, Sequence[str]]


@dataclass(frozen=True)
class PodSpec:
    """One pod as the kubelet reports it: namespace, name and its containers' device allocations."""

    namespace: str
    name: str
    containers: Sequence[Container] = field(default_factory=tuple)


def _encode(pods: Iterable[PodSpec]) -> api_pb2.ListPodResourcesResponse:
    return api_pb2.ListPodResourcesResponse(
        pod_resources=[
            api_pb2.PodResources(
                namespace=pod.namespace,
                name=pod.name,
                containers=[
                    api_pb2.ContainerResources(
                        name=name, devices=[api_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))] if ids else []
                    )
                    for name, resource, ids in pod.containers
                ],
            )
            for pod in pods
        ]
    )


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    """PodResourcesLister over a unix socket, with a settable pod list, delay and error for fault tests."""

    def __init__(self, socket_path: str, max_message_bytes: int = 64 * 1024 * 1024):
        self.socket_path = socket_path
        self.calls = 0
        self._max_message_bytes = max_message_bytes
        self._lock = threading.Lock()
        self._reply = api_pb2.ListPodResourcesResponse()
        self._delay = 0.0
        self._error: grpc.StatusCode | None = None
        self._server: grpc.Server | None = None

    def set_pods(self, pods: Iterable[PodSpec]) -> None:
        reply = _encode(pods)  # encoded once here, so List() cost is serialization only, like the kubelet's
        with self._lock:
            self._reply = reply

    def reply(self) -> api_pb2.ListPodResourcesResponse:
        """The List() reply currently served (tests and the bench measure its encoded size)."""
        with self._lock:
            return self._reply

    def set_delay(self, seconds: float) -> None:
        self._delay = seconds

    def set_error(self, code: grpc.StatusCode | None) -> None:
        self._error = code

    def List(self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext) -> api_pb2.ListPodResourcesResponse:
        with self._lock:
            self.calls += 1
            reply = self._reply
        if self._delay:
            time.sleep(self._delay)
        if self._error is not None:
            context.abort(self._error, f"fake kubelet: injected {self._error.name}")
        return reply

    def start(self) -> FakeKubelet:
        """Serve on socket_path (a stale socket file is replaced, as the kubelet does on restart)."""
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.max_send_message_length", self._max_message_bytes)])
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self, server)
        server.add_insecure_port("unix://" + self.socket_path)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket, like a kubelet that went away."""
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)


def demo_pods(devices: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> list[PodSpec]:
    """KServe-looking pods for demos: one predictor per whole GPU, one small model per MIG slice.

    devices: (GPU uuid, [(MIG uuid, profile), …]) as SimulatedNVML.devices() lists them. A GPU in MIG
    mode is never also handed out whole, and a slice's resource names its profile
    (`nvidia.com/mig-1g.5gb`), as the device plugin's mixed strategy does.
    """
    pods = []
    for i, (uuid, slices) in enumerate(devices):
        if not slices:
            pods.append(PodSpec("models", f"llama-predictor-00001-deployment-7d9f{i:02x}c6b-{i:05x}",
                                [("kserve-container", "nvidia.com/gpu", [uuid]), ("queue-proxy", "", [])]))
        for j, (mig_uuid, profile) in enumerate(slices):
            pods.append(PodSpec("models-small", f"bert-predictor-00003-deployment-5c8a{i:02x}f4d-{i:03x}{j:02x}",
                                [("kserve-container", f"nvidia.com/mig-{profile}", [mig_uuid]), ("queue-proxy", "", [])]))
    pods.append(PodSpec("kube-system", "coredns-5d78c9869d-x2x7q"))  # no GPU: must not be attributed
    return pods
