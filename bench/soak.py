"""Soak test of the GPU exporter: RSS growth under pod churn, MIG and XID bursts (`make soak`, not CI).

    python bench/soak.py --minutes 30 [--json bench/results/soak.json]

One exporter process (8 simulated H100s: 4 in 7x1g.10gb, 2 in 3g.40gb+2x2g.20gb, 2 whole; pod attribution
refreshed every 2 s; XID watcher on) serving on loopback; a stand-in kubelet in its own process replaces
every pod every few seconds (new names, so every pod label value is new); 1000 XIDs are injected every
30 s from a thread in the exporter process (the sim has no other way in); Prometheus-like scrapes every
second. RSS of the exporter process is sampled every 10 s, and the slope after a warm-up is fitted by
least squares: goal <= 1 MiB per hour.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

GOAL_MIB_PER_HOUR = 1.0
GPUS = 8
MIG_LAYOUTS = {0: "7x1g.10gb", 1: "7x1g.10gb", 2: "7x1g.10gb", 3: "7x1g.10gb",
               4: "3g.40gb+2x2g.20gb", 5: "3g.40gb+2x2g.20gb", 6: None, 7: None}
XID_BURST, XID_PERIOD_S = 1000, 30.0
XIDS = (13, 31, 43, 48, 63, 64, 74, 79, 94, 95)
CHURN_PERIOD_S = 3.0
OTHER_PODS = 200
RSS_PERIOD_S = 10.0
PODRESOURCES_INTERVAL_S = 2.0
MIB = 1 << 20
PROM_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
HERE = Path(__file__).resolve().parent


def slope_mib_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour."""
    n = len(samples)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return sum((t - mt) * (r - mr) for t, r in samples) / var * 3600 if var else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _xid_total(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("gpulens_gpu_xid_errors_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- workers (fresh processes) ----

def _run_exporter(port: int, socket_path: str, uuids_file: str) -> int:
    """The system under test, plus the XID injector thread (it needs the sim object)."""
    import logging

    from gpulens.exporters.gpu.app import GpuExporter
    from gpulens.exporters.gpu.config import GpuExporterConfig
    from gpulens.exporters.podresources.client import PodResourcesWatcher
    from gpulens.server import MetricsServer
    from gpulens.sim import SimulatedNVML

    logging.basicConfig(level=logging.ERROR)  # 1000 ECS alert lines per burst are not what is measured here
    nv = SimulatedNVML(count=GPUS, model="h100")
    for gpu, layout in MIG_LAYOUTS.items():
        if layout is not None:
            nv.set_mig(gpu, layout)
    cfg = GpuExporterConfig(interval_seconds=1.0, podresources_socket=socket_path,
                            podresources_interval_seconds=PODRESOURCES_INTERVAL_S)
    pods = PodResourcesWatcher(socket_path, PODRESOURCES_INTERVAL_S)
    log = logging.getLogger("gpulens.soak")
    log.setLevel(logging.ERROR)
    exporter = GpuExporter(cfg, nv, "simulated", "soak-node", pods, log=log)
    server = MetricsServer("127.0.0.1", port, exporter.render_parts, exporter.ready, log=log)
    server.start()
    exporter.start()
    deadline = time.monotonic() + 60
    while exporter.sampler.snapshot is None:  # the first sample is taken on the sampler thread
        assert time.monotonic() < deadline, "no first sample in 60 s"
        time.sleep(0.05)
    snapshot = exporter.sampler.snapshot
    Path(uuids_file + ".tmp").write_text(json.dumps({
        "gpus": [g.identity.uuid for g in snapshot.gpus if not g.mig],
        "mig": [[m.uuid, m.profile] for g in snapshot.gpus for m in g.mig],
    }))
    os.replace(uuids_file + ".tmp", uuids_file)

    def inject() -> None:
        burst = 0
        while True:
            time.sleep(XID_PERIOD_S)
            for i in range(XID_BURST):
                nv.inject_xid(i % GPUS, XIDS[(burst + i) % len(XIDS)])
            burst += 1
            print(json.dumps({"xid_injected": burst * XID_BURST}), flush=True)

    threading.Thread(target=inject, daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()
    exporter.stop()
    return 0


def _run_kubelet(socket_path: str, uuids_file: str) -> int:
    """Serve PodResources, replacing every pod (new names) each CHURN_PERIOD_S once the UUIDs are known."""
    from gpulens.sim.kubelet import FakeKubelet, PodSpec

    kubelet = FakeKubelet(socket_path).start()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    generation = 0
    while not stop.is_set():
        if os.path.exists(uuids_file):
            devices = json.loads(Path(uuids_file).read_text())
            g = generation
            pods = [PodSpec("models", f"llm-{g}-{i}-predictor-7d9f8c6b5-{g:05x}",
                            [("kserve-container", "nvidia.com/gpu", [uuid]), ("queue-proxy", "", [])])
                    for i, uuid in enumerate(devices["gpus"])]
            pods += [PodSpec("models-small", f"bert-{g}-{i}-predictor-5c8a-{g:05x}",
                             [("kserve-container", f"nvidia.com/mig-{profile}", [uuid]), ("queue-proxy", "", [])])
                     for i, (uuid, profile) in enumerate(devices["mig"])]
            pods += [PodSpec(f"team-{i % 20:02d}", f"web-{g}-{i}-6b8d9f7c5d", [("app", "", [])])
                     for i in range(OTHER_PODS)]
            kubelet.set_pods(pods)
            generation += 1
        stop.wait(CHURN_PERIOD_S)
    kubelet.stop()
    return 0


# ---- the soak ----

def soak(minutes: float) -> dict[str, Any]:
    import psutil

    duration = minutes * 60
    warmup = min(300.0, 0.25 * duration)
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="gpulens-soak-")
    socket_path, uuids_file = str(Path(tmp, "kubelet.sock")), str(Path(tmp, "uuids.json"))
    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    log = open(Path(tmp, "exporter.log"), "wb")  # noqa: SIM115 - closed in finally
    kubelet = subprocess.Popen([*me, "kubelet", socket_path, uuids_file], stdin=subprocess.PIPE, cwd=HERE.parent)
    exporter = subprocess.Popen([*me, "exporter", str(port), socket_path, uuids_file], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, cwd=HERE.parent, text=True)
    injected = [0]

    def read_injections() -> None:
        assert exporter.stdout is not None
        for line in exporter.stdout:
            injected[0] = json.loads(line)["xid_injected"]

    threading.Thread(target=read_injections, daemon=True).start()
    samples: list[tuple[float, float]] = []
    scrapes = failures = 0
    last_text = ""
    conn: http.client.HTTPConnection | None = None
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(uuids_file):
            if exporter.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"exporter did not start; see {log.name}")
            time.sleep(0.2)
        proc = psutil.Process(exporter.pid)
        started = time.monotonic()
        next_rss = started
        while (now := time.monotonic()) - started < duration:
            if exporter.poll() is not None:
                raise RuntimeError(f"exporter exited {exporter.returncode}; see {log.name}")
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/metrics", headers=PROM_HEADERS if scrapes % 10 else {})
                resp = conn.getresponse()
                body = resp.read()
                scrapes += 1
                failures += resp.status != 200
                if resp.getheader("Content-Encoding") is None:
                    last_text = body.decode()
            except OSError:
                failures += 1
                conn = None
            if now >= next_rss:
                samples.append((now - started, proc.memory_info().rss / MIB))
                next_rss += RSS_PERIOD_S
                print(f"  t={now - started:6.0f}s rss={samples[-1][1]:.1f} MiB scrapes={scrapes} "
                      f"xid injected={injected[0]}", file=sys.stderr, flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        time.sleep(2.0)  # let the last burst drain
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics")
        last_text = c.getresponse().read().decode()
        c.close()
    finally:
        for p in (exporter, kubelet):
            if p.stdin is not None:
                p.stdin.close()
        for p in (exporter, kubelet):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    steady = [s for s in samples if s[0] >= warmup]
    slope = slope_mib_per_hour(steady)
    pods_attributed = len({line.split('pod="', 1)[1].split('"', 1)[0] for line in last_text.splitlines()
                           if line.startswith("gpulens_gpu_allocation_info{") and 'pod="' in line})
    return {
        "minutes": minutes, "warmup_s": warmup, "gpus": GPUS, "mig_layouts": {str(k): v for k, v in MIG_LAYOUTS.items()},
        "churn_period_s": CHURN_PERIOD_S, "podresources_interval_s": PODRESOURCES_INTERVAL_S,
        "xid_burst": XID_BURST, "xid_period_s": XID_PERIOD_S, "xid_injected": injected[0],
        "xid_counted": _xid_total(last_text), "scrapes": scrapes, "scrape_failures": failures,
        "pods_attributed_at_end": pods_attributed,
        "rss_samples": [[round(t, 1), round(r, 2)] for t, r in samples],
        "rss_start_mib": round(samples[0][1], 2) if samples else None,
        "rss_end_mib": round(samples[-1][1], 2) if samples else None,
        "steady_samples": len(steady), "rss_slope_mib_per_hour": round(slope, 3),
        "goal_mib_per_hour": GOAL_MIB_PER_HOUR,
        # a leak-free exporter that stopped serving or counting is no pass
        "ok": slope <= GOAL_MIB_PER_HOUR and failures == 0 and _xid_total(last_text) == injected[0],
        "note": "a slope from a short run (a few minutes) is dominated by noise; the goal is judged on 30 minutes",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "soak.json")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, rest = args.worker[0], args.worker[1:]
        if kind == "exporter":
            return _run_exporter(int(rest[0]), rest[1], rest[2])
        if kind == "kubelet":
            return _run_kubelet(rest[0], rest[1])
        raise SystemExit(f"unknown worker {kind}")
    result = soak(args.minutes)
    print(f"soak {result['minutes']:g} min, {GPUS} GPUs with MIG, pods replaced every {CHURN_PERIOD_S:g} s, "
          f"{XID_BURST} XIDs every {XID_PERIOD_S:g} s")
    print(f"  scrapes {result['scrapes']} ({result['scrape_failures']} failed); XIDs injected {result['xid_injected']}, "
          f"counted {result['xid_counted']:.0f}; pods attributed at the end {result['pods_attributed_at_end']}")
    print(f"  RSS {result['rss_start_mib']} -> {result['rss_end_mib']} MiB; slope after {result['warmup_s']:.0f} s "
          f"warm-up over {result['steady_samples']} samples: {result['rss_slope_mib_per_hour']:+.3f} MiB/hour "
          f"(goal <= {GOAL_MIB_PER_HOUR:g}); overall {'PASS' if result['ok'] else 'FAIL'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.json}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
