"""The pager of the local stack: an Alertmanager webhook receiver that prints each page to the terminal.

Alertmanager POSTs its webhook payload (version 4: status, groupLabels, alerts[] with labels,
annotations, startsAt) here; every alert in it becomes one line on the terminal and one JSON line
in `pages.jsonl` of the run directory. `GET /pages` returns what arrived, for scripts and tests.

The same server takes the probe's spans when there is no OTLP collector (`POST /v1/traces`, kept in
a `SpanRing`, read back with `GET /spans`), so `gpulens up` has one local endpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpulens.up.traces import SpanRing, export_response

MAX_BODY = 4 << 20


KINDS = {"pager": "PAGE", "ticket": "TICKET", "chat": "CHAT"}  # alerts/alertmanager.yml's receivers


def format_page(alert: dict[str, Any], status: str, receiver: str = "pager") -> str:
    """One terminal line for one alert of a webhook payload; `receiver` (the route it took) says page or ticket."""
    labels = alert.get("labels", {})
    annotations = alert.get("annotations", {})
    state = alert.get("status", status).upper()
    severity = labels.get("severity", "none")
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
    kind = KINDS.get(receiver, receiver.upper() or "PAGE")
    line = f"{kind} {state} [{severity}] {labels.get('alertname', '?')}: {annotations.get('summary', '')}"
    if where:
        line += f" ({where})"
    if annotations.get("runbook_url"):
        line += f" runbook: {annotations['runbook_url']}"
    return line


class PageReceiver:
    """HTTP server on `host:port` (0 = any free port) that prints and records Alertmanager webhook pages."""

    def __init__(self, host: str, port: int, journal: Path | None = None, say: Callable[[str], None] = print,
                 spans: SpanRing | None = None):
        self.pages: list[dict[str, Any]] = []
        self.spans = spans
        self._journal = journal
        self._say = say
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._reply(413, b"too large\n")
                    return
                if self.path == "/v1/traces":
                    self._traces(self.rfile.read(length))
                    return
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._reply(400, b"not JSON\n")
                    return
                receiver.receive(payload)
                self._reply(200, b"ok\n")

            def _traces(self, body: bytes) -> None:
                if receiver.spans is None:
                    self._reply(404, b"no span ring here\n")
                    return
                ctype = self.headers.get("Content-Type") or "application/x-protobuf"
                try:
                    receiver.spans.receive(body, ctype)
                except ValueError as err:
                    self._reply(400, f"{err}\n".encode())
                    return
                self._reply(200, *export_response(ctype))

            def do_GET(self) -> None:
                if self.path == "/spans" and receiver.spans is not None:
                    self._reply(200, json.dumps(receiver.spans.recent()).encode(), "application/json")
                    return
                with receiver._lock:
                    body = json.dumps(receiver.pages).encode()
                self._reply(200, body, "application/json")

            def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def start(self) -> PageReceiver:
        self._thread.start()
        return self

    def receive(self, payload: dict[str, Any]) -> None:
        status = str(payload.get("status", "firing"))
        receiver = str(payload.get("receiver") or "pager")
        for alert in payload.get("alerts") or []:
            page = {"status": alert.get("status", status), "labels": alert.get("labels", {}), "receiver": receiver,
                    "annotations": alert.get("annotations", {}), "startsAt": alert.get("startsAt", "")}
            with self._lock:
                self.pages.append(page)
                if self._journal is not None:
                    with open(self._journal, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(page, sort_keys=True) + "\n")
            self._say(format_page(alert, status, receiver))

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()


def main(argv: list[str] | None = None) -> int:
    """`python -m gpulens.up.webhook --port 9452`: the pager on its own (compose.yaml's `pager` service)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m gpulens.up.webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9452)
    parser.add_argument("--journal", default="", help="append each page as a JSON line to this file")
    ns = parser.parse_args(argv)
    receiver = PageReceiver(ns.host, ns.port, Path(ns.journal) if ns.journal else None,
                            say=lambda line: print(line, flush=True)).start()
    print(f"pager listening on {receiver.url}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
