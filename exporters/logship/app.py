"""`gpulens logship`: ship ECS JSON lines from stdin or a file to Elasticsearch, with /metrics.

    gpulens gpu-exporter | gpulens logship --elasticsearch-url https://es:9200 --spool-dir /var/lib/gpulens/spool

With a spool directory and a file input, the read position is kept beside the spool: a restarted
shipper (even after SIGKILL) goes on where it stopped, and re-reads at most the last lines it had
not yet spooled; those keep their `_id` (source + line number + content), so ES answers 409.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gpulens import logs
from gpulens.config import ConfigError
from gpulens.exporters.logship.config import LogshipConfig
from gpulens.exporters.logship.shipper import BulkFn, Shipper, encode, event_id
from gpulens.exporters.logship.spool import Record
from gpulens.exposition import EOF, Renderer
from gpulens.server import MetricsServer

READ_CHUNK = 1 << 20
_LINES_PER_PUT = 5000


def parse_line(raw: bytes, now: float) -> bytes | None:
    """One input line as the document to index; a line that is not a JSON object is wrapped, never lost."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        text = raw.decode("utf-8", "replace")
        return encode({"@timestamp": logs.timestamp(now), "message": text, "event": {"original": text},
                       "tags": ["gpulens_unparsed"]})
    if "@timestamp" not in doc:  # data streams refuse a document without one
        doc["@timestamp"] = logs.timestamp(now)
        return encode(doc)
    return raw


class InputPosition:
    """Where a file input was spooled up to ("<byte offset> <line number>"), kept in the spool directory."""

    def __init__(self, spool_dir: str, source: str):
        self.path = Path(spool_dir) / f"input-{hashlib.sha256(source.encode()).hexdigest()[:16]}.pos" if spool_dir else None

    def load(self) -> tuple[int, int]:
        if self.path is None:
            return 0, 0
        try:
            offset, line = self.path.read_text().split()
            return int(offset), int(line)
        except (OSError, ValueError):
            return 0, 0

    def save(self, offset: int, line: int) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(f"{offset} {line}\n")
            os.replace(tmp, self.path)


def read_records(stream: IO[bytes], source: str, first_line: int) -> Iterator[tuple[list[Record], int, int]]:
    """Batches of (records, bytes consumed, last line number) as complete lines become available."""
    pending = b""
    line = first_line
    while True:
        chunk = stream.read1(READ_CHUNK) if hasattr(stream, "read1") else stream.read(READ_CHUNK)
        if not chunk:
            break
        data = pending + chunk
        end = data.rfind(b"\n")
        if end < 0:
            pending = data
            continue
        complete, pending = data[:end], data[end + 1:]
        now = time.time()
        records: list[Record] = []
        for raw in complete.split(b"\n"):
            line += 1
            doc = parse_line(raw, now)
            if doc is not None:
                records.append((event_id(source, line, raw.strip()), doc))
        yield records, len(complete) + 1, line
    if pending.strip():  # a last line without a newline
        line += 1
        doc = parse_line(pending, time.time())
        if doc is not None:
            yield [(event_id(source, line, pending.strip()), doc)], len(pending), line


def _put(shipper: Shipper, records: list[Record], stopping: threading.Event, log: logging.Logger) -> None:
    """Spool records, waiting out a full or failing disk: the input waits (a pipe pushes back), nothing is skipped."""
    state = logs.StateLog(log, "logship-spool-write")
    delay = 0.1
    while True:
        try:
            shipper.put(records)
            state.ok("spool writable")
            return
        except OSError as err:
            state.failed(type(err).__name__, f"cannot write the spool: {err}; input paused")
            if stopping.wait(delay):
                raise KeyboardInterrupt from err
            delay = min(delay * 2, 5.0)


def run(cfg: LogshipConfig, log: logging.Logger, bulk: BulkFn | None = None, stdin: IO[bytes] | None = None) -> int:
    """Ship the input until its end (or SIGTERM), drain, stop. 0 when everything was delivered or dead-lettered."""
    if cfg.input == "-":
        source = f"stdin:{os.uname().nodename}:{time.time_ns()}"
        stream: IO[bytes] = stdin or sys.stdin.buffer
    else:
        source = f"file:{os.path.abspath(cfg.input)}"
        try:
            stream = open(cfg.input, "rb")  # noqa: SIM115 - closed below
        except OSError as err:
            raise ConfigError([f"input: cannot open {cfg.input}: {err.strerror}"]) from err
    shipper = Shipper(cfg, bulk=bulk, log=log, source=source)
    position = InputPosition(cfg.spool_dir, source) if cfg.input != "-" else InputPosition("", source)
    offset, first_line = position.load()
    if offset:
        stream.seek(offset)
        log.info(f"resuming {cfg.input} at line {first_line + 1}", extra={"event": {"action": "logship-resume"}})
    renderer, lock = Renderer(), threading.Lock()

    def render(openmetrics: bool) -> tuple[bytes, bytes]:
        with lock:
            text, om = renderer.render(shipper.collect())
        return (om, EOF) if openmetrics else (text, b"")

    server = MetricsServer(cfg.listen_address, cfg.port, render,
                           lambda: (shipper.sender.alive, "" if shipper.sender.alive else "sender not running"),
                           title="gpulens logship", log=log)
    try:
        server.start()
    except OSError as err:
        log.error(f"cannot listen on {cfg.listen_address}:{cfg.port}: {err.strerror}")
        return 1
    stopping = threading.Event()

    def _terminate(signum: int, _frame: Any) -> None:
        stopping.set()
        raise KeyboardInterrupt  # interrupts a blocking read of the input

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    shipper.start()
    log.info(f"shipping {cfg.input} to {shipper.describe_target()} (metrics on port {server.port})",
             extra={"event": {"action": "logship-start"}})
    try:
        for records, consumed, line in read_records(stream, source, first_line):
            for i in range(0, len(records), _LINES_PER_PUT):
                _put(shipper, records[i:i + _LINES_PER_PUT], stopping, log)
            offset += consumed
            position.save(offset, line)
            if stopping.is_set():
                break
    except KeyboardInterrupt:
        pass
    finally:
        if stream is not stdin and stream is not sys.stdin.buffer:
            stream.close()
    drained = shipper.stop(cfg.drain_timeout_seconds)
    server.stop()
    log.info(f"logship done: {shipper.shipped} shipped, {sum(shipper.dead_lettered.values())} dead-lettered, "
             f"{shipper.dropped} dropped", extra={"event": {"action": "logship-stop"}})
    return 0 if drained else 1


def main(cfg: LogshipConfig) -> int:
    return run(cfg, logs.setup(cfg.log_level, "gpulens-logship", stream=sys.stderr))
