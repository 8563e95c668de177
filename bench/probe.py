"""Inference probe benchmark: what tracing and phase timing cost, and how exact the figures are.

    python bench/probe.py [--quick] [--json bench/results/probe.json]

Against the real KServe demo model server on 127.0.0.1 (one process per injected delay):
- Overhead: the full probe (phases, span tree with a batch processor exporting OTLP/HTTP to a local
  receiver, traceparent, result object) vs a bare http.client request on a kept-alive connection,
  same server, same model, same payload, interleaved in one run; goal: median difference ≤ 0.5 ms.
- Accuracy: the `slow` model sleeps 5, 50 and 500 ms; measured = median probe duration on `slow`
  minus median on `classifier` (same server, so the rest cancels); error = measured − injected;
  goal |error| ≤ 1 ms. The probe's `server` phase (TTFB) is reported the same way.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpulens.probes.inference.app import PROBERS, ProbeApp  # noqa: E402
from gpulens.probes.inference.config import ProbeConfig, parse_targets  # noqa: E402
from gpulens.probes.inference.otel import Tracing  # noqa: E402
from gpulens.sim.modelserver import ModelServerProcess, sample_input  # noqa: E402
from tests.probes.otlp import Receiver  # noqa: E402

GOAL_OVERHEAD_MS = 0.5
GOAL_ERROR_MS = 1.0
DELAYS = (0.005, 0.05, 0.5)


def _payload() -> dict[str, Any]:
    flat = [v for image in sample_input(1) for channel in image for row in channel for v in row]
    return {"inputs": [{"name": "input-0", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": flat}]}


def _app(url: str, receiver: Receiver) -> ProbeApp:
    cfg = ProbeConfig(otlp_endpoint=f"http://127.0.0.1:{receiver.http_port}/v1/traces", otlp_protocol="http")
    raw = [{"name": model, "url": url, "model": model, "protocol": "v2", "payload": _payload(), "timeout_seconds": 5}
           for model in ("classifier", "slow")]
    return ProbeApp(cfg, parse_targets({"targets": raw}, cfg), Tracing(cfg))


def overhead(server: ModelServerProcess, receiver: Receiver, n: int) -> dict[str, float]:
    app = _app(server.url, receiver)
    target, session = app.targets["classifier"], app.sessions["classifier"]
    body = json.dumps(_payload()).encode()
    conn = http.client.HTTPConnection(server.host, server.port)
    bare: list[float] = []
    traced: list[float] = []
    recorded: list[float] = []
    try:
        for i in range(n + 20):
            start = time.perf_counter()
            conn.request("POST", "/v2/models/classifier/infer", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            json.loads(resp.read())
            t_bare = time.perf_counter() - start
            start = time.perf_counter()  # the probe with tracing: phases, spans, traceparent, checks, result
            result = app.tracing.run(target, PROBERS["v2"], session, "v2")
            t_traced = time.perf_counter() - start
            start = time.perf_counter()
            app.recorder.record(target, "v2", result)
            app.recorder.render(True)
            t_recorded = time.perf_counter() - start
            assert result.success, result.message
            if i >= 20:  # warm-up: first connections, exporter start
                bare.append(t_bare)
                traced.append(t_traced)
                recorded.append(t_recorded)
    finally:
        conn.close()
        app.stop()
    bare_ms, traced_ms = statistics.median(bare) * 1e3, statistics.median(traced) * 1e3
    return {"bare_median_ms": bare_ms, "probe_median_ms": traced_ms, "overhead_ms": traced_ms - bare_ms,
            "record_and_render_median_ms": statistics.median(recorded) * 1e3, "n": n}


def accuracy(delay: float, receiver: Receiver, n: int) -> dict[str, float]:
    server = ModelServerProcess(models="classifier,slow", delay_seconds=delay).start()
    app = _app(server.url, receiver)
    try:
        durations: dict[str, list[float]] = {"classifier": [], "slow": []}
        ttfb: dict[str, list[float]] = {"classifier": [], "slow": []}
        for i in range(n + 5):
            for name in ("classifier", "slow"):
                result = app.probe_once(app.targets[name])
                assert result.success, result.message
                if i >= 5:
                    durations[name].append(result.duration)
                    ttfb[name].append(result.phases["server"])
    finally:
        app.stop()
        server.stop()
    measured = statistics.median(durations["slow"]) - statistics.median(durations["classifier"])
    measured_ttfb = statistics.median(ttfb["slow"]) - statistics.median(ttfb["classifier"])
    return {"injected_ms": delay * 1e3, "measured_ms": measured * 1e3, "error_ms": (measured - delay) * 1e3,
            "measured_server_phase_ms": measured_ttfb * 1e3, "server_phase_error_ms": (measured_ttfb - delay) * 1e3, "n": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--json", default=str(ROOT / "bench/results/probe.json"))
    ns = parser.parse_args(argv)
    n_overhead, n_accuracy = (50, 5) if ns.quick else (300, 20)
    receiver = Receiver().start()
    server = ModelServerProcess(models="classifier,slow", delay_seconds=DELAYS[0]).start()
    try:
        over = overhead(server, receiver, n_overhead)
    finally:
        server.stop()
    acc = [accuracy(delay, receiver, n_accuracy if delay < 0.5 else max(3, n_accuracy // 4)) for delay in DELAYS]
    receiver.stop()
    ok_overhead = over["overhead_ms"] <= GOAL_OVERHEAD_MS
    ok_accuracy = all(abs(a["error_ms"]) <= GOAL_ERROR_MS for a in acc)
    print(f"{'check':<44}{'value':>12}{'goal':>12}  ok")
    print(f"{'bare request median (ms)':<44}{over['bare_median_ms']:>12.3f}{'':>12}")
    print(f"{'probe with tracing median (ms)':<44}{over['probe_median_ms']:>12.3f}{'':>12}")
    print(f"{'probe overhead (ms)':<44}{over['overhead_ms']:>12.3f}{GOAL_OVERHEAD_MS:>12.3f}  {'yes' if ok_overhead else 'NO'}")
    print(f"{'record + render after a probe (ms)':<44}{over['record_and_render_median_ms']:>12.3f}{'':>12}")
    for a in acc:
        label = f"delay {a['injected_ms']:.0f} ms: error (ms)"
        ok = abs(a["error_ms"]) <= GOAL_ERROR_MS
        print(f"{label:<44}{a['error_ms']:>12.3f}{GOAL_ERROR_MS:>12.3f}  {'yes' if ok else 'NO'}")
        print(f"{'  server phase (TTFB) error (ms)':<44}{a['server_phase_error_ms']:>12.3f}")
    out = {"machine": {"python": platform.python_version(), "platform": platform.platform()},
           "goals": {"overhead_ms": GOAL_OVERHEAD_MS, "error_ms": GOAL_ERROR_MS},
           "overhead": over, "accuracy": acc, "ok": {"overhead": ok_overhead, "accuracy": ok_accuracy}}
    Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.json).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"wrote {ns.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
