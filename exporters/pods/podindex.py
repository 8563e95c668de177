"""Pod UID → namespace/pod and container ID → container name, for the pods on this node.

Lists and watches core/v1 pods with `fieldSelector=spec.nodeName=<node>` through the official
`kubernetes` client and the KServe exporter's `Reflector` (list, watch from the resourceVersion,
relist on 410 Gone, a dead watch or the resync deadline; back off on errors, on the shared Loop).
RBAC: `list` and `watch` on pods, nothing else. While the API is down the last listed pods stay
known (a UID never changes owner), and pods created meanwhile resolve once the API answers again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpulens.exporters.kserve.discovery import WATCH_GRACE_SECONDS, Reflector
from gpulens.loop import Backoff

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"  # a static pod's mirror: its cgroup carries this hash, not the UID


@dataclass(frozen=True)
class PodRef:
    """One pod on this node: its identity and container ID → container name (init and ephemeral included)."""

    namespace: str
    name: str
    uid: str
    containers: Mapping[str, str] = field(default_factory=dict)
    mirror_of: str = ""  # the static pod's config hash, when this is its mirror pod


def container_id(text: Any) -> str:
    """`containerd://4f…` / `cri-o://…` / `docker://…` → the bare ID ('' when absent)."""
    return str(text or "").rpartition("://")[2]


def parse_pod(obj: Mapping[str, Any]) -> PodRef:
    """One Pod dict, as the API returns it → PodRef."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    containers = {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for s in status.get(key) or ():
            if isinstance(s, Mapping) and s.get("containerID") and s.get("name"):
                containers[container_id(s["containerID"])] = str(s["name"])
    mirror = str((meta.get("annotations") or {}).get(MIRROR_ANNOTATION) or "")
    return PodRef(str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or ""),
                  containers, mirror)


def _pods_on_node(api: Any, node: str) -> Any:
    """`list_pod_for_all_namespaces` fixed to this node's pods, named for the Reflector's messages."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def call(**kwargs: Any) -> Any:
        return core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}", **kwargs)

    call.resource = "pods"  # type: ignore[attr-defined]
    call.scope = f'on node "{node}" (fieldSelector spec.nodeName)'  # type: ignore[attr-defined]
    return call


class PodIndex:
    """The node's pods by UID, kept current by one list+watch Reflector; `lookup` is a dict read."""

    def __init__(self, api: Any, node: str, resync_seconds: float = 300.0, timeout_seconds: float = 30.0,
                 log: logging.Logger | None = None, backoff: Backoff | None = None, watch_grace: float = WATCH_GRACE_SECONDS):
        self.node = node
        self._log = log or logging.getLogger("gpulens.pods")
        self._version = 0  # bumped by every store change; the UID index is rebuilt lazily on the next lookup
        self._built = -1
        self._by_uid: dict[str, PodRef] = {}
        self._lock = threading.Lock()
        self.reflector = Reflector("pods-on-node", _pods_on_node(api, node), parse_pod, resync_seconds, timeout_seconds,
                                   self._log, backoff or Backoff(base=1.0, cap=30.0), on_change=self._changed,
                                   watch_grace=watch_grace)

    @property
    def loop(self) -> Any:
        return self.reflector.loop

    @property
    def up(self) -> bool:
        """The last list or watch of the node's pods succeeded."""
        return self.reflector.state.up

    @property
    def listed(self) -> bool:
        return self.reflector.listed

    def start(self) -> PodIndex:
        self.reflector.start()
        return self

    def stop(self) -> None:
        self.reflector.stop()

    @property
    def version(self) -> int:
        """Bumped by every change to the node's pods (callers cache lookups until it moves)."""
        return self._version

    def _changed(self) -> None:
        self._version += 1

    def lookup(self, uid: str) -> PodRef | None:
        """The pod with this UID (or this static pod hash), or None if the API has not shown it (yet)."""
        if self._built != self._version:
            with self._lock:
                version = self._version  # read before the items: a change during the rebuild triggers another
                index: dict[str, PodRef] = {}
                for pod in self.reflector.items():
                    index[pod.uid] = pod
                    if pod.mirror_of:
                        index[pod.mirror_of] = pod
                self._by_uid = index
                self._built = version
        return self._by_uid.get(uid)
