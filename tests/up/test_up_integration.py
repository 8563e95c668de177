"""`gpulens up` end to end: every component healthy, Prometheus has the dashboards' data, a fault pages, nothing is left.

One run of the real stack (KServe model server, exporters, probe, Prometheus, Alertmanager, load) on
free ports with 1 s intervals, about a minute in all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from gpulens.metrics import gpu as g
from gpulens.metrics import kserve as k
from gpulens.metrics import probe as p
from gpulens.up.links import load_dashboards, panel_queries
from gpulens.up.plan import dashboards_dir
from gpulens.up.prometheus import JOBS
from tests.prometheus_server import free_port
from tests.tools import require_tool

PORT_FLAGS = ("gpu-port", "kserve-port", "probe-port", "canary-port", "model-port", "prometheus-port", "alertmanager-port", "webhook-port")
# The queries behind the first row of each main dashboard; every one must return data.
MAIN_QUERIES = (
    g.GPU_UTIL.name, g.MEM_USED.name, g.POWER.name, g.TEMP.name, f"{g.CLOCK_EVENT.name} == 1",
    f'{g.GPU_ALLOCATION.name}{{pod!=""}}',
    f"sum by (model) (rate({k.REQUESTS.name}[30s])) > 0",
    f"histogram_quantile(0.99, sum by (le, model) (rate({k.REQUEST_DURATION.name}_bucket[30s])))",
    f"{p.SUCCESS.name} == 1",
    f"rate({p.DURATION.name}_sum[30s]) / rate({p.DURATION.name}_count[30s])",
)
XID_ALERT = "GpulensGpuXidCritical"
# Dashboard rows that stay empty in the local stack, and why; every other row must show data.
EMPTY_ROWS = {
    ("gpu-node.json", "MIG"): "the demo GPUs are not MIG-partitioned",
    ("inference.json", "Health"): "InferenceService state comes from the Kubernetes API; gpulens up runs static mode",
    ("inference.json", "Rollout"): "revisions and traffic split come from the Kubernetes API",
}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _until(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` (and the stack's output) if not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gpulens up exited with {proc.returncode} while waiting for {what}:\n{log.read_text()}")
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError, KeyError) as err:
            last = err
        time.sleep(0.5)
    pytest.fail(f"{what} not seen within {timeout:.0f}s (last: {last!r}); output:\n{log.read_text()}")


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = _get(f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    return list(body["data"]["result"])


def test_up_runs_the_suite_pages_on_a_fault_and_stops_clean(tmp_path: Path) -> None:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    ports = {flag: free_port() for flag in PORT_FLAGS}
    run_dir = tmp_path / "run"
    out = tmp_path / "up.out"
    argv = [sys.executable, "-m", "gpulens", "up", "--run-dir", str(run_dir), "--simulate", "4:h100",
            "--scrape-interval-seconds", "1", "--exporter-interval-seconds", "0.5", "--canary-interval-seconds", "5",
            "--load-rps", "20",
            "--fault", "xid79", "--fault-after-seconds", "3"]
    for flag, port in ports.items():
        argv += [f"--{flag}", str(port)]
    with open(out, "wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    children: list[psutil.Process] = []
    try:
        state = _until("stack.json (every component healthy)",
                       lambda: json.loads((run_dir / "stack.json").read_text()), 90, proc, out)
        assert state["skipped"] == [], state["skipped"]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert {"modelserver", "gpu-exporter", "kserve-exporter", "probe", "canary", "prometheus", "alertmanager", "load"} \
            <= set(state["pids"])
        prometheus = state["urls"]["prometheus"]

        # Every scrape target up, then data for the main dashboard queries.
        up = _until("every job up", lambda: {r["metric"]["job"] for r in _query(prometheus, "up == 1")}
                    >= {JOBS[c] for c in ("gpu-exporter", "kserve-exporter", "probe", "canary", "modelserver")}, 30, proc, out)
        assert up
        for promql in MAIN_QUERIES:
            _until(f"data for {promql}", lambda promql=promql: _query(prometheus, promql), 30, proc, out)
        dashboards = load_dashboards(dashboards_dir())
        assert dashboards, f"no dashboard JSON in {dashboards_dir()}"
        for path, dashboard in dashboards:
            rows: dict[str, list[str]] = {}
            for q in panel_queries(dashboard):
                rows.setdefault(q.row, []).append(q.expr)
            for row, exprs in rows.items():
                if (path.name, row) not in EMPTY_ROWS:
                    _until(f"data for a panel of {path.name} row {row!r}",
                           lambda exprs=exprs: any(_query(prometheus, e) for e in exprs), 30, proc, out)

        # The fault: the XID alert goes pending/firing and the page arrives at the webhook.
        webhook = state["urls"]["webhook"]
        pages = _until(f"a {XID_ALERT} page", lambda: [pg for pg in _get(webhook + "pages")
                                                       if pg["labels"].get("alertname") == XID_ALERT], 40, proc, out)
        assert pages[0]["labels"]["xid"] == "79" and pages[0]["labels"]["severity"] == "critical"
        text = out.read_text()
        assert "fault injected: xid:79@gpu3" in text
        assert f"alert {XID_ALERT} [critical] firing" in text
        assert f"PAGE FIRING [critical] {XID_ALERT}" in text

        # gpulens top, one plain frame from this Prometheus: the GPUs, the services and the firing alert.
        if state["span_ring"]:  # no OTLP collector on this machine: the probe's spans are in up's ring
            _until("probe spans in the ring", lambda: _get(webhook + "spans"), 30, proc, out)
        top = subprocess.run([sys.executable, "-m", "gpulens", "top", "--once", "--prometheus-url", prometheus,
                              "--spans-url", webhook + "spans"], capture_output=True, text=True, timeout=30)
        assert top.returncode == 0, top.stdout + top.stderr
        assert "GPUs (4)" in top.stdout and "SIMULATED GPUs" in top.stdout
        assert f"firing  critical  {XID_ALERT}" in top.stdout
        assert re.search(r"^classifier-v2 +classifier +v2 +ok ", top.stdout, re.M), top.stdout  # the probe's row
        if state["span_ring"]:
            assert re.search(r"^\d\d:\d\d:\d\d +classifier-v[12] +[\d.]+ m?s +ok +[0-9a-f]{32}$", top.stdout, re.M), top.stdout
        rows = {line.split()[0]: line for line in top.stdout.splitlines() if re.match(r"^\d+\s+H100", line)}
        assert set(rows) == {r["metric"]["gpu"] for r in _query(prometheus, g.TEMP.name)}  # one row per GPU Prometheus has
        assert all(re.search(r"\d+% .* GiB +\d+ W / \d+ W +\d+ C", line) for line in rows.values()), rows
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, out.read_text()
    left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"left running: {[(c.pid, c.cmdline()) for c in left]}"
    assert "stopped; logs in" in out.read_text()
