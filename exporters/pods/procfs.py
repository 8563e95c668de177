"""Which pod and container a host process belongs to, from `/proc/<pid>/cgroup`.

    parse_cgroup("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c…_9f.slice/cri-containerd-4f…e1.scope")
    → CgroupRef(pod_uid="1b2c…-9f", container_id="4f…e1", runtime="containerd")

The kubelet names a pod's cgroup after its UID and QoS class, and the container runtime names the
container's cgroup under it after the container ID; both depend on the cgroup driver:

| driver | pod cgroup | container cgroup |
| --- | --- | --- |
| cgroupfs | `/kubepods[/<qos>]/pod<uid>` (qos: burstable, besteffort) | `<id>` (containerd, Docker), `crio-<id>` (CRI-O) |
| systemd | `kubepods[-<qos>]-pod<uid, _ for ->.slice` | `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` |

cgroup v1 writes one `hierarchy:controllers:path` line per hierarchy, v2 one `0::path` line (hybrid
both). A reader in its own cgroup namespace (cgroup v2's default for containers) sees other pods'
paths relative to its own, with leading `/..` segments; only the segments after the pod matter, so
those parse the same. Static pods' UIDs are 32 hex digits without dashes.

`ProcFS` reads the files under a root (`--proc-root`, as node_exporter's `--path.procfs`), so tests
point it at a fixture tree, and says whether that root shows the host's PID namespace at all.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

# A pod UID: a UUID (dashes, or underscores in systemd slice names) or a static pod's 32-hex hash.
_POD = re.compile(r"^(?:.*-)?pod([0-9a-f]{8}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{12})(?:\.slice)?$")
# The container's cgroup right under the pod's: (regex, runtime); runtime "" where the name does not say.
_CONTAINER = (
    (re.compile(r"^cri-containerd-([0-9a-f]{64})\.scope$"), "containerd"),
    (re.compile(r"^crio-([0-9a-f]{64})(?:\.scope)?$"), "cri-o"),
    (re.compile(r"^(?:docker|cri-dockerd)-([0-9a-f]{64})\.scope$"), "docker"),
    (re.compile(r"^([0-9a-f]{64})$"), ""),  # cgroupfs driver: containerd or Docker (dockershim, cri-dockerd)
)
KTHREADD_STAT = b"2 (kthreadd) "  # pid 2 is the kernel's kthreadd, visible only from the host PID namespace


class UnknownFormat(ValueError):
    """The path is a pod's (it names kubepods or a pod UID) but not in a layout this parser knows."""


@dataclass(frozen=True, slots=True)
class CgroupRef:
    """Where a process runs: its pod's UID and its container's ID (runtime '' if the path does not say)."""

    pod_uid: str
    container_id: str
    runtime: str = ""


def _parse_path(path: str) -> CgroupRef | None:
    segments = [s for s in path.split("/") if s and s != ".."]
    for i, segment in enumerate(segments):
        match = _POD.match(segment)
        if match is None:
            continue
        uid = match.group(1).replace("_", "-")
        if i + 1 >= len(segments):
            raise UnknownFormat(f"pod cgroup without a container cgroup: {path}")
        for pattern, runtime in _CONTAINER:
            container = pattern.match(segments[i + 1])
            if container is not None:
                return CgroupRef(uid, container.group(1), runtime)
        raise UnknownFormat(f"unknown container cgroup name {segments[i + 1]!r} in {path}")
    if "kubepods" in path:
        raise UnknownFormat(f"kubepods cgroup without a pod UID segment: {path}")
    return None


def parse_cgroup(text: str) -> CgroupRef | None:
    """The contents of /proc/<pid>/cgroup (v1, v2 or hybrid) → CgroupRef, or None for a process outside any pod.

    Raises UnknownFormat when a line is under kubepods but its layout is not one the runtimes write.
    The first line naming a pod and container wins; a process lives in one pod in every hierarchy.
    """
    unknown: UnknownFormat | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        try:
            ref = _parse_path(parts[2].strip())
        except UnknownFormat as err:
            unknown = unknown or err
            continue
        if ref is not None:
            return ref
    if unknown is not None:
        raise unknown
    return None


class ProcessGone(OSError):
    """The process exited between NVML listing it and its /proc entry being read."""


class ProcFS:
    """Reads `<root>/<pid>/cgroup` and the host-PID-namespace check under one proc root."""

    def __init__(self, root: str = "/proc"):
        self.root = root.rstrip("/") or "/"

    def read_cgroup(self, pid: int) -> str:
        """The cgroup file's text; ProcessGone if the process is gone, OSError if unreadable for another reason."""
        try:
            with open(f"{self.root}/{pid}/cgroup", "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError) as err:
            raise ProcessGone(err.errno or errno.ESRCH, f"process {pid} is gone") from err

    def host_pid_namespace(self) -> bool:
        """Whether the root shows the host's PID namespace: kernel threads (kthreadd, pid 2) appear only there.

        Without `hostPID: true` the exporter's /proc shows its own container's processes, and NVML's
        PIDs (the host's) either do not exist there or name unrelated processes.
        """
        try:
            with open(f"{self.root}/2/stat", "rb") as fh:
                return fh.read(len(KTHREADD_STAT)) == KTHREADD_STAT
        except OSError:
            return False
