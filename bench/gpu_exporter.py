"""GPU exporter benchmark, gpulens beside nvitop-exporter on the same simulated NVML.

    python bench/gpu_exporter.py [--quick] [--json bench/results/gpu_exporter.json]

For 1, 8 and 64 simulated H100s, each exporter runs as its own fresh process (its own CLI, interval 1 s):
- /metrics latency p50/p99 with 1 and 10 concurrent scrapers. Each scraper is a separate process (so a
  client's GIL never delays the server or another client) sending Prometheus 2.42's own scrape headers
  (OpenMetrics preferred, gzip) back to back over one http.client connection (kept alive if the server
  allows it: nvitop-exporter's wsgiref server answers HTTP/1.0 and closes, so its scrapers reconnect).
- CPU per sample cycle per GPU, in a separate worker process with time.thread_time: gpulens
  `sampler.cycle()` (NVML reads + rendering both formats), nvitop-exporter `update_device()` for every
  device (NVML reads + gauge sets; it renders per scrape instead, and its host/psutil part is excluded).
- Metric families and series in the output; per-GPU families (a series carrying a `uuid` label).
- Steady RSS (psutil) and idle CPU of the serving process after warm-up.
Issue 3 additions: kubelet PodResources refresh CPU with 1000 pods and 64 MIG slices (stand-in kubelet
in its own process), and /metrics p99 with attribution refreshing every 0.1 s vs off.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

GPU_COUNTS = (1, 8, 64)
SCRAPERS = (1, 10)
TOOLS = ("gpulens", "nvitop-exporter")
# What Prometheus 2.42 sends on every scrape.
PROM_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
}
GOAL_P99_MS = 1.0
GOAL_SPEEDUP = 3.0
GOAL_FAMILIES_RATIO = 2.0
GOAL_RSS_MIB = 64.0
GOAL_REFRESH_MS = 50.0
GOAL_SERIES = 600
GOAL_SLOWLORIS_RSS_MIB = 96.0
GOAL_SLOWLORIS_P99_MS = 10.0
# "Zero effect" on p99, read as: within measurement noise, i.e. <= 10 % or 0.1 ms more, whichever is larger.
ZERO_EFFECT_TOLERANCE = (0.10, 0.1)
ATTRIBUTION_GPUS, ATTRIBUTION_MIG, ATTRIBUTION_SLICES, ATTRIBUTION_PODS = 10, "7x1g.10gb", 64, 1000
# Back-to-back scrapes stop after this long even if short of the request count (64 slow GPUs, 10 scrapers).
MAX_SECONDS_PER_RUN = 12.0
PACED_PERIOD_S = 0.1
PLAIN_HEADERS = {k: v for k, v in PROM_HEADERS.items() if k != "Accept-Encoding"}
MIB = 1 << 20
HERE = Path(__file__).resolve().parent


# ---- helpers shared with the worker processes (stdlib only: spawned scrapers import this module) ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def _get(port: int, headers: dict[str, str] | None = None, path: str = "/metrics") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _scraper(port: int, requests: int, seconds: float, headers: dict[str, str], barrier: Any, results: Any,
             period: float = 0.0) -> None:
    """One scraper process: warm up, wait for the others, then `requests` scrapes (or `seconds`).

    period 0 = back to back (a closed loop: saturation, latency is mostly queueing behind the other
    scrapers on 2 cores); period > 0 = one scrape every `period` seconds, started at a random offset.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    reconnects = 0
    for _ in range(5):
        conn.request("GET", "/metrics", headers=headers)
        conn.getresponse().read()
    barrier.wait()
    if period:
        time.sleep(random.uniform(0, period))
    deadline = time.perf_counter() + seconds
    latencies = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        if started > deadline:
            break
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"/metrics answered {resp.status}")
        size = len(body)
        reconnects += resp.will_close
        if period:
            time.sleep(max(0.0, started + period - time.perf_counter()))
    conn.close()
    results.put((latencies, reconnects, size))


def _scrape_latency(port: int, scrapers: int, requests: int, headers: dict[str, str] = PROM_HEADERS,
                    period: float = 0.0) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(scrapers), ctx.Queue()
    seconds = MAX_SECONDS_PER_RUN if not period else min(MAX_SECONDS_PER_RUN, requests * period)
    procs = [ctx.Process(target=_scraper, args=(port, requests, seconds, headers, barrier, results, period),
                         daemon=True) for _ in range(scrapers)]
    for p in procs:
        p.start()
    collected = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    latencies = [v for lat, _, _ in collected for v in lat]
    return {
        "scrapers": scrapers, "requests": len(latencies),
        "p50_ms": round(_percentile(latencies, 0.50), 3), "p99_ms": round(_percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3), "max_ms": round(max(latencies), 3),
        "keep_alive": sum(r for _, r, _ in collected) == 0, "body_bytes": collected[0][2], "period_s": period,
    }


