"""Per-pod GPU usage for the GPU exporter (`--pod-usage`): its thread, its pod index and its families.

    gpulens_pod_gpu_sm_utilization_ratio{gpu="0",uuid="GPU-…",namespace="models",pod="llama-0",container="kserve-container"} 0.3

`PodUsage` runs the usage reader right after each NVML sampler cycle, on the sampler's thread (so the
device figures it splits are the ones the exporter publishes), beside the pod index's list+watch
thread; `collect()` renders the latest usage snapshot into fresh families on each render, so a pod
that left the GPU has no series at the next scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gpulens.exporters.pods.procfs import ProcFS
from gpulens.exporters.pods.usage import (
    DECODER,
    ENCODER,
    MEMORY,
    MEMORY_USED,
    RESULTS,
    SM,
    Resolver,
    UsageReader,
    UsageSnapshot,
)
from gpulens.exposition import ExpositionFamily
from gpulens.logs import StateLog
from gpulens.loop import Loop
from gpulens.metrics import pod as c

# (pod family, unattributed family, quantity index)
FAMILIES = ((c.SM_UTIL, c.UNATTRIBUTED_SM, SM), (c.MEM_UTIL, c.UNATTRIBUTED_MEM_UTIL, MEMORY),
            (c.ENC_UTIL, c.UNATTRIBUTED_ENC, ENCODER), (c.DEC_UTIL, c.UNATTRIBUTED_DEC, DECODER),
            (c.MEM_USED, c.UNATTRIBUTED_MEM, MEMORY_USED))


def collect(snapshot: UsageSnapshot | None) -> Iterator[ExpositionFamily]:
    """The snapshot's families; before the first cycle only the self-metrics (nothing visible yet)."""
    visible = c.PROCESSES_VISIBLE.new()
    visible.add_metric([], snapshot.visible if snapshot is not None else 0)
    yield visible
    if snapshot is None:
        return
    results = c.PROCESSES.new()
    for result in RESULTS:
        results.add_metric([result], snapshot.results.get(result, 0))
    yield results
    if snapshot.api_up is not None:
        api = c.API_UP.new()
        api.add_metric([], 1 if snapshot.api_up else 0)
        yield api
    for pod_family, rest_family, q in FAMILIES:
        pods, rest = pod_family.new(), rest_family.new()
        for g in snapshot.gpus:
            if g.device[q] is None:  # the device does not report it: nothing to split
                continue
            gpu = str(g.index)
            rest.add_metric([gpu, g.uuid], g.unattributed[q])
            for owner, values in g.pods.items():
                pods.add_metric([gpu, g.uuid, owner.namespace, owner.pod, owner.container], values[q])
        yield pods
        yield rest


def check(cfg: Any) -> list[str]:
    """Config problems for --pod-usage (exit 2): the node name and the kubernetes client are needed
    (except with --simulate and no --kubeconfig: a simulated shared node then serves demo pods)."""
    if not cfg.pod_usage:
        return []
    problems = []
    if not (cfg.node_name or os.environ.get("NODE_NAME") or (cfg.simulate and not cfg.kubeconfig)):
        problems.append("flag --pod-usage needs --node-name or $NODE_NAME (set it from the downward API: spec.nodeName)")
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        problems.append("flag --pod-usage needs the kubernetes client: pip install 'gpulens[kserve]'")
    return problems


class PodUsage:
    """The running feature: the pod index (list+watch thread) and the usage reader, run by the NVML
    sampler after each of its cycles (`on_snapshot`); `collect` for renders."""

    def __init__(self, nvml: Any, devices: Callable[[], Iterable[tuple[int, str, Any]]], interval: float,
                 proc_root: str = "/proc", pods: Any = None, log: logging.Logger | None = None):
        self._log = log or logging.getLogger("gpulens.pods")
        self.index = pods
        self.reader = UsageReader(nvml, devices, Resolver(ProcFS(proc_root), pods, self._log), self._log,
                                  hold_seconds=max(1.0, interval))
        self._state = StateLog(self._log, "pod-usage")
        self.error = ""
        self._demo: Any = None  # gpulens.sim.sharedgpu.SharedNodeDemo under --simulate without --kubeconfig

    @classmethod
    def from_config(cls, nvml: Any, devices: Callable[[], Iterable[tuple[int, str, Any]]], interval: float,
                    proc_root: str, node_name: str, kubeconfig: str, log: logging.Logger, simulated: bool = False
                    ) -> PodUsage | None:
        """The feature as configured; on simulated GPUs without --kubeconfig, over a simulated shared node.

        None (logged) when `--simulate auto` found a real driver but no node name is known."""
        from gpulens.exporters.kserve.discovery import api_client
        from gpulens.exporters.pods.podindex import PodIndex

        demo = None
        if simulated and not kubeconfig:
            from gpulens.sim.sharedgpu import SharedNodeDemo

            demo = SharedNodeDemo(nvml)
            proc_root, kubeconfig, node_name = demo.tree.root, demo.kubeconfig, demo.node
            log.warning(f"per-pod GPU usage over a simulated shared node: {len(demo.pods)} demo pods running the "
                        f"simulated GPUs' workload, served by a stand-in Kubernetes API at {demo.api.url}",
                        extra={"event": {"action": "pod-usage-simulated"}})
        node = node_name or os.environ.get("NODE_NAME", "")
        if not node:
            log.error("per-pod GPU usage off: no node name (--node-name or $NODE_NAME) to select this node's pods",
                      extra={"event": {"action": "pod-usage-disabled"}})
            return None
        index = PodIndex(api_client(kubeconfig), node, log=log)
        log.info(f"per-pod GPU usage on: processes from {proc_root}, pods of node {node} from the Kubernetes API",
                 extra={"event": {"action": "pod-usage-enabled"}})
        usage = cls(nvml, devices, interval, proc_root, index, log)
        usage._demo = demo
        return usage

    def start(self) -> None:
        if self.index is not None:
            self.index.start()

    def stop(self) -> None:
        if self.index is not None:
            self.index.stop()
        if self._demo is not None:
            self._demo.stop()

    def loops(self) -> list[Loop]:
        return [self.index.loop] if self.index is not None else []

    def on_snapshot(self, snapshot: Any) -> None:
        """After each sampler cycle, on its thread: split this cycle's device figures. Never raises (it
        would count as a sampler failure); a failure shows as collector_success{collector="pod_usage"} 0."""
        try:
            self.reader.cycle(snapshot.gpus if snapshot.nvml_up else ())
        except Exception as err:  # noqa: BLE001 - a bug here must not stop GPU sampling
            self.error = f"{type(err).__name__}: {err}"
            self._state.failed(type(err).__name__, f"per-pod GPU usage failed: {self.error}",
                               error={"type": type(err).__name__, "message": str(err)[:500]})
            return
        self.error = ""
        self._state.ok("per-pod GPU usage ok")

    def collect(self) -> Iterator[ExpositionFamily]:
        if self.error:
            raise RuntimeError(f"per-pod GPU usage failed at the last cycle: {self.error}")
        return collect(self.reader.snapshot)
