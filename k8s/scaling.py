"""Fleet-size figures for the README "Scaling" section, measured rather than typed in (`make scaling`).

Starts `gpulens gpu-exporter --simulate 8` on loopback, scrapes it once the way Prometheus does (text and
gzip), counts the series, and scales that to 10 / 1 000 / 10 000 nodes. Prints a Markdown table, or with
`--readme README.md` rewrites the block between `<!-- scaling:begin -->` and `<!-- scaling:end -->`.
"""

from __future__ import annotations

import argparse
import gzip
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gpulens.metrics import families

NODES = (10, 1_000, 10_000)
GPUS_PER_NODE = 8
INTERVALS = (15, 30)
# Planning figure for Prometheus' head block: ~4 KiB of memory per active series (series, labels, index,
# chunks for the last 2 h); the real figure moves with label sizes and churn.
BYTES_PER_SERIES = 4096
# A Prometheus we would still run as one instance: ~2 M active series (~8 GiB of head at the figure above).
SERIES_PER_PROMETHEUS = 2_000_000
# ECS JSON log line of one XID event, measured: 10 000 events wrote 8.8 MB (issue 6 §4).
XID_EVENT_BYTES = 880
BULK_BYTES = 5 * 1024 * 1024  # `gpulens logship --batch-bytes` default: Elastic advises 5-15 MB bulk requests
BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"


@dataclass(frozen=True)
class Scrape:
    """One scrape of one node: series (sample lines) and bytes on the wire."""

    series: int
    text_bytes: int
    gzip_bytes: int


def parse_scrape(body: bytes) -> int:
    """Sample lines in a text exposition (each is one series)."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(gpus: int = GPUS_PER_NODE, timeout: float = 30.0) -> Scrape:
    """Run the simulated exporter with default flags and scrape it once it has sampled."""
    port = _free_port()
    cmd = [sys.executable, "-m", "gpulens", "gpu-exporter", f"--simulate={gpus}", "--listen-address=127.0.0.1",
           f"--port={port}", "--log-level=error"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"gpu-exporter did not become ready: {err.strip()[-500:]}") from None
                time.sleep(0.2)
        time.sleep(1.5)  # one more sample: slow-refresh families (ECC, NVLink) are in from the first cycle on
        headers = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"}
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)) as resp:
            text = resp.read()
        return Scrape(parse_scrape(text), len(text), len(gzip.compress(text, 6)))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}".strip()
    return f"{value:.3g} {unit}".strip()


def _bytes(value: float) -> str:
    for factor, prefix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.0f} B"


def xid_log_limit() -> tuple[int | None, float]:
    """The GPU exporter's per-node XID log-line limit (burst per window), or None on a branch without it."""
    try:
        from gpulens.exporters.gpu import events
    except ImportError:
        return None, 60.0
    return getattr(events, "XID_LOG_BURST", None), float(getattr(events, "XID_LOG_WINDOW_SECONDS", 60.0))


def storm_lines(burst: int | None, window: float, flush_seconds: tuple[float, ...] = (1.0, 10.0)) -> list[str]:
    """Events/s and bulk requests/s into Elasticsearch when every GPU of the largest fleet raises an XID per second."""
    nodes, gpus = NODES[-1], NODES[-1] * GPUS_PER_NODE
    raw = float(gpus)  # events/s if every XID became a log event
    lines = [f"XID storm: {nodes:,} nodes × {GPUS_PER_NODE} GPUs each raising one XID per second is {_si(raw)} XIDs/s. "
             f"Each is counted exactly in `gpulens_gpu_xid_errors_total`."]
    if burst is None:
        per_bulk = BULK_BYTES // XID_EVENT_BYTES
        lines[0] += (f" As ECS events ({XID_EVENT_BYTES} B each) that is {_bytes(raw * XID_EVENT_BYTES)}/s; at 5 MiB bulk "
                     f"requests, ~{per_bulk:,} events and ~{_si(raw / per_bulk)} requests/s across the fleet.")
        return lines
    per_node = (burst + 1) / window  # the burst, then one "N more suppressed" summary line per window
    events = per_node * nodes
    lines[0] += (f" The exporter logs at most {burst} XID events per {window:.0f} s per node plus one summary line "
                 f"(\"N more suppressed\"), so Elasticsearch receives at most {_si(events)} events/s "
                 f"({_bytes(events * XID_EVENT_BYTES)}/s of ECS JSON at {XID_EVENT_BYTES} B per event).")
    for flush in flush_seconds:
        # One shipper per node sends a bulk request per flush interval while events arrive.
        requests = nodes * min(1.0 / flush, per_node)
        per_request = max(1.0, per_node * flush)
        lines.append(f"- shipper `--flush-interval-seconds={flush:g}`: ≤ {_si(requests)} bulk requests/s fleet-wide, "
                     f"~{per_request:.0f} event{'s' if round(per_request) != 1 else ''} each")
    lines.append("Thousands of tiny bulk requests per second load Elasticsearch more than the bytes do: at this size raise "
                 "the flush interval (the spool absorbs the delay) or ship through a central buffer (Kafka, Logstash) "
                 "that batches to 5–15 MB requests.")
    return lines


def render(scrape: Scrape, gpu_families: int) -> str:
    """The README block: per-node measurement, the fleet table, and the XID-storm bulk sizing."""
    lines = [
        f"Measured by `make scaling` (k8s/scaling.py): one node with {GPUS_PER_NODE} simulated H100s, default flags, "
        f"{gpu_families} gpulens GPU families in the catalogue → **{scrape.series} series** per node "
        f"({scrape.series / GPUS_PER_NODE:.0f} per GPU, self-metrics included), "
        f"{_bytes(scrape.text_bytes)} per scrape as text, {_bytes(scrape.gzip_bytes)} gzipped "
        "(Prometheus asks for gzip).",
        "",
        "| GPU nodes (×8 GPUs) | active series | samples/s @15 s | samples/s @30 s | scrape bytes/s @15 s (gzip) "
        "| Prometheus head memory (~4 KiB/series) | Prometheus instances (≤ 2 M series each) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for nodes in NODES:
        series = scrape.series * nodes
        per_interval = [series / interval for interval in INTERVALS]
        shards = -(-series // SERIES_PER_PROMETHEUS)
        lines.append(
            f"| {nodes:,} | {_si(series)} | {_si(per_interval[0])} | {_si(per_interval[1])} "
            f"| {_bytes(scrape.gzip_bytes * nodes / INTERVALS[0])}/s | {_bytes(series * BYTES_PER_SERIES)} | {shards} |"
        )
    lines += ["", *storm_lines(*xid_log_limit())]
    return "\n".join(lines) + "\n"


def rewrite_readme(readme: Path, block: str) -> None:
    text = readme.read_text(encoding="utf-8")
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"{readme}: no {BEGIN} … {END} block")
    readme.write_text(f"{head}{BEGIN}\n{block}{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite the scaling block of this README")
    args = parser.parse_args(argv)
    block = render(measure(), sum(1 for f in families("gpu") if f.name.startswith("gpulens_")))
    if args.readme:
        rewrite_readme(args.readme, block)
    else:
        print(block, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
