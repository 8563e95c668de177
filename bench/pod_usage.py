"""Per-pod GPU usage benchmark: what `--pod-usage` adds on 8 GPUs × 16 processes (128 pods).

    python bench/pod_usage.py [--quick] [--json bench/results/pod_usage.json]

The world: 8 simulated H100s, each time-shared by 16 pods (one process each, SM shares 1..16 parts
of 90 %), their cgroups in a fixture /proc in every runtime/driver/cgroup layout, the 128 pods served
by the Kubernetes API stand-in and listed+watched by the real client (PodIndex).

- Process path CPU per cycle (time.thread_time, main thread): the usage reader's cycle over the
  sampler snapshot's readings (NVML per-process calls, cgroup resolution, split) — warm (steady
  memory: process lists re-read every 10 s; cgroups cached), with the process lists re-read every
  cycle (memory churning), and worst case (and every cgroup re-read: the cache disabled).
- On top of the device path: the sampler cycle with and without the per-pod hook (the difference).
- Render: the pod families rendered into both formats, per sample; the number of series added.
- Idle CPU of the whole exporter (sampler at 1 s, no scrapes), with and without per-pod usage, each
  in a fresh process, process CPU time over a fixed window.
Goal: ≤ 2 ms CPU per cycle for the process path on top of the device path.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

GPUS, PER_GPU = 8, 16
GOAL_MS = 2.0
NODE = "gpu-node-1"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class _World:
    """The simulated node, the API stand-in and an exporter (per-pod usage on or off)."""

    def __init__(self, tmp: str, pod_usage: bool, interval: float = 1.0, refresh_seconds: float = 60.0):
        from gpulens.exporters.gpu.app import GpuExporter
        from gpulens.exporters.gpu.config import GpuExporterConfig
        from gpulens.exporters.kserve.discovery import api_client
        from gpulens.exporters.pods.collector import PodUsage
        from gpulens.exporters.pods.podindex import PodIndex
        from gpulens.sim import SimulatedNVML
        from gpulens.sim.kubeapi import KubeAPI
        from gpulens.sim.sharedgpu import ProcTree, shared_node

        self.nv = SimulatedNVML(count=GPUS)
        self.tree = ProcTree(os.path.join(tmp, "proc"))
        procs, pods = shared_node(self.nv, self.tree, GPUS, PER_GPU, node=NODE)
        self.processes = len(procs)
        self.api = KubeAPI().start()
        for pod in pods:
            self.api.add(pod)
        log = logging.getLogger("bench.pods")
        log.setLevel(logging.ERROR)
        cfg = GpuExporterConfig(interval_seconds=interval, xid_events=False, pod_attribution=False, pod_usage=pod_usage)
        self.exporter = GpuExporter(cfg, self.nv, "simulated", log=log)
        self.index = None
        if pod_usage:
            self.client = api_client(self.api.kubeconfig(os.path.join(tmp, "kubeconfig")))
            self.index = PodIndex(self.client, NODE, log=log)
            self.exporter.usage = PodUsage(self.nv, self.exporter.sampler.devices, interval, self.tree.root, self.index, log)
            self.exporter.usage.reader.resolver._refresh = refresh_seconds
            self.index.start()
            deadline = time.monotonic() + 30
            while len(self.index.reflector.items()) < len(pods) and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        self.exporter.stop()
        if self.index is not None:
            self.index.stop()
            self.client.close()
        self.api.stop()


def _time(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.thread_time()
        fn()
        out.append((time.thread_time() - t) * 1000)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(ms), 4), "p90_ms": round(_percentile(ms, 0.9), 4),
            "mean_ms": round(statistics.fmean(ms), 4), "n": len(ms)}


def bench_cycles(cycles: int) -> dict[str, Any]:
    from gpulens.exporters.pods.collector import collect
    from gpulens.exposition import Renderer

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        w = _World(tmp, pod_usage=True)
        try:
            usage = w.exporter.usage
            sampler = w.exporter.sampler
            snapshot = sampler.cycle()  # the device path; the hook runs the first (cold) usage cycle
            usage.reader.resolver._cache.clear()
            cold = _time(lambda: usage.reader.cycle(snapshot.gpus), 1)
            out["process_path_cold"] = _stats(cold)
            out["process_path_warm"] = _stats(_time(lambda: usage.reader.cycle(sampler.snapshot.gpus), cycles))
            usage.reader._lists_max_age = 0.0  # memory churning: the process lists re-read every cycle
            out["process_path_lists_every_cycle"] = _stats(_time(lambda: usage.reader.cycle(sampler.snapshot.gpus), cycles))
            usage.reader.resolver._refresh = 0.0  # worst case: and every cgroup re-read every cycle
            out["process_path_reread_every_cgroup"] = _stats(_time(lambda: usage.reader.cycle(sampler.snapshot.gpus), cycles))
            usage.reader.resolver._refresh = 60.0
            usage.reader._lists_max_age = 10.0
            with_hook: list[float] = []
            without: list[float] = []
            for _ in range(cycles):  # interleaved, so drift in the machine's load hits both alike
                for on, bucket in ((True, with_hook), (False, without)):
                    w.exporter.usage = usage if on else None
                    bucket += _time(sampler.cycle, 1)
            w.exporter.usage = usage
            out["sampler_cycle_device_path"] = _stats(without)
            out["sampler_cycle_with_pod_usage"] = _stats(with_hook)
            out["on_top_of_device_path_ms"] = round(out["sampler_cycle_with_pod_usage"]["median_ms"]
                                                    - out["sampler_cycle_device_path"]["median_ms"], 4)
            snap = usage.reader.snapshot
            renderer = Renderer()
            families = [f for f in collect(snap) if f.samples]

            def render() -> None:  # as the exporter renders: cached label prefixes, committed per render
                renderer.render_group(f for f in collect(snap) if f.samples)
                renderer.commit()

            out["render_both_formats"] = _stats(_time(render, cycles))
            out["series_added"] = sum(len(f.samples) for f in families)
            out["families_added"] = len(families)
            out["pods"] = len({o for g in snap.gpus for o in g.pods})
            out["processes"] = w.processes
            out["results"] = snap.results
        finally:
            w.close()
    return out


def _idle_worker(pod_usage: bool, seconds: float, queue: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = _World(tmp, pod_usage=pod_usage)
        try:
            w.exporter.start()
            time.sleep(3.0)  # warm-up: first cycles, cgroups read, the watch open
            t0, c0 = time.monotonic(), time.process_time()
            time.sleep(seconds)
            queue.put({"cpu_percent": round(100 * (time.process_time() - c0) / (time.monotonic() - t0), 3)})
        finally:
            w.close()


def bench_idle(seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for on in (False, True):
        queue = ctx.Queue()
        proc = ctx.Process(target=_idle_worker, args=(on, seconds, queue))
        proc.start()
        out["with_pod_usage" if on else "device_path_only"] = queue.get(timeout=seconds + 120)
        proc.join(30)
    out["added_cpu_percent"] = round(out["with_pod_usage"]["cpu_percent"] - out["device_path_only"]["cpu_percent"], 3)
    out["seconds"] = seconds
    return out


def print_table(doc: dict[str, Any]) -> None:
    c = doc["cycles"]
    rows = [
        ("process path, warm (cgroups cached)", f"{c['process_path_warm']['median_ms']:.3f} ms",
         f"p90 {c['process_path_warm']['p90_ms']:.3f}"),
        ("process path, lists re-read every cycle", f"{c['process_path_lists_every_cycle']['median_ms']:.3f} ms",
         f"p90 {c['process_path_lists_every_cycle']['p90_ms']:.3f}"),
        ("process path, and every cgroup re-read", f"{c['process_path_reread_every_cgroup']['median_ms']:.3f} ms",
         f"p90 {c['process_path_reread_every_cgroup']['p90_ms']:.3f}"),
        ("process path, cold (first cycle)", f"{c['process_path_cold']['median_ms']:.3f} ms", ""),
        ("sampler cycle, device path only", f"{c['sampler_cycle_device_path']['median_ms']:.3f} ms", ""),
        ("sampler cycle, with per-pod usage", f"{c['sampler_cycle_with_pod_usage']['median_ms']:.3f} ms", ""),
        ("on top of the device path", f"{c['on_top_of_device_path_ms']:.3f} ms", f"goal <= {GOAL_MS} ms"),
        ("render pod families (both formats)", f"{c['render_both_formats']['median_ms']:.3f} ms", "per sample, if scraped"),
        ("series added", str(c["series_added"]), f"{c['families_added']} families, {c['pods']} pods"),
    ]
    if "idle" in doc:
        i = doc["idle"]
        rows += [("idle CPU, device path only", f"{i['device_path_only']['cpu_percent']:.2f} %", f"{i['seconds']:.0f} s, 1 s interval"),
                 ("idle CPU, with per-pod usage", f"{i['with_pod_usage']['cpu_percent']:.2f} %", ""),
                 ("idle CPU added", f"{i['added_cpu_percent']:.2f} %", "")]
    width = max(len(r[0]) for r in rows)
    print(f"per-pod GPU usage: {GPUS} GPUs x {PER_GPU} processes, {GPUS * PER_GPU} pods (CPU time, thread_time)")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>12}  {note}")
    for g in doc["goals"]:
        print(f"  [{'PASS' if g['pass'] else 'FAIL'}] {g['goal']}: {g['value']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cycles, shorter idle window")
    parser.add_argument("--cycles", type=int, default=0)
    parser.add_argument("--idle-seconds", type=float, default=0.0)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "pod_usage.json")
    args = parser.parse_args(argv)
    cycles = args.cycles or (50 if args.quick else 300)
    idle = args.idle_seconds or (5.0 if args.quick else 30.0)
    doc: dict[str, Any] = {"cycles": bench_cycles(cycles), "idle": bench_idle(idle),
                           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                       "loadavg_1m": round(os.getloadavg()[0], 2)},
                           "scenario": {"gpus": GPUS, "processes_per_gpu": PER_GPU, "pods": GPUS * PER_GPU}}
    on_top = doc["cycles"]["on_top_of_device_path_ms"]
    warm = doc["cycles"]["process_path_warm"]["median_ms"]
    doc["goals"] = [{"goal": f"process path <= {GOAL_MS} ms CPU per cycle on top of the device path",
                     "value": f"{on_top:.3f} ms (process path alone {warm:.3f} ms)", "pass": max(on_top, warm) <= GOAL_MS}]
    print_table(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
