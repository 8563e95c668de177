"""A simulated shared-GPU node: a /proc tree whose cgroup files name pods, and those pods as the API serves them.

For per-pod GPU usage (`gpulens.exporters.pods`): the simulated NVML runs processes with chosen PIDs
and SM shares, `ProcTree` writes `<root>/<pid>/cgroup` for each in one of the layouts the container
runtimes and cgroup drivers produce (`LAYOUTS`), and `gpu_pod()` builds the Pod object (UID,
containerStatuses[].containerID) the Kubernetes API stand-in serves. `shared_node()` wires all three
for N GPUs × M processes, as the integration test and the benchmark use it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
_V1_CONTROLLERS = ("pids", "hugetlb", "net_cls,net_prio", "perf_event", "memory", "devices", "cpuset", "blkio", "freezer",
                   "cpu,cpuacct")
_SCHEME = {"containerd": "containerd", "cri-o": "cri-o", "docker": "docker"}
KTHREADD_STAT = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0\n"


def pod_uid(key: str) -> str:
    """A deterministic UUID-shaped pod UID."""
    h = hashlib.sha256(f"pod:{key}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def container_id(key: str) -> str:
    """A deterministic 64-hex container ID, as containerd, CRI-O and Docker write them."""
    return hashlib.sha256(f"container:{key}".encode()).hexdigest()


def _pod_path(driver: str, uid: str, qos: str) -> str:
    if driver == "systemd":
        escaped = uid.replace("-", "_")  # systemd slice names cannot hold '-' inside a unit component
        if qos == "guaranteed":
            return f"/kubepods.slice/kubepods-pod{escaped}.slice"
        return f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{escaped}.slice"
    return f"/kubepods/pod{uid}" if qos == "guaranteed" else f"/kubepods/{qos}/pod{uid}"


def _container_dir(driver: str, runtime: str, cid: str) -> str:
    if driver == "systemd":
        return {"containerd": f"cri-containerd-{cid}.scope", "cri-o": f"crio-{cid}.scope", "docker": f"docker-{cid}.scope"}[runtime]
    return f"crio-{cid}" if runtime == "cri-o" else cid


@dataclass(frozen=True)
class Layout:
    """One way a container's cgroup shows in /proc/<pid>/cgroup: cgroup version, driver, runtime."""

    cgroup: str  # v1 | v2 | hybrid | v2-cgroupns (v2 read from inside another cgroup namespace)
    driver: str  # systemd | cgroupfs
    runtime: str  # containerd | cri-o | docker

    @property
    def name(self) -> str:
        return f"{self.cgroup}-{self.driver}-{self.runtime}"

    def text(self, uid: str, cid: str, qos: str = "burstable") -> str:
        path = f"{_pod_path(self.driver, uid, qos)}/{_container_dir(self.driver, self.runtime, cid)}"
        if self.cgroup == "v2":
            return f"0::{path}\n"
        if self.cgroup == "v2-cgroupns":  # the reader sits 3 levels deep in another pod: /../../.. then the rest
            return f"0::/../../..{path[path.index('/', 1):]}\n"
        lines = [f"{12 - i}:{ctl}:{path}" for i, ctl in enumerate(_V1_CONTROLLERS)]
        lines += ["2:rdma:/", f"1:name=systemd:{path}"]
        if self.cgroup == "hybrid":
            lines.append(f"0::{path}" if self.driver == "systemd" else "0::/")
        return "\n".join(lines) + "\n"


LAYOUTS = tuple(Layout(cg, driver, runtime) for cg in ("v2", "v1", "hybrid", "v2-cgroupns") for driver in ("systemd", "cgroupfs")
                for runtime in ("containerd", "cri-o", "docker"))
HOST_PROCESS_CGROUP = "0::/system.slice/nvidia-persistenced.service\n"
DOCKER_OUTSIDE_K8S_CGROUP = f"0::/system.slice/docker-{container_id('standalone')}.scope\n"


class ProcTree:
    """A fixture /proc under `root`: the host's kthreadd (hostPID visible), processes with cgroup files."""

    def __init__(self, root: str, host_pid: bool = True):
        self.root = root
        os.makedirs(root, exist_ok=True)
        if host_pid:
            self.write(2, "stat", KTHREADD_STAT)
            self.write(1, "cgroup", "0::/init.scope\n")

    def write(self, pid: int, name: str, text: str) -> None:
        os.makedirs(os.path.join(self.root, str(pid)), exist_ok=True)
        with open(os.path.join(self.root, str(pid), name), "w", encoding="utf-8") as fh:
            fh.write(text)

    def process(self, pid: int, cgroup: str, comm: str = "python3") -> None:
        self.write(pid, "cgroup", cgroup)
        self.write(pid, "comm", comm + "\n")

    def exit(self, pid: int) -> None:
        """The process is gone: its directory disappears, as /proc/<pid> does."""
        d = os.path.join(self.root, str(pid))
        for name in os.listdir(d) if os.path.isdir(d) else ():
            path = os.path.join(d, name)
            os.rmdir(path) if os.path.isdir(path) else os.remove(path)
        if os.path.isdir(d):
            os.rmdir(d)

    def unreadable(self, pid: int) -> None:
        """/proc/<pid>/cgroup exists but cannot be read (EISDIR here: root reads through any mode bits)."""
        self.exit(pid)
        os.makedirs(os.path.join(self.root, str(pid), "cgroup"))


