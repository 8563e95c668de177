"""A small load generator for the demo model server, so the local stack's graphs move.

Sends v1 `:predict` and v2 `/infer` requests in turn at a rate that swings ±50 % around `--rps`
over a few minutes; one request in `--bad-every` carries a malformed input (HTTP 400), so the error
panels have something to show. Run by `gpulens up` as `python -m gpulens.up.load`.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from gpulens.sim.modelserver import sample_input

SWING_PERIOD_SECONDS = 240.0


def request_body(protocol: str, batch: int, bad: bool = False) -> bytes:
    """A v1 `instances` or v2 `inputs` JSON body for the demo classifier; `bad` breaks its shape."""
    data = sample_input(batch)
    if bad:
        data = [[1.0, 2.0, 3.0]]
    if protocol == "v1":
        return json.dumps({"instances": data}).encode()
    flat = [x for item in data for x in _flatten(item)]
    shape = [batch, 1, 8, 8] if not bad else [1, 3]
    return json.dumps({"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP32", "data": flat}]}).encode()


def _flatten(value: object) -> list[float]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [float(value)]  # type: ignore[arg-type]


def rate_at(rps: float, t: float) -> float:
    """Target requests per second at `t` seconds after start: a slow sine swing so curves have a shape."""
    return rps * (1.0 + 0.5 * math.sin(2 * math.pi * t / SWING_PERIOD_SECONDS))


def send(url: str, model: str, protocol: str, bad: bool, timeout: float = 5.0) -> int:
    """One request; returns the HTTP status (0 when no answer)."""
    path = f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"
    req = urllib.request.Request(url.rstrip("/") + path, data=request_body(protocol, 1 + (not bad), bad),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def run(url: str, models: Sequence[str], rps: float, bad_every: int, stop: threading.Event,
        say: Callable[[str], None] = print) -> int:
    """Send requests until `stop` is set; returns how many were sent."""
    start = time.monotonic()
    sent = 0
    statuses: dict[int, int] = {}
    next_report = start + 60
    while not stop.is_set():
        model = models[sent % len(models)]
        protocol = ("v1", "v2")[(sent // len(models)) % 2]
        bad = bad_every > 0 and sent % bad_every == bad_every - 1
        status = send(url, model, protocol, bad)
        statuses[status] = statuses.get(status, 0) + 1
        sent += 1
        now = time.monotonic()
        if now >= next_report:
            say(f"load: {sent} requests sent, by status {dict(sorted(statuses.items()))}")
            next_report = now + 60
        stop.wait(1.0 / max(rate_at(rps, now - start), 0.01))
    return sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulens.up.load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="model server base URL")
    parser.add_argument("--models", default="classifier", help="comma-separated model names")
    parser.add_argument("--rps", type=float, default=5.0)
    parser.add_argument("--bad-every", type=int, default=100, help="one malformed request in N (0: none)")
    ns = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(ns.url, [m for m in ns.models.split(",") if m], ns.rps, ns.bad_every, stop,
        say=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
