"""Log shipper benchmark: sustained events/s into the ES stand-in with the disk spool on, and the drain of a spool.

    .venv/bin/python bench/logship.py            # 300 000 events sustained, 1 000 000-event spool drained
    .venv/bin/python bench/logship.py --quick    # 50 000 and 100 000: a minute on 2 cores

The stand-in runs as its own process (a server's CPU is not the shipper's). Phase 1 submits events
as fast as one producer thread can and times their delivery; phase 2 takes Elasticsearch down,
fills the spool, brings it back and times the drain. Both check that the stand-in holds every event
exactly once (0 lost, 0 duplicates). Goal: >= 20 000 events/s. Prints a table, writes JSON to
bench/results/logship.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpulens.exporters.logship.config import LogshipConfig  # noqa: E402
from gpulens.exporters.logship.shipper import Shipper  # noqa: E402

GOAL = 20_000
# A typical event: an XID alert with GPU identity, pod attribution and the process context (~700 bytes).
TEMPLATE = (
    '{"@timestamp":"2026-12-01T00:00:00.000Z","log.level":"critical","message":"XID 79 on GPU 3 (GPU-sim-0003): '
    'GPU has fallen off the bus","ecs":{"version":"1.6.0"},"event":{"action":"gpu.xid","category":["host","driver"],'
    '"code":"79","created":"2026-12-01T00:00:00.000Z","dataset":"gpulens","kind":"alert","reason":"GPU has fallen off '
    'the bus","severity":4,"type":["error"]},"gpu":{"index":3,"name":"NVIDIA H100 80GB HBM3","pci_bus_id":'
    '"00000000:41:00.0","uuid":"GPU-sim-0003","xid":79},"host":{"name":"gpu-node-7"},"kubernetes":{"namespace":'
    '"gpulens","node":{"name":"gpu-node-7"},"pod":{"name":"gpulens-gpu-x2k"}},"labels":{"seq":%d},"service":'
    '{"name":"gpulens-gpu-exporter"},"workload":{"container":"kserve-container","namespace":"models","pod":"llama-0"}}'
)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30).read()


def _cfg(url: str, spool: str, queue: int) -> LogshipConfig:
    return LogshipConfig(elasticsearch_url=url, namespace="bench", spool_dir=spool, queue_events=queue,
                         batch_events=2000, flush_interval_seconds=0.05, backoff_max_seconds=0.2,
                         spool_max_bytes=4 * 1024 ** 3)


def sustained(url: str, n: int, workdir: str) -> dict[str, Any]:
    shipper = Shipper(_cfg(url, os.path.join(workdir, "spool-sustained"), queue=n), log=logging.getLogger("bench"),
                      source="bench-sustained").start()
    docs = [(TEMPLATE % i).encode() for i in range(n)]
    latencies = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for doc in docs:
        s = time.perf_counter()
        shipper.submit(doc)
        latencies.append(time.perf_counter() - s)
    submitted = time.perf_counter() - t0
    latencies.sort()
    assert shipper.flush(600), "not drained"
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    shipper.stop(0)
    return {"events": n, "seconds": round(elapsed, 2), "events_per_second": round(n / elapsed),
            "shipper_cpu_us_per_event": round(cpu / n * 1e6, 1),
            "submit_seconds": round(submitted, 2), "submit_p99_us": round(latencies[int(n * 0.99)] * 1e6, 1),
            "submit_max_ms": round(latencies[-1] * 1000, 2),
            "shipped": shipper.shipped, "dropped": shipper.dropped, "retried": sum(shipper.retried.values())}


def drain(url: str, n: int, workdir: str) -> dict[str, Any]:
    _post(url + "/_standin/down")
    spool = os.path.join(workdir, "spool-drain")
    shipper = Shipper(_cfg(url, spool, queue=50_000), log=logging.getLogger("bench"), source="bench-drain")
    t0 = time.perf_counter()
    chunk = 50_000
    from gpulens.exporters.logship.shipper import event_id

    for start in range(0, n, chunk):  # what an outage leaves behind: n events in the spool
        shipper.put([(event_id("bench-drain", i, d), d) for i in range(start, min(n, start + chunk))
                     for d in [(TEMPLATE % (10_000_000 + i)).encode()]])
    fill = time.perf_counter() - t0
    spool_bytes = shipper.spool.bytes
    shipper.start()
    _post(url + "/_standin/up")
    t1, cpu1 = time.perf_counter(), time.process_time()
    assert shipper.flush(1800), "not drained"
    elapsed = time.perf_counter() - t1
    cpu = time.process_time() - cpu1
    shipper.stop(0)
    return {"shipper_cpu_us_per_event": round(cpu / n * 1e6, 1), "events": n, "spool_bytes": spool_bytes,
            "fill_seconds": round(fill, 2), "drain_seconds": round(elapsed, 2), "events_per_second": round(n / elapsed),
            "shipped": shipper.shipped, "dropped": shipper.dropped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 000 sustained, 100 000 drained")
    parser.add_argument("--events", type=int, default=0, help="sustained phase events (default 300 000)")
    parser.add_argument("--spool-events", type=int, default=0, help="drain phase events (default 1 000 000)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "logship.json"))
    args = parser.parse_args()
    n = args.events or (50_000 if args.quick else 300_000)
    spooled = args.spool_events or (100_000 if args.quick else 1_000_000)
    standin = subprocess.Popen([sys.executable, "-m", "tests.exporters.logship.standin"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert standin.stdout is not None
        url = standin.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="gpulens-logship-bench-") as workdir:
            one = sustained(url, n, workdir)
            after_one = _get(url + "/_standin/stats")
            two = drain(url, spooled, workdir)
            after_two = _get(url + "/_standin/stats")
    finally:
        if standin.stdin:
            standin.stdin.close()
        standin.wait(30)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    standin_cpu = children.ru_utime + children.ru_stime
    lost_one = n - after_one["docs"]
    lost_two = n + spooled - after_two["docs"]
    result = {"cores": os.cpu_count(), "goal_events_per_second": GOAL, "sustained": {**one, "lost": lost_one},
              "drain": {**two, "lost": lost_two}, "duplicates": after_two["duplicates"],
              "bulk_requests": after_two["bulk_requests"],
              # where the CPU went: the stand-in's whole life (both phases) over every event it took
              "standin_cpu_us_per_event": round(standin_cpu / (n + spooled) * 1e6, 1)}
    load = os.getloadavg()[0]
    result["load_average_1m"] = round(load, 1)
    print(f"{'phase':<12}{'events':>10}{'seconds':>10}{'events/s':>12}{'shipper CPU µs/event':>22}{'lost':>7}{'dropped':>9}")
    for name, r, total, lost in (("sustained", one, n, lost_one), ("drain", two, spooled, lost_two)):
        seconds = r.get("seconds", r.get("drain_seconds"))
        print(f"{name:<12}{total:>10}{seconds:>10}{r['events_per_second']:>12}{r['shipper_cpu_us_per_event']:>22}"
              f"{lost:>7}{r['dropped']:>9}")
    print(f"stand-in CPU µs/event: {result['standin_cpu_us_per_event']}; "
          f"load average while measuring: {load:.1f} on {os.cpu_count()} cores (other processes share them)")
    print(f"spool of {spooled} events: {two['spool_bytes'] / 1e6:.0f} MB, filled in {two['fill_seconds']} s; "
          f"submit() p99 {one['submit_p99_us']} µs, max {one['submit_max_ms']} ms; duplicates {result['duplicates']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    ok = min(one["events_per_second"], two["events_per_second"]) >= GOAL and lost_one == lost_two == 0 \
        and result["duplicates"] == 0
    print("goal met" if ok else f"GOAL MISSED (>= {GOAL} events/s, 0 lost, 0 duplicates)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