def gpu_pod(name: str, namespace: str, uid: str, node: str, containers: list[tuple[str, str, str]],
            resource: str = "nvidia.com/gpu") -> Obj:
    """A running Pod holding a (time-sliced) GPU; containers are (name, runtime, container id)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": {"app": name.rsplit("-", 1)[0]}},
        "spec": {"nodeName": node, "containers": [
            {"name": cname, "image": "registry.example/infer:1.0", "resources": {"limits": {resource: "1"}}}
            for cname, _, _ in containers]},
        "status": {"phase": "Running", "podIP": "10.1.0.1", "containerStatuses": [
            {"name": cname, "ready": True, "restartCount": 0, "started": True, "image": "registry.example/infer:1.0",
             "containerID": f"{_SCHEME[runtime]}://{cid}", "state": {"running": {"startedAt": "2026-12-01T20:00:00Z"}}}
            for cname, runtime, cid in containers]},
    }


@dataclass(frozen=True)
class SimProcess:
    """One simulated GPU process and where it runs."""

    gpu: int
    pid: int
    namespace: str
    pod: str
    container: str
    sm_share: float
    memory_bytes: int
    layout: Layout


def shared_node(nvml: Any, tree: ProcTree, gpus: int, per_gpu: int, node: str = "gpu-node-1",
                namespace: str = "models", busy: float = 0.9) -> tuple[list[SimProcess], list[Obj]]:
    """`per_gpu` pods time-sharing each of `gpus` simulated GPUs, one process each, layouts in rotation.

    SM shares on each GPU are 1, 2, 3, … parts of `busy` (the GPU's load pinned to it); memory
    1 GiB + 256 MiB per process index.
    Returns the processes and the Pod objects to add to the KubeAPI stand-in.
    """
    procs: list[SimProcess] = []
    pods: list[Obj] = []
    for g in range(gpus):
        parts = sum(range(1, per_gpu + 1))
        shares = {}
        for k in range(per_gpu):
            pid = 40000 + 1000 * g + k
            name = f"infer-g{g}-{k:02d}"
            layout = LAYOUTS[(g * per_gpu + k) % len(LAYOUTS)]
            uid, cid = pod_uid(f"{node}/{name}"), container_id(f"{node}/{name}/main")
            tree.process(pid, layout.text(uid, cid, ("burstable", "besteffort", "guaranteed")[k % 3]))
            pods.append(gpu_pod(name, namespace, uid, node, [("main", layout.runtime, cid)]))
            share = busy * (k + 1) / parts
            shares[pid] = share
            procs.append(SimProcess(g, pid, namespace, name, "main", share, (1 << 30) + k * (256 << 20), layout))
        nvml.set_processes(g, [(p.pid, p.memory_bytes) for p in procs if p.gpu == g])
        nvml.set_process_utilization(g, shares)
    return procs, pods


class SharedNodeDemo:
    """`--simulate … --pod-usage` without a cluster: the simulated GPUs' default workload (one process
    per even GPU, two time-sharing each odd one) runs in demo pods, which a KubeAPI stand-in serves
    and a /proc tree in a temporary directory names. The GPUs' readings stay exactly as without it."""

    def __init__(self, nvml: Any, node: str = "gpu-node-sim", namespace: str = "models"):
        import tempfile

        from gpulens.sim.kubeapi import KubeAPI

        self._tmp = tempfile.TemporaryDirectory(prefix="gpulens-pods-")
        self.node = node
        self.tree = ProcTree(os.path.join(self._tmp.name, "proc"))
        self.api = KubeAPI().start()
        self.pods: list[Obj] = []
        for gpu in range(len(nvml.devices())):
            for k, pid in enumerate(nvml.default_pids(gpu)):
                name = f"demo-g{gpu}-{k}"
                layout = LAYOUTS[len(self.pods) % len(LAYOUTS)]
                uid, cid = pod_uid(f"{node}/{name}"), container_id(f"{node}/{name}/kserve-container")
                self.tree.process(pid, layout.text(uid, cid))
                self.pods.append(self.api.add(gpu_pod(name, namespace, uid, node, [("kserve-container", layout.runtime, cid)])))
        self.kubeconfig = self.api.kubeconfig(os.path.join(self._tmp.name, "kubeconfig"))

    def stop(self) -> None:
        self.api.stop()
        self._tmp.cleanup()