def _count_series(text: str) -> dict[str, Any]:
    """Families and series of a text-format exposition; per-GPU = a family with a `uuid`-labelled series."""
    from prometheus_client.parser import text_string_to_metric_families

    families, gpu_families, na_families = 0, 0, []
    series = na_series = 0
    for family in text_string_to_metric_families(text):
        if not family.samples:
            continue  # declared but never set (e.g. nvitop's per-process gauges with no processes)
        families += 1
        series += len(family.samples)
        nans = sum(1 for s in family.samples if math.isnan(s.value))
        na_series += nans
        if any("uuid" in s.labels for s in family.samples):
            gpu_families += 1
            if nans == len(family.samples):
                na_families.append(family.name)
    return {"families": families, "gpu_families": gpu_families, "series": series, "na_series": na_series,
            "gpu_families_all_na": sorted(na_families),
            "gpu_families_with_data": gpu_families - len(na_families)}


# ---- serving processes ----

def _gpulens_cmd(n: int, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", f"{n}:h100", "--listen-address",
            "127.0.0.1", "--port", str(port), "--interval-seconds", "1", "--log-level", "warning",
            *(extra or ("--pod-attribution", "false"))]


def _nvitop_cmd(n: int, port: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", "serve-nvitop", str(n), str(port)]


@contextmanager
def _serving(cmd: list[str], port: int, log: Path, ready: str, status_wanted: int = 200) -> Iterator[int]:
    """Start an exporter process; yields its pid once /metrics holds `ready`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited {proc.returncode}; see {log}")
            try:
                status, body = _get(port)
                if status == status_wanted and ready.encode() in body:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} not ready in 120 s; see {log}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _steady(pid: int, port: int, seconds: float) -> dict[str, float]:
    """RSS (median of samples) and CPU of the serving process while Prometheus-like scrapes arrive each 1 s."""
    import psutil

    proc = psutil.Process(pid)
    rss = []
    cpu0 = proc.cpu_times()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        _get(port, PROM_HEADERS)
        rss.append(proc.memory_info().rss / MIB)
        time.sleep(1.0)
    cpu1 = proc.cpu_times()
    elapsed = time.monotonic() - started
    return {"rss_mib": round(statistics.median(rss), 1),
            "cpu_ms_per_s": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000 / elapsed, 1)}


def _idle(pid: int, seconds: float) -> float:
    """CPU ms per second of the serving process while nobody scrapes it."""
    import psutil

    proc = psutil.Process(pid)
    cpu0 = proc.cpu_times()
    started = time.monotonic()
    time.sleep(seconds)
    cpu1 = proc.cpu_times()
    return round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) * 1000 / (time.monotonic() - started), 2)


def _worker_json(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", *args], cwd=HERE.parent,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_tool(tool: str, n: int, requests: int, warmup: float, logdir: Path) -> dict[str, Any]:
    port = _free_port()
    if tool == "gpulens":
        cmd, ready = _gpulens_cmd(n, port), "gpulens_gpu_up{"
    else:
        cmd, ready = _nvitop_cmd(n, port), "gpu_utilization_Percentage{"
    row: dict[str, Any] = {"tool": tool, "gpus": n}
    with _serving(cmd, port, logdir / f"{tool}-{n}.log", ready) as pid:
        time.sleep(warmup)
        row["idle_cpu_ms_per_s"] = _idle(pid, max(5.0, 2 * warmup))  # no scrapes at all
        row.update(_steady(pid, port, max(5.0, 2 * warmup)))  # one Prometheus-like scrape a second
        row["scrape_cpu_ms"] = round(max(0.0, row["cpu_ms_per_s"] - row["idle_cpu_ms_per_s"]), 2)
        _, text = _get(port)
        row.update(_count_series(text.decode()))
        row["latency"] = {str(s): _scrape_latency(port, s, requests) for s in SCRAPERS}
        if n == 8:  # the goal's point, once more without gzip: separates compression from serving
            row["latency_no_gzip_10"] = _scrape_latency(port, 10, requests, PLAIN_HEADERS)
            # and at a pace: 10 scrapers, each 10 scrapes a second (Prometheus does one per 15 s)
            row["latency_paced_10"] = _scrape_latency(port, 10, min(requests, 100), period=PACED_PERIOD_S)
        import psutil
        row["rss_after_load_mib"] = round(psutil.Process(pid).memory_info().rss / MIB, 1)
    row["cpu"] = _worker_json(f"cpu-{tool}", str(n))
    if tool == "gpulens":
        row["cpu_sampling_only"] = _worker_json("cpu-gpulens-sampling", str(n))
    return row


# ---- issue 6: hostile clients and faults ----

def _paced_p99(port: int, seconds: float, period: float = 0.1) -> dict[str, float]:
    """One scraper as Prometheus scrapes: a kept-alive connection (reconnecting if cut), paced."""
    times, failures = [], 0
    end = time.monotonic() + seconds
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < end:
        t = time.perf_counter()
        try:
            conn.request("GET", "/metrics", headers=PROM_HEADERS)
            resp = conn.getresponse()
            resp.read()
            failures += resp.status != 200
        except OSError:
            failures += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        times.append((time.perf_counter() - t) * 1000)
        time.sleep(period)
    conn.close()
    return {"p50_ms": round(_percentile(times, 0.5), 3), "p99_ms": round(_percentile(times, 0.99), 3),
            "max_ms": round(max(times), 3), "requests": len(times), "failures": failures}


def bench_slowloris(connections: int, hold: float, logdir: Path) -> dict[str, Any]:
    """`connections` slow-header clients (reconnecting when cut) against 8 GPUs; a normal scraper meanwhile and after."""
    import psutil

    port = _free_port()
    with _serving(_gpulens_cmd(8, port), port, logdir / "slowloris.log", "gpulens_gpu_up{") as pid:
        proc = psutil.Process(pid)
        time.sleep(2.0)
        before = _paced_p99(port, 3.0)
        attacker = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "slowloris", str(port),
                                     str(connections), str(hold)], cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
        rss = [proc.memory_info().rss / MIB]
        time.sleep(min(5.0, hold / 3))  # let the connections pile up
        during = _paced_p99(port, hold / 2)
        while attacker.poll() is None:
            rss.append(proc.memory_info().rss / MIB)
            time.sleep(0.2)
        opened = json.loads((attacker.stdout.read() if attacker.stdout else "{}").strip().splitlines()[-1])
        after = _paced_p99(port, 5.0)
        rss.append(proc.memory_info().rss / MIB)
    return {"connections": connections, "opened": opened, "rss_peak_mib": round(max(rss), 1),
            "rss_after_mib": round(rss[-1], 1), "before": before, "during": during, "after": after,
            "pass": max(rss) <= GOAL_SLOWLORIS_RSS_MIB and during["p99_ms"] <= GOAL_SLOWLORIS_P99_MS
            and after["p99_ms"] <= GOAL_SLOWLORIS_P99_MS and not during["failures"] and not after["failures"]}


def _metric(body: bytes, name: str) -> float | None:
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def bench_faults(logdir: Path) -> list[dict[str, Any]]:
    """The fault table: each scenario run against a real exporter process, with the test that guards it."""
    import zlib

    rows: list[dict[str, Any]] = []
    # hang at start: nvmlInit blocks for the first 6 s
    port = _free_port()
    with _serving(_gpulens_cmd(2, port, "--pod-attribution", "false", "--simulate-faults", "hang:nvmlInit@0s..6s"),
                  port, logdir / "hang-start.log", "gpulens_nvml_up") as _:
        time.sleep(3.0)
        _, body = _get(port)
        ready, _ = _get(port, path="/readyz")
        rows.append({"fault": "NVML hangs before the first sample (6 s)", "test": "test_hang_before_the_first_sample_is_visible",
                     "observed": f"at 3 s: nvml_up {_metric(body, 'gpulens_nvml_up')}, sample age "
                                 f"{_metric(body, 'gpulens_gpu_sample_age_seconds'):.1f} s, /readyz {ready}",
                     "pass": _metric(body, "gpulens_nvml_up") == 0 and (_metric(body, "gpulens_gpu_sample_age_seconds") or 0) >= 2
                     and ready == 503})
    # hang with XIDs: power reads hang 2..10 s, XID 79 at 4 s
    port = _free_port()
    with _serving(_gpulens_cmd(2, port, "--pod-attribution", "false", "--simulate-faults",
                               "hang:nvmlDeviceGetPowerUsage@2s..10s; xid:79@gpu1+4s"), port, logdir / "hang-xid.log",
                  "gpulens_gpu_up{") as _:
        time.sleep(6.0)
        _, body = _get(port)
        xid = _metric(body, 'gpulens_gpu_xid_errors_total{gpu="1"')
        for line in body.decode().splitlines():
            if line.startswith('gpulens_gpu_xid_errors_total{gpu="1"'):
                xid = float(line.rsplit(" ", 1)[1])
        age = _metric(body, "gpulens_gpu_sample_age_seconds") or 0
        rows.append({"fault": "NVML hangs (8 s) and XID 79 arrives meanwhile", "test": "test_xids_are_published_while_nvml_hangs",
                     "observed": f"at 6 s: XID 79 count {xid}, sample age {age:.1f} s", "pass": xid == 1 and age >= 2})
    # gzip: one member holding everything, # EOF included
    port = _free_port()
    with _serving(_gpulens_cmd(2, port), port, logdir / "gzip.log", "gpulens_gpu_up{") as _:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics", headers=PROM_HEADERS)
        raw = conn.getresponse().read()
        conn.close()
        one = zlib.decompressobj(31)
        text = one.decompress(raw)
        ok = one.eof and not one.unused_data and text.endswith(b"# EOF\n") and b"gpulens_gpu_sample_age_seconds" in text
        rows.append({"fault": "gzip body read by a one-member decoder (curl --compressed)",
                     "test": "test_per_scrape_tail_is_in_the_same_single_gzip_member",
                     "observed": f"first member holds the whole body ({len(text)} B, sample age and # EOF): {ok}", "pass": ok})
    # web-config rotation: a new password takes effect without a restart
    import base64

    import bcrypt

    port = _free_port()
    web = logdir / "web-config.yml"
    web.write_text(f"basic_auth_users: {{prometheus: '{bcrypt.hashpw(b'old', bcrypt.gensalt(4)).decode()}'}}\n")

    def status(password: str) -> int:
        auth = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()}
        return _get(port, auth)[0]

    cmd = _gpulens_cmd(2, port, "--pod-attribution", "false", "--web-config-file", str(web))
    with _serving(cmd, port, logdir / "rotation.log", "Unauthorized", 401) as _:
        before = status("old")
        web.write_text(f"basic_auth_users: {{prometheus: '{bcrypt.hashpw(b'new', bcrypt.gensalt(4)).decode()}'}}\n")
        started = time.monotonic()
        while status("new") != 200 and time.monotonic() - started < 10:
            time.sleep(0.1)
        took = time.monotonic() - started
        rows.append({"fault": "web-config password rotated on disk",
                     "test": "test_web_config_is_reloaded_and_a_broken_one_keeps_the_last_good",
                     "observed": f"old password {before}; new one accepted after {took:.1f} s, old one then {status('old')}",
                     "pass": before == 200 and took < 10 and status("old") == 401})
    return rows


# ---- issue 3: pod attribution ----

def _attribution_pods(mig_uuids: list[str]) -> list[dict[str, Any]]:
    pods = [{"namespace": "models", "name": f"model-{i:03d}-predictor-00001-deployment-7d9f8c6b5-{i:05x}",
             "containers": [["kserve-container", "nvidia.com/mig-1g.10gb", [uuid]], ["queue-proxy", "", []]]}
            for i, uuid in enumerate(mig_uuids[:ATTRIBUTION_SLICES])]
    pods += [{"namespace": f"team-{i % 20:02d}", "name": f"web-{i:04d}-6b8d9f7c5d-{i:05x}",
              "containers": [["app", "", []], ["istio-proxy", "", []]]} for i in range(len(pods), ATTRIBUTION_PODS)]
    return pods


def _mig_uuids(n: int, layout: str) -> list[str]:
    import pynvml

    from gpulens.sim import SimulatedNVML

    nv = SimulatedNVML(count=n, model="h100", mig=layout)
    nv.nvmlInit()
    uuids = []
    for i in range(n):
        handle = nv.nvmlDeviceGetHandleByIndex(i)
        for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
            except pynvml.NVMLError_NotFound:  # an empty MIG slot
                mig = None
            if mig is not None:
                uuids.append(nv.nvmlDeviceGetUUID(mig))
    return uuids


def bench_attribution(requests: int, refreshes: int, logdir: Path) -> dict[str, Any]:
    from gpulens.exporters.podresources.client import PodResourcesWatcher

    uuids = _mig_uuids(ATTRIBUTION_GPUS, ATTRIBUTION_MIG)
    result: dict[str, Any] = {
        "gpus": ATTRIBUTION_GPUS, "mig_layout": ATTRIBUTION_MIG, "mig_slices_on_node": len(uuids),
        "mig_slices_allocated": min(ATTRIBUTION_SLICES, len(uuids)), "pods": ATTRIBUTION_PODS,
        "note": f"64 MIG slices need >= 10 H100s at 7 slices each: {ATTRIBUTION_GPUS} x {ATTRIBUTION_MIG} = "
                f"{len(uuids)} slices, {ATTRIBUTION_SLICES} of them held by pods",
    }
    with tempfile.TemporaryDirectory(prefix="gpulens-bench-") as tmp:
        pods_file, socket_path = Path(tmp, "pods.json"), str(Path(tmp, "kubelet.sock"))
        pods_file.write_text(json.dumps(_attribution_pods(uuids)))
        kubelet = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "kubelet",
                                    socket_path, str(pods_file)], cwd=HERE.parent, stdin=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(socket_path) and time.monotonic() < deadline:
                time.sleep(0.1)
            watcher = PodResourcesWatcher(socket_path, 10.0)
            if not watcher.refresh():
                raise RuntimeError("first PodResources List() failed")
            wall, thread_cpu, process_cpu = [], [], []
            for _ in range(refreshes):
                w, t, p = time.perf_counter(), time.thread_time(), time.process_time()
                if not watcher.refresh():
                    raise RuntimeError("List() failed during the bench")
                wall.append((time.perf_counter() - w) * 1000)
                thread_cpu.append((time.thread_time() - t) * 1000)
                process_cpu.append((time.process_time() - p) * 1000)
            result["devices_mapped"] = len(watcher.mapping())
            watcher.stop()
            result["refresh"] = {name: {"p50_ms": round(_percentile(v, 0.5), 3), "p99_ms": round(_percentile(v, 0.99), 3),
                                        "mean_ms": round(statistics.fmean(v), 3)}
                                 for name, v in (("wall", wall), ("thread_cpu", thread_cpu), ("process_cpu", process_cpu))}
            result["refreshes"] = refreshes
            for mode, extra in (("off", ("--pod-attribution", "false")),
                                ("every_0.1s", ("--pod-attribution", "true", "--podresources-socket", socket_path,
                                                "--podresources-interval-seconds", "0.1"))):
                port = _free_port()
                cmd = _gpulens_cmd(ATTRIBUTION_GPUS, port, "--simulate-mig", ATTRIBUTION_MIG, *extra)
                with _serving(cmd, port, logdir / f"attribution-{mode}.log", "gpulens_gpu_up{") as pid:
                    time.sleep(2.0)
                    _, text = _get(port)
                    steady = _steady(pid, port, 3.0)
                    result[mode] = {
                        "latency_10_scrapers": _scrape_latency(port, 10, requests),
                        "series_with_pod": sum(1 for line in text.decode().splitlines()
                                               if 'pod="model-' in line),
                        "server_cpu_ms_per_s": steady["cpu_ms_per_s"],
                    }
        finally:
            kubelet.stdin.close()  # type: ignore[union-attr]
            kubelet.wait(15)
    off, on = result["off"]["latency_10_scrapers"]["p99_ms"], result["every_0.1s"]["latency_10_scrapers"]["p99_ms"]
    allowed = max(off * (1 + ZERO_EFFECT_TOLERANCE[0]), off + ZERO_EFFECT_TOLERANCE[1])
    result["goals"] = {
        "refresh_cpu_p99_le_50ms": result["refresh"]["process_cpu"]["p99_ms"] <= GOAL_REFRESH_MS,
        "p99_unaffected": on <= allowed,
    }
    result["p99_delta_ms"] = round(on - off, 3)
    return result


# ---- goals and table ----

def _row(rows: list[dict[str, Any]], tool: str, n: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["tool"] == tool and r["gpus"] == n and "error" not in r), None)


def goals(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    g, nv = _row(rows, "gpulens", 8), _row(rows, "nvitop-exporter", 8)
    out: list[tuple[str, str, bool | None]] = []
    if g is None:
        return [("gpulens at 8 GPUs", "did not run", None)]
    paced = g["latency_paced_10"]["p99_ms"]
    out.append((f"/metrics p99 <= 1 ms (8 GPUs, 10 scrapers at {1 / PACED_PERIOD_S:.0f}/s each)", f"{paced:.3f} ms",
                paced <= GOAL_P99_MS))
    p99 = g["latency"]["10"]["p99_ms"]
    out.append(("/metrics p99 <= 1 ms (8 GPUs, 10 scrapers back to back: saturation)", f"{p99:.3f} ms",
                p99 <= GOAL_P99_MS))
    if nv is not None:
        nv_p99 = nv["latency"]["10"]["p99_ms"]
        out.append((">= 3x faster p99 than nvitop-exporter (8 GPUs, 10 scrapers)",
                    f"{nv_p99 / p99:.1f}x ({nv_p99:.3f} vs {p99:.3f} ms)", nv_p99 >= GOAL_SPEEDUP * p99))
        gc, nc = g["cpu_sampling_only"]["cpu_ms_per_cycle_per_gpu"], nv["cpu"]["cpu_ms_per_cycle_per_gpu"]
        out.append(("sampling CPU per GPU <= nvitop-exporter's update_device (8 GPUs)", f"{gc:.3f} vs {nc:.3f} ms",
                    gc <= nc))
        gt = g["cpu"]["cpu_ms_per_cycle_per_gpu"]
        out.append(("  (gpulens sampling + pre-rendering both formats, per GPU)", f"{gt:.3f} ms", None))
        np50 = nv["latency_paced_10"]["p99_ms"]
        out.append((">= 3x faster p99 than nvitop-exporter (8 GPUs, paced scrapers)",
                    f"{np50 / paced:.1f}x ({np50:.3f} vs {paced:.3f} ms)", np50 >= GOAL_SPEEDUP * paced))
        gf, nf = g["gpu_families"], nv["gpu_families"]
        out.append((">= 2x the per-GPU families of nvitop-exporter (8 GPUs)",
                    f"{gf} vs {nf} ({nv['gpu_families_with_data']} with data on the sim)", gf >= GOAL_FAMILIES_RATIO * nf))
    else:
        out.append(("comparisons with nvitop-exporter", "nvitop-exporter did not run", None))
    out.append(("RSS <= 64 MiB (8 GPUs)", f"{g['rss_mib']:.1f} MiB", g["rss_mib"] <= GOAL_RSS_MIB))
    out.append((f"default series <= {GOAL_SERIES} (8 H100s, default flags)", f"{g['series']}", g["series"] <= GOAL_SERIES))
    if nv is not None:
        out.append(("idle CPU <= nvitop-exporter's (8 GPUs, no scrapes)",
                    f"{g['idle_cpu_ms_per_s']:.2f} vs {nv['idle_cpu_ms_per_s']:.2f} ms/s",
                    g["idle_cpu_ms_per_s"] <= nv["idle_cpu_ms_per_s"]))
        out.append(("  CPU per scrape at 1 scrape/s (8 GPUs)", f"{g['scrape_cpu_ms']:.2f} vs {nv['scrape_cpu_ms']:.2f} ms", None))
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'tool':<16}{'GPUs':>5}{'p50 1':>9}{'p99 1':>9}{'p50 10':>9}{'p99 10':>9}{'CPU ms':>9}"
            f"{'fam':>5}{'gpu fam':>8}{'series':>8}{'N/A':>6}{'RSS MiB':>9}{'idle':>7}{'1/s':>7}")
    print("latency in ms (1 and 10 concurrent scrapers), CPU ms per sample cycle per GPU (gpulens: sample + render),")
    print("CPU ms/s of the serving process idle (no scrapes) and at one scrape a second")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['tool']:<16}{r['gpus']:>5}  could not run: {r['error']}")
            continue
        lat = r["latency"]
        print(f"{r['tool']:<16}{r['gpus']:>5}{lat['1']['p50_ms']:>9.3f}{lat['1']['p99_ms']:>9.3f}"
              f"{lat['10']['p50_ms']:>9.3f}{lat['10']['p99_ms']:>9.3f}{r['cpu']['cpu_ms_per_cycle_per_gpu']:>9.3f}"
              f"{r['families']:>5}{r['gpu_families']:>8}{r['series']:>8}{r['na_series']:>6}{r['rss_mib']:>9.1f}"
              f"{r['idle_cpu_ms_per_s']:>7.2f}{r['cpu_ms_per_s']:>7.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and refreshes: a smoke run")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "gpu_exporter.json")
    parser.add_argument("--gpus", default=",".join(map(str, GPU_COUNTS)), help="GPU counts, comma-separated")
    parser.add_argument("--skip-attribution", action="store_true")
    parser.add_argument("--skip-faults", action="store_true", help="no slowloris or fault table")
    parser.add_argument("--slowloris", type=int, default=5000, help="slow-header connections to hold")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    requests, refreshes, warmup = (50, 10, 2.0) if args.quick else (500, 50, 4.0)
    logdir = Path(tempfile.mkdtemp(prefix="gpulens-bench-logs-"))
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for n in (int(x) for x in args.gpus.split(",")):
        for tool in TOOLS:
            print(f"... {tool} at {n} GPUs", file=sys.stderr, flush=True)
            try:
                rows.append(bench_tool(tool, n, requests, warmup, logdir))
            except (RuntimeError, OSError, ValueError, KeyError) as err:  # report it; never fake numbers
                rows.append({"tool": tool, "gpus": n, "error": f"{type(err).__name__}: {str(err)[:500]}"})
    nv_diag = None
    try:
        nv_diag = _worker_json("nvitop-diag", "8")
    except (RuntimeError, ValueError) as err:
        nv_diag = {"error": str(err)[:500]}
    slowloris = faults = None
    if not args.skip_faults:
        print("... slowloris and faults", file=sys.stderr, flush=True)
        slowloris = bench_slowloris(args.slowloris, 20.0 if args.quick else 40.0, logdir)
        faults = bench_faults(logdir)
    attribution = None
    if not args.skip_attribution:
        print("... pod attribution", file=sys.stderr, flush=True)
        attribution = bench_attribution(requests, refreshes, logdir)
    print()
    print_table(rows)
    for r in rows:
        if "error" not in r and "latency_no_gzip_10" in r:
            plain = r["latency_no_gzip_10"]
            print(f"{r['tool']} at 8 GPUs, 10 scrapers without gzip: p50 {plain['p50_ms']:.3f} ms, "
                  f"p99 {plain['p99_ms']:.3f} ms ({plain['requests']} requests, body {plain['body_bytes']} B)")
    for tool in sorted({r["tool"] for r in rows if "error" not in r and not r["latency"]["10"]["keep_alive"]}):
        print(f"{tool} closes the connection after each scrape (HTTP/1.0): its scrapers reconnect every time")
    print()
    results = goals(rows)
    if attribution is not None:
        r = attribution
        results.append((f"attribution refresh CPU p99 <= 50 ms ({r['pods']} pods, {r['mig_slices_allocated']} MIG slices)",
                        f"{r['refresh']['process_cpu']['p99_ms']:.2f} ms (wall p99 {r['refresh']['wall']['p99_ms']:.2f})",
                        r["goals"]["refresh_cpu_p99_le_50ms"]))
        results.append(("attribution every 0.1 s leaves /metrics p99 unchanged (10 scrapers)",
                        (f"{r['every_0.1s']['latency_10_scrapers']['p99_ms']:.3f} vs "
                         f"{r['off']['latency_10_scrapers']['p99_ms']:.3f} ms off"), r["goals"]["p99_unaffected"]))
    if slowloris is not None:
        r = slowloris
        results.append((f"{r['connections']} slowloris connections: RSS <= {GOAL_SLOWLORIS_RSS_MIB:.0f} MiB, scraper p99 <= "
                        f"{GOAL_SLOWLORIS_P99_MS:.0f} ms during and after",
                        f"RSS peak {r['rss_peak_mib']} MiB, p99 {r['during']['p99_ms']} ms during / {r['after']['p99_ms']} ms after "
                        f"(before {r['before']['p99_ms']} ms; {r['opened']['opened']} opened, "
                        f"{r['opened']['cut_or_refused']} cut; failures {r['during']['failures']}/{r['after']['failures']})",
                        r["pass"]))
    if faults is not None:
        print("faults")
        for f in faults:
            print(f"  {'PASS' if f['pass'] else 'MISS'}  {f['fault']}: {f['observed']}  [{f['test']}]")
        print()
    print("goals")
    for name, value, ok in results:
        print(f"  {'PASS' if ok else ('MISS' if ok is False else 'N/A '):<5} {name}: {value}")
    if nv_diag is not None and "error" not in nv_diag:
        print(f"nvitop-exporter on the sim: {', '.join(nv_diag['shims'])}; C entry points it calls directly "
              f"(not simulatable, so N/A): {', '.join(nv_diag['function_pointers']) or 'none'}; "
              f"NVML errors: {', '.join(f'{k} {v}x' for k, v in nv_diag['nvml_errors'].items()) or 'none'}")
    print(f"(run took {time.monotonic() - started:.0f} s; server logs in {logdir})")
    doc = {
        "bench": "gpu_exporter", "quick": args.quick, "requests_per_scraper": requests, "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0], "scrape_headers": PROM_HEADERS,
        "method": {
            "latency": "each scraper a separate process, back to back over one http.client connection; pooled p50/p99",
            "cpu": "time.thread_time around gpulens sampler.cycle() (sample + render both formats) / "
                   "nvitop update_device() over all devices (sample + gauge sets; host part excluded), per GPU",
            "rss": "median RSS of the fresh serving process over the steady window after warm-up",
        },
        "rows": rows, "nvitop_on_sim": nv_diag, "attribution": attribution, "slowloris": slowloris, "faults": faults,
        "goals": [{"goal": n, "value": v, "pass": ok} for n, v, ok in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.json}")
    return 0


# ---- workers: each runs in a fresh process ----

class _StepClock:
    """Monotonic clock the CPU worker advances one interval per cycle, so GPM windows are real-sized."""

    def __init__(self) -> None:
        self.t = time.monotonic()

    def __call__(self) -> float:
        return self.t


def _install_nvitop_sim(n: int, zero_latency: bool = False) -> tuple[Any, Counter[str], Counter[str], list[str]]:
    """sys.modules['pynvml'] = the sim, before nvitop is imported; returns what nvitop could not get."""
    from gpulens.sim import SIMULATED_FUNCTIONS, SimulatedNVML

    sim = SimulatedNVML(count=n, model="h100")
    if zero_latency:  # CPU worker: the sim's 20 ms PCIe sleep costs wall time, not CPU
        sim.set_latency("nvmlDeviceGetPcieThroughput", 0.0)
    module = sim.as_module()
    shims = []
    if "nvmlInitWithFlags" not in SIMULATED_FUNCTIONS:
        # nvitop initialises with nvmlInitWithFlags(0), which is nvmlInit(); the sim lacks the flags variant.
        module.nvmlInitWithFlags = lambda flags: sim.nvmlInit()  # type: ignore[attr-defined]
        shims.append("nvmlInitWithFlags(0) mapped to the sim's nvmlInit()")
    pointers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    # nvitop calls some versioned NVML entry points through ctypes function pointers, bypassing
    # pynvml's Python functions; a simulated module cannot serve those (they raise FunctionNotFound).
    real_pointer = module._nvmlGetFunctionPointer

    def pointer(name: str) -> Any:
        pointers[name] += 1
        return real_pointer(name)

    module._nvmlGetFunctionPointer = pointer  # type: ignore[attr-defined]
    for name, fn in list(vars(module).items()):
        if name.startswith("nvml") and callable(fn) and not isinstance(fn, type):
            def counted(*a: Any, __fn: Any = fn, __name: str = name, **k: Any) -> Any:
                try:
                    return __fn(*a, **k)
                except module.NVMLError as err:
                    errors[f"{__name}: {type(err).__name__}"] += 1
                    raise
            setattr(module, name, counted)
    sys.modules["pynvml"] = module
    return sim, pointers, errors, shims


def _worker(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "serve-nvitop":
        n, port = int(argv[1]), int(argv[2])
        from gpulens.sim import SIMULATED_FUNCTIONS, SimulatedNVML

        sim = SimulatedNVML(count=n, model="h100")
        module = sim.as_module()
        if "nvmlInitWithFlags" not in SIMULATED_FUNCTIONS:
            module.nvmlInitWithFlags = lambda flags: sim.nvmlInit()  # type: ignore[attr-defined]
        sys.modules["pynvml"] = module
        from nvitop_exporter.cli import main as nvitop_main

        sys.argv = ["nvitop-exporter", "--bind-address", "127.0.0.1", "--port", str(port), "--interval", "1",
                    "--hostname", "bench"]
        return int(nvitop_main() or 0)
    if kind == "cpu-gpulens":
        n = int(argv[1])
        from dataclasses import replace

        from gpulens.exporters.gpu.app import GpuExporter
        from gpulens.exporters.gpu.config import GpuExporterConfig
        from gpulens.sim import SimulatedNVML

        clock = _StepClock()
        cfg = replace(GpuExporterConfig(), pod_attribution=False, xid_events=False, interval_seconds=1.0)
        exporter = GpuExporter(cfg, SimulatedNVML(count=n, model="h100"), "simulated", clock=clock)

        def cycle() -> None:  # one sample and the render the next scrape pays for (both formats)
            clock.t += 1.0
            exporter.sampler.cycle()
            exporter.render(True)
    elif kind == "cpu-gpulens-sampling":  # NVML reads alone, no rendering: what nvitop's update_device does
        n = int(argv[1])
        from gpulens.exporters.gpu.sampler import Sampler
        from gpulens.sim import SimulatedNVML

        clock = _StepClock()
        sampler = Sampler(SimulatedNVML(count=n, model="h100"), 1.0, clock=clock)

        def cycle() -> None:
            clock.t += 1.0
            sampler.cycle()
    elif kind == "cpu-nvitop-exporter":
        n = int(argv[1])
        _install_nvitop_sim(n, zero_latency=True)
        from nvitop import Device
        from nvitop_exporter.exporter import PrometheusExporter
        from prometheus_client import CollectorRegistry

        devices = Device.from_indices(range(Device.count()))
        devices = sorted(devices + [m for d in devices for m in d.mig_devices()],
                         key=lambda d: (d.index,) if isinstance(d.index, int) else d.index)
        nvexp = PrometheusExporter(devices, hostname="bench", registry=CollectorRegistry(), interval=1.0)

        def cycle() -> None:
            for device in devices:
                nvexp.update_device(device)
    elif kind == "nvitop-diag":
        _, pointers, errors, shims = _install_nvitop_sim(int(argv[1]))
        import io
        from contextlib import redirect_stderr

        from nvitop import Device
        from nvitop_exporter.exporter import PrometheusExporter
        from prometheus_client import CollectorRegistry

        devices = Device.from_indices(range(Device.count()))
        with redirect_stderr(io.StringIO()):
            nvexp = PrometheusExporter(devices, hostname="bench", registry=CollectorRegistry(), interval=1.0)
            for _ in range(2):
                for device in devices:
                    nvexp.update_device(device)
        print(json.dumps({"shims": shims, "function_pointers": sorted(pointers),
                          "nvml_errors": dict(sorted(errors.items()))}))
        return 0
    elif kind == "slowloris":
        port, count, hold = int(argv[1]), int(argv[2]), float(argv[3])
        socks: list[socket.socket] = []
        opened = cut = 0
        end = time.monotonic() + hold
        while time.monotonic() < end:
            while len(socks) < count and time.monotonic() < end:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    sock.setblocking(False)
                    socks.append(sock)
                    opened += 1
                except OSError:
                    cut += 1
            alive = []
            for sock in socks:  # a byte each round; reconnect what the server cut
                try:
                    sock.send(b"a")
                    alive.append(sock)
                except OSError:
                    sock.close()
                    cut += 1
            socks = alive
            time.sleep(0.5)
        for sock in socks:
            sock.close()
        print(json.dumps({"opened": opened, "cut_or_refused": cut}))
        return 0
    elif kind == "kubelet":
        socket_path, pods_file = argv[1], argv[2]
        from gpulens.sim.kubelet import FakeKubelet, PodSpec

        kubelet = FakeKubelet(socket_path).start()
        kubelet.set_pods([PodSpec(p["namespace"], p["name"], [tuple(c) for c in p["containers"]])
                          for p in json.loads(Path(pods_file).read_text())])
        sys.stdin.read()  # serve until the parent closes our stdin
        kubelet.stop()
        return 0
    else:
        raise SystemExit(f"unknown worker {kind}")
    for _ in range(3):
        cycle()
    t = time.thread_time()
    cycle()
    one = max(time.thread_time() - t, 1e-4)
    cycles = max(5, min(200, int(2.0 / one)))
    t0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(cycles):
        cycle()
    cpu = (time.thread_time() - t0) * 1000 / cycles
    print(json.dumps({"cycles": cycles, "cpu_ms_per_cycle": round(cpu, 3),
                      "cpu_ms_per_cycle_per_gpu": round(cpu / int(argv[1]), 4),
                      "wall_ms_per_cycle": round((time.perf_counter() - w0) * 1000 / cycles, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
