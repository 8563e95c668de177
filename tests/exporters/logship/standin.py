"""A fault-injecting Elasticsearch stand-in: the bulk API on real HTTP, with scripted failures.

It speaks what the official 8.x client checks: `X-Elastic-Product: Elasticsearch` on every 2xx,
the compatibility media types (`application/vnd.elasticsearch+json; compatible-with=8`) answered
in kind, bulk `create` with `_id` (201, or 409 when the id exists), per-item statuses and
`errors`. Faults, set by the test on the `state`:
- `fail_next`: statuses answering the next whole requests (429 storms, 503s, 413);
- `item_faults[id]`: statuses for that id's next attempts (429, 500, 400 …) before it is accepted;
- `reject`: ids refused for good (400 mapper_parsing_exception), as are documents holding `reject_marker`;
- `timeout_after_index`: the next N bulk requests are indexed, then answered too late;
- `down`: connections are closed without an answer (an outage);
- `gate`: when set, bulk requests wait on it (a hung server);
- `max_body`: bodies larger than this get 413;
- `hold_at`: the bulk request with this number (1-based) is indexed, then `held` is set and the
  answer waits for `release` (a client killed between the server's write and its answer).
Shared by the shipper tests, the elk-setup tests and bench/logship.py, which runs it as its own process
(`python -m tests.exporters.logship.standin` prints its URL) and drives it through
`GET /_standin/stats` and `POST /_standin/down` / `/_standin/up`.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPAT_JSON = "application/vnd.elasticsearch+json; compatible-with=8"
_CREATE = b'{"create":{"_id":"'
_CREATED = b'{"create":{"status":201}}'
INFO = {"name": "standin", "cluster_name": "gpulens-test", "cluster_uuid": "standin",
        "version": {"number": "8.15.3", "build_flavor": "default", "lucene_version": "9.11.1",
                    "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
        "tagline": "You Know, for Search"}


@dataclass
class State:
    docs: dict[str, bytes] = field(default_factory=dict)
    index_of: dict[str, str] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)  # successful 201s per id: exactly once is 1
    attempts: Counter[str] = field(default_factory=Counter)
    fail_next: list[int] = field(default_factory=list)
    item_faults: dict[str, list[int]] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)
    reject_marker: bytes = b'"reject_me"'
    timeout_after_index: int = 0
    late_seconds: float = 1.0
    down: bool = False
    gate: threading.Event | None = None
    max_body: int = 0
    delay_seconds: float = 0.0
    hold_at: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)
    bodies: dict[str, Any] = field(default_factory=dict)  # PUT path -> JSON body (ILM, templates)
    bulk_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without it, delayed ACK adds 40 ms each
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(body).encode(), extra)

    def _send_raw(self, status: int, data: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        accept = self.headers.get("Accept", "")
        self.send_header("Content-Type", COMPAT_JSON if "compatible-with" in accept else "application/json")
        if 200 <= status < 300:
            self.send_header("X-Elastic-Product", "Elasticsearch")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.close()

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_standin/stats":
            with state.lock:
                stats = {"docs": len(state.docs), "duplicates": sum(1 for c in state.creates.values() if c > 1),
                         "bulk_requests": state.bulk_requests}
            return self._send(200, stats)
        state.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        if state.down:
            return self._drop()
        self._send(200, INFO)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:  # the 8.x client sends /<index>/_bulk as PUT
        self.do_POST()

    def do_POST(self) -> None:
        state = self.server.state
        body = self._body()
        path = self.path.partition("?")[0]
        if path in ("/_standin/down", "/_standin/up"):
            state.down = path.endswith("down")
            return self._send(200, {"down": state.down})
        with state.lock:
            if not self.server.quiet:
                state.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if state.down:
            return self._drop()
        if not path.endswith("/_bulk"):
            if self.command == "PUT":  # ILM policies, index templates: recorded for the elk-setup tests
                state.bodies[path] = json.loads(body or b"{}")
                return self._send(200, {"acknowledged": True})
            return self._send(404, {"error": f"no handler for {path}"})
        if state.gate is not None:
            state.gate.wait(30)
        if state.delay_seconds:
            time.sleep(state.delay_seconds)
        with state.lock:
            state.bulk_requests += 1
            number = state.bulk_requests
            status = state.fail_next.pop(0) if state.fail_next else 0
        if status:
            return self._send(status, {"error": {"type": "es_rejected_execution_exception" if status == 429 else "standin_fault",
                                                 "reason": f"scripted {status}"}, "status": status})
        if state.max_body and len(body) > state.max_body:
            return self._send(413, {"error": {"type": "request_too_large", "reason": "body too large"}, "status": 413})
        index = path[1:-len("/_bulk")] or ""
        items, errors = self._bulk(state, index, body)
        with state.lock:
            late = state.timeout_after_index > 0
            if late:
                state.timeout_after_index -= 1
        if late:  # indexed, but the client has given up before the answer
            time.sleep(state.late_seconds)
        if number == state.hold_at:
            state.held.set()
            state.release.wait(30)
        if "filter_path=" in self.path:  # as ES does: keep only what the client asked for (status, error)
            if not errors:  # the common answer, built without a dict per item
                return self._send_raw(200, b'{"errors":false,"items":[' + b",".join([_CREATED] * len(items)) + b"]}")
            items = [{op: {k: v for k, v in item.items() if k in ("status", "error")}} for entry in items
                     for op, item in entry.items()]
        self._send(200, {"took": 1, "errors": errors, "items": items})

    @staticmethod
    def _bulk(state: State, default_index: str, body: bytes) -> tuple[list[dict[str, Any]], bool]:
        lines = body.split(b"\n")
        items: list[dict[str, Any]] = []
        errors = False
        with state.lock:
            for i in range(0, len(lines) - 1, 2):
                line = lines[i]
                if line.startswith(_CREATE) and line.endswith(b'"}}') and b'"' not in line[len(_CREATE):-3]:
                    op, rid, index = "create", line[len(_CREATE):-3].decode(), default_index  # the shipper's shape, fast
                else:
                    (op, meta), = json.loads(line).items()
                    rid, index = meta.get("_id", ""), meta.get("_index", default_index)
                doc = lines[i + 1]
                state.attempts[rid] += 1
                faults = state.item_faults.get(rid)
                if rid in state.reject or state.reject_marker in doc:
                    status, error = 400, {"type": "mapper_parsing_exception", "reason": "failed to parse field [gpu.index]"}
                elif faults:
                    status = faults.pop(0)
                    error = {"type": "es_rejected_execution_exception" if status == 429 else "standin_fault",
                             "reason": f"scripted {status}"}
                elif op != "create":
                    status, error = 400, {"type": "illegal_argument_exception", "reason": "only write ops with an op_type of create"}
                elif rid in state.docs:
                    status, error = 409, {"type": "version_conflict_engine_exception",
                                          "reason": f"[{rid}]: version conflict, document already exists"}
                else:
                    status, error = 201, None
                    state.docs[rid] = doc
                    state.index_of[rid] = index
                    state.creates[rid] += 1
                item: dict[str, Any] = {"_index": index, "_id": rid, "status": status}
                if error:
                    item["error"] = error
                    errors = True
                else:
                    item["result"] = "created"
                items.append({op: item})
        return items, errors


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State
    quiet = False  # the benchmark: keep no per-request log

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout, SIGKILL) before the answer: expected here


class StandIn:
    """`with StandIn() as es: es.url`; `es.state` holds the store and the fault script."""

    def __init__(self, tls: tuple[str, str] | None = None, quiet: bool = False):
        self.state = State()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = self.state
        self._httpd.quiet = quiet
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state.gate is not None:
            self.state.gate.set()
        self.state.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


if __name__ == "__main__":
    import sys

    with StandIn(quiet=True) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
