"""Pod attribution: which namespace/pod/container holds each GPU and MIG instance, from the kubelet.

A background thread calls the kubelet PodResources v1 `List()` over its unix socket and swaps in an
immutable map of device UUID -> allocations; the GPU collector joins samples on it at render time, so
a scrape never waits on the kubelet. If the kubelet is gone or slow the last good map is kept (pods
rarely move while the kubelet restarts), `gpulens_podresources_up` drops to 0 and we back off.

    gpulens_podresources_up 1.0
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc

from gpulens.exporters.podresources.pb import api_pb2, api_pb2_grpc
from gpulens.exposition import ExpositionFamily
from gpulens.logs import StateLog
from gpulens.loop import Backoff, Loop
from gpulens.metrics import gpu as catalogue

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
# `nvidia.com/gpu` also matches `nvidia.com/gpu.shared`, the device plugin's time-slicing resource
# when renameByDefault is set; `nvidia.com/mig-` matches every MIG profile (mixed strategy).
GPU_RESOURCE_PREFIXES = ("nvidia.com/gpu", "nvidia.com/mig-")
MAX_BACKOFF_SECONDS = 60.0
LOG = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Allocation:
    """One container holding a device: the workload labels a GPU or MIG series is attributed to."""

    namespace: str
    pod: str
    container: str
    resource: str


DeviceMap = Mapping[str, tuple[Allocation, ...]]


def parse_list_response(reply: api_pb2.ListPodResourcesResponse,
                        prefixes: Iterable[str] = GPU_RESOURCE_PREFIXES) -> dict[str, tuple[Allocation, ...]]:
    """Map device UUID -> sorted allocations, keeping only GPU/MIG resources.

    Time-sliced GPUs are reported as `UUID::N`, one id per replica; the suffix is dropped so the key
    is the UUID NVML reports, and a container holding several replicas of one GPU is listed once.
    """
    prefixes = tuple(prefixes)
    holders: dict[str, set[Allocation]] = {}
    for pod in reply.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                if not devices.resource_name.startswith(prefixes):
                    continue
                allocation = Allocation(pod.namespace, pod.name, container.name, devices.resource_name)
                for device_id in devices.device_ids:
                    holders.setdefault(device_id.split("::", 1)[0], set()).add(allocation)
    return {uuid: tuple(sorted(holders[uuid])) for uuid in sorted(holders)}


class PodResourcesWatcher:
    """Keeps a fresh device -> pod map from the kubelet in a daemon thread; collect() yields self metrics."""

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        interval: float = 10.0,
        timeout: float = 5.0,
        max_message_bytes: int = 64 * 1024 * 1024,  # a busy node's reply passes gRPC's 4 MiB default
        resource_prefixes: Iterable[str] = GPU_RESOURCE_PREFIXES,
        clock: Callable[[], float] = time.time,
        log: logging.Logger = LOG,
    ):
        self.socket_path = socket_path
        self._interval = interval
        self._timeout = timeout
        self._max_message_bytes = max_message_bytes
        self._prefixes = tuple(resource_prefixes)
        self._clock = clock
        self._log = log
        self._state = StateLog(log, "podresources")
        self._channel: grpc.Channel | None = None
        self._stub: api_pb2_grpc.PodResourcesListerStub | None = None
        self._lock = threading.Lock()  # guards the self-metric state below; the mapping is swapped whole
        self._mapping: DeviceMap = MappingProxyType({})
        self._up = False
        self._last_success: float | None = None
        self._duration: float | None = None
        self._errors: dict[str, int] = {}
        self._pods = 0
        # refresh() logs its own outcome once per change and returns False on failure: the Loop backs off.
        self.loop = Loop("podresources", self.refresh, interval, log,
                         backoff=Backoff(base=interval, cap=max(interval, MAX_BACKOFF_SECONDS)))

    def start(self) -> None:
        """Refresh now and then every `interval` on the shared Loop (never on the scrape path)."""
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop(self._timeout + 1.0)  # an in-flight List() ends by its deadline
        self._close()

    def mapping(self) -> DeviceMap:
        """Device UUID (GPU-… or MIG-…) -> sorted allocations; the same object while content is unchanged."""
        return self._mapping

    def refresh(self) -> bool:
        """One List() call; True on success. On failure the last good mapping stays."""
        started = time.perf_counter()
        try:
            reply = self._connect().List(api_pb2.ListPodResourcesRequest(), timeout=self._timeout)
        except grpc.RpcError as err:
            call = err if isinstance(err, grpc.Call) else None  # what channel calls raise; typed apart
            reason = (call.code() if call is not None else grpc.StatusCode.UNKNOWN).name.lower()
            detail = call.details() if call is not None else str(err)
            self._close()  # a fresh channel next time skips gRPC's own reconnect backoff
            with self._lock:
                self._up = False
                self._duration = time.perf_counter() - started
                self._errors[reason] = self._errors.get(reason, 0) + 1
            self._state.failed(reason, f"kubelet PodResources List() failed ({reason}); keeping last pod map",
                               labels={"socket": self.socket_path, "detail": detail})
            return False
        fresh = parse_list_response(reply, self._prefixes)
        if fresh != self._mapping:  # unchanged content keeps the old object, so label sets never flap
            self._mapping = MappingProxyType(fresh)
        with self._lock:
            self._up = True
            self._duration = time.perf_counter() - started
            self._last_success = self._clock()
            self._pods = len({(a.namespace, a.pod) for allocations in fresh.values() for a in allocations})
        self._state.ok("kubelet PodResources List() succeeded", labels={"socket": self.socket_path})
        return True

    def collect(self) -> Iterator[ExpositionFamily]:
        """Self metrics, built fresh from the last refresh's state."""
        with self._lock:
            up, last_success, duration = self._up, self._last_success, self._duration
            errors, pods = dict(self._errors), self._pods
        family = catalogue.PODRES_UP.new()
        family.add_metric([], 1.0 if up else 0.0)
        yield family
        if last_success is not None:  # never succeeded: omit rather than export a made-up 0
            family = catalogue.PODRES_LAST_SUCCESS.new()
            family.add_metric([], last_success)
            yield family
        if duration is not None:
            family = catalogue.PODRES_DURATION.new()
            family.add_metric([], duration)
            yield family
        family = catalogue.PODRES_ERRORS.new()
        for reason in sorted(errors):
            family.add_metric([reason], errors[reason])
        yield family
        family = catalogue.PODRES_PODS.new()
        family.add_metric([], pods)
        yield family

    def _connect(self) -> api_pb2_grpc.PodResourcesListerStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel(
                "unix://" + self.socket_path,
                options=[("grpc.max_receive_message_length", self._max_message_bytes)])
            self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    def _close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None
