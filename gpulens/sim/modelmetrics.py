"""Stand-in model-server endpoints: many /metrics bodies (and v1/v2 readiness) behind one port, with faults.

The KServe exporter's fault tests and benchmark need model servers that misbehave on demand and
hundreds of them at once; the real KServe ModelServer (gpulens.sim.modelserver) covers the honest
case. Each endpoint is a path prefix: `/<name>/metrics`, `/<name>/v2/models/<m>/ready`,
`/<name>/v1/models/<m>`; pods point their `prometheus.kserve.io/path` annotation at it.

Paths without a prefix (`/metrics`, `/v2/models/<m>/ready`) belong to endpoint "" (a pod whose
readiness API is at the root of its port).

Faults per endpoint (`fault(name, kind)`): `timeout` (answer after `delay` seconds), `garbage`
(a body no Prometheus parser accepts), `huge` (`huge_bytes` of valid-looking exposition),
`http500`, `empty` (200 with an empty body); `not_ready` models answer 503 on readiness.
"""

from __future__ import annotations

import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("timeout", "garbage", "huge", "http500", "empty")
GARBAGE = b"<html><body>502 Bad Gateway</body></html>\n\x00\xff{not: metrics}\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    owner: MetricsEndpoints

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        code, body = self.server.owner._answer(self.path)
        if code == 0:  # huge: streamed so the stand-in does not hold 50 MB per request
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b'filler_metric{pad="' + b"x" * 200 + b'"} 1\n'
            chunk = line * (65536 // len(line))
            sent = 0
            try:
                while sent < self.server.owner.huge_bytes:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            self.close_connection = True
            return
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MetricsEndpoints:
    """Serves `/<name>/metrics` bodies set with `set(name, text)`; see the module docstring for faults."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay: float = 30.0, huge_bytes: int = 50 * 1024 * 1024):
        self.host, self.port = host, port
        self.delay = delay
        self.huge_bytes = huge_bytes
        self.hits: dict[str, int] = {}
        self._bodies: dict[str, bytes] = {}
        self._faults: dict[str, str] = {}
        self._not_ready: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._stopping = threading.Event()

    def start(self) -> MetricsEndpoints:
        httpd = _Server((self.host, self.port), _Handler)
        httpd.owner = self
        self.port = int(httpd.server_address[1])
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="metrics-endpoints").start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MetricsEndpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(self, name: str, text: str | bytes) -> None:
        with self._lock:
            self._bodies[name] = text.encode() if isinstance(text, str) else text

    def fault(self, name: str, kind: str | None) -> None:
        """Make one endpoint misbehave (`kind` in FAULTS), or behave again (None)."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r} (allowed: {', '.join(FAULTS)})")
        with self._lock:
            if kind is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = kind

    def not_ready(self, name: str, model: str, on: bool = True) -> None:
        with self._lock:
            (self._not_ready.add if on else self._not_ready.discard)((name, model))

    def _answer(self, path: str) -> tuple[int, bytes]:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts == ["metrics"] or parts[0] in ("v1", "v2"):  # no prefix: endpoint "" (one server per port)
            name, rest = "", parts
        else:
            name, rest = parts[0], parts[1:]
        with self._lock:
            self.hits[name] = self.hits.get(name, 0) + 1
            body = self._bodies.get(name)
            fault = self._faults.get(name)
        if body is None:
            return 404, b"not found\n"
        if rest == ["metrics"]:
            if fault == "timeout":
                self._stopping.wait(self.delay)
                time.sleep(0)
            elif fault == "garbage":
                return 200, GARBAGE
            elif fault == "huge":
                return 0, b""
            elif fault == "http500":
                return 500, b"internal error\n"
            elif fault == "empty":
                return 200, b""
            return 200, body
        if len(rest) == 4 and rest[:2] == ["v2", "models"] and rest[3] == "ready":
            return (503, b"") if (name, rest[2]) in self._not_ready else (200, b"")
        if len(rest) == 3 and rest[:2] == ["v1", "models"]:
            ready = (name, rest[2]) not in self._not_ready
            return (200 if ready else 503), (b'{"name": "%s", "ready": %s}' % (rest[2].encode(), b"true" if ready else b"false"))
        return 404, b"not found\n"
