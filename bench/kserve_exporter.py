"""KServe exporter benchmark: 500 InferenceServices × 2 pods on the API stand-in and stand-in model servers.

    python bench/kserve_exporter.py [--isvcs 500] [--json bench/results/kserve_exporter.json]

The stand-ins (Kubernetes API, one HTTP server answering every pod's /metrics and readiness) run in
a child process, so their CPU does not count against the exporter's. The exporter runs here, as the
CLI would build it (real `kubernetes` client through a kubeconfig). Half the InferenceServices are
serverless (a queue-proxy endpoint per pod too), half RawDeployment; servers rotate through
kserve, kserve, triton, vllm with recorded-format expositions; half the kserve servers are busy
(new counts between any two scrapes: a body to parse), the others idle (an unchanged body is not
parsed again). Measured:
- initial list of InferenceServices and pods (list + parse),
- full refresh: scrape every endpoint, ask every model whether it is ready, accumulate, render
  both exposition formats (median and max of several refreshes),
- RSS of the exporter process after the refreshes, and the series count of /metrics.
Goals: full refresh ≤ 2 s and RSS ≤ 100 MiB at 500 × 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures" / "kserve"
SERVERS = ("kserve", "kserve", "triton", "vllm")
RUNTIMES = {"kserve": "kserve-sklearnserver", "triton": "kserve-tritonserver", "vllm": "kserve-huggingfaceserver"}


def kserve_body(model: str, n: int) -> str:
    """What KServe's ModelServer exposes for one model: pre/predict/post histograms, KServe's default buckets."""
    bounds = ("0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0", "+Inf")
    lines = []
    for phase, share in (("preprocess", 0.9), ("predict", 0.2), ("postprocess", 0.95)):
        name = f"request_{phase}_seconds"
        lines += [f"# HELP {name} {phase} latency", f"# TYPE {name} histogram"]
        for i, b in enumerate(bounds):
            count = n if b == "+Inf" else int(n * min(1.0, share + i * 0.08))
            lines.append(f'{name}_bucket{{le="{b}",model_name="{model}"}} {float(count)}')
        lines += [f'{name}_count{{model_name="{model}"}} {float(n)}', f'{name}_sum{{model_name="{model}"}} {n * 0.03}']
    lines += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
              "# TYPE process_resident_memory_bytes gauge", "process_resident_memory_bytes 4.123e+08"]
    return "\n".join(lines) + "\n"


def _standins(isvcs: int, pods_per: int, ready: Any, stop: Any) -> None:
    """Child process: the API stand-in with the objects, and the model-server endpoints."""
    from gpulens.sim.inferenceservices import inference_service, predictor_pod
    from gpulens.sim.kubeapi import KubeAPI
    from gpulens.sim.modelmetrics import MetricsEndpoints

    eps = MetricsEndpoints().start()
    api = KubeAPI().start()
    fixtures = {kind: (FIXTURES / f"{kind}.prom").read_text() for kind in ("triton", "vllm", "queue_proxy")}
    eps.set("", fixtures["queue_proxy"])  # every queue-proxy at :<port>/metrics; readiness at the root
    for i in range(isvcs):
        server = SERVERS[i % len(SERVERS)]
        serverless = i % 2 == 0
        name = f"model-{i:04d}"
        api.add(inference_service(name, namespace=f"team-{i % 10}", mode="Serverless" if serverless else "RawDeployment",
                                  runtime=RUNTIMES[server], protocol="v2"))
        for j in range(pods_per):
            path = f"p{i}-{j}"
            eps.set(path, kserve_body(name, 1000 + i) if server == "kserve" else fixtures[server])
            pod = predictor_pod(name, namespace=f"team-{i % 10}", index=j, serverless=serverless, ip="127.0.0.1",
                                metrics_port=eps.port, metrics_path=f"/{path}/metrics")
            pod["spec"]["containers"][0]["ports"][0]["containerPort"] = eps.port
            api.add(pod)
    kubeconfig = api.kubeconfig(os.path.join(tempfile.mkdtemp(prefix="gpulens-bench-"), "kubeconfig"))
    ready.put((kubeconfig, eps.port))
    # Every other kserve InferenceService is busy: its counts move between two scrapes (a new body to
    # parse); the rest are idle, as most of a large cluster's models are at any moment.
    busy = [i for i in range(isvcs) if SERVERS[i % len(SERVERS)] == "kserve" and i % 4 == 0]
    tick = 0
    while not stop.wait(0.2):
        tick += 1
        for i in busy:
            for j in range(pods_per):
                eps.set(f"p{i}-{j}", kserve_body(f"model-{i:04d}", 1000 + i + tick))
    api.stop()
    eps.stop()


def run(isvcs: int, pods_per: int, refreshes: int) -> dict[str, Any]:
    import psutil

    from gpulens.exporters.kserve.app import KserveExporter
    from gpulens.exporters.kserve.config import KserveExporterConfig
    from gpulens.exporters.kserve.discovery import KubeDiscovery, api_client

    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_standins, args=(isvcs, pods_per, ready, stop), daemon=True)
    child.start()
    try:
        kubeconfig, port = ready.get(timeout=600)
        cfg = KserveExporterConfig(kubeconfig=kubeconfig, queue_proxy_port=port, scrape_timeout_seconds=10)
        log = logging.getLogger("bench")
        discovery = KubeDiscovery(api_client(kubeconfig), resync_seconds=3600, timeout_seconds=60, log=log)
        exporter = KserveExporter(cfg, discovery=discovery, log=log)
        rss_start = psutil.Process().memory_info().rss / 2**20
        t0 = time.perf_counter()
        for r in discovery.reflectors:
            r.relist()  # what each reflector's first step does before it starts watching
        list_seconds = time.perf_counter() - t0
        rss_listed = psutil.Process().memory_info().rss / 2**20
        isvc_count, pod_count = (len(x) for x in discovery.snapshot())
        exporter.refresh()  # first sight of every endpoint, and the first readiness round
        t = time.perf_counter()
        exporter.probe_readiness(exporter.snapshot()[2])
        readiness_seconds = time.perf_counter() - t
        times, cpu = [], []
        me = psutil.Process()
        for _ in range(refreshes):
            t, c = time.perf_counter(), me.cpu_times()
            exporter.refresh()
            times.append(time.perf_counter() - t)
            c2 = me.cpu_times()
            cpu.append(c2.user + c2.system - c.user - c.system)
            print(f"refresh {times[-1]:.3f}s wall, {cpu[-1]:.3f}s CPU: {exporter.phase_seconds}", file=sys.stderr)
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            exporter.refresh()
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
            print(sorted(exporter.scrape_errors.items())[:5])
        text = exporter.render()
        series = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
        endpoints = len(exporter.snapshot()[2])
        rss = psutil.Process().memory_info().rss / 2**20
        scrape_ok = sum(exporter.scrape_up.values())
        if os.environ.get("BENCH_TRACEMALLOC"):
            import tracemalloc

            for stat in tracemalloc.take_snapshot().statistics("lineno")[:15]:
                print(stat, file=sys.stderr)
        exporter.stop()
    finally:
        stop.set()
        child.join(30)
    return {"isvcs": isvc_count, "pods": pod_count, "endpoints": endpoints, "endpoints_ok": scrape_ok,
            "readiness_probes": sum(len(v) for v in exporter.model_ready.values()),
            "list_seconds": round(list_seconds, 3), "readiness_round_seconds": round(readiness_seconds, 3),
            "refresh_seconds_median": round(statistics.median(times), 3), "refresh_seconds_max": round(max(times), 3),
            "refresh_cpu_seconds_median": round(statistics.median(cpu), 3),
            "rss_mib": round(rss, 1), "rss_after_list_mib": round(rss_listed, 1),
            "rss_before_list_mib": round(rss_start, 1), "series": series,
            "exposition_bytes": len(text), "load_average_1m": round(os.getloadavg()[0], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isvcs", type=int, default=500)
    parser.add_argument("--pods", type=int, default=2)
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "kserve_exporter.json")
    args = parser.parse_args(argv)
    row = run(args.isvcs, args.pods, args.refreshes)
    worst = row["refresh_seconds_max"]
    goals = [(f"full refresh <= 2 s ({row['isvcs']} ISVCs x {args.pods} pods)", worst, worst <= 2.0),
             ("RSS <= 100 MiB", row["rss_mib"], row["rss_mib"] <= 100.0)]
    print("| ISVCs | pods | endpoints (ok) | initial list | full refresh median / max | readiness round (probes) | RSS | series "
          "| /metrics bytes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {row['isvcs']} | {row['pods']} | {row['endpoints']} ({row['endpoints_ok']}) | {row['list_seconds']} s | "
          f"{row['refresh_seconds_median']} / {row['refresh_seconds_max']} s | {row['readiness_round_seconds']} s "
          f"({row['readiness_probes']}) | {row['rss_mib']} MiB ({row['rss_before_list_mib']} before the list, "
          f"{row['rss_after_list_mib']} after) | "
          f"{row['series']} | {row['exposition_bytes']} |")
    for name, value, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    doc = {"benchmark": "kserve_exporter", "cpus": os.cpu_count(), "python": sys.version.split()[0], "result": row,
           "goals": [{"goal": n, "value": v, "pass": ok} for n, v, ok in goals]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return 0 if all(ok for _, _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
