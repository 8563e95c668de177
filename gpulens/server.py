"""The HTTP server every gpulens exporter uses: /metrics, /healthz, /readyz and a landing page.

Scrapes serve pre-rendered snapshot bytes (sample in the background, serve from a snapshot), so a scrape
costs a header write and a send, whatever the number of scrapers or GPUs. TLS and basic auth come from an
exporter-toolkit web-config.yml, re-read when it or its certificate files change. Hostile or careless
clients are bounded: a connection cap (the oldest idle connection makes room), a header-read deadline
separate from keep-alive idle, request bodies read rather than parsed as the next request.
"""

from __future__ import annotations

import html
import io
import ipaddress
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

from gpulens import __version__
from gpulens.webconfig import WebConfig, WebConfigReloader, check_basic_auth, ssl_context

try:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as TEXT_CONTENT_TYPE
except ImportError:  # prometheus-client < 0.22, whose CONTENT_TYPE_LATEST is still text 0.0.4
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as TEXT_CONTENT_TYPE

_LOG = logging.getLogger(__name__)
_PLAIN = "text/plain; charset=utf-8"
_METHODS = "GET, HEAD"
_REALM = 'Basic realm="gpulens"'
MAX_BODY_BYTES = 64 * 1024  # request bodies are read (never parsed as a next request) up to this


def _accepted(header: str | None) -> dict[str, float]:
    """Media ranges or codings with their q values (RFC 9110 §12.4.2); q=0 means "not acceptable"."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if not name:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out[name.lower()] = max(q, out.get(name.lower(), 0.0))
    return out


def _wants_openmetrics(accept: str | None) -> bool:
    """prometheus_client's negotiation (OpenMetrics if any listed type is it), honouring q=0."""
    return _accepted(accept).get("application/openmetrics-text", 0.0) > 0


def _gzip_accepted(accept_encoding: str | None) -> bool:
    codings = _accepted(accept_encoding)
    if "gzip" in codings:
        return codings["gzip"] > 0
    return codings.get("*", 0.0) > 0


_IDLE, _HEADERS, _BUSY = "idle", "headers", "busy"


class _Conn:
    """One open connection: its socket, state and the monotonic deadline of that state."""

    __slots__ = ("sock", "state", "since", "deadline")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.state = _HEADERS
        self.since = time.monotonic()
        self.deadline = deadline

    def set(self, state: str, deadline: float) -> None:
        self.state, self.since, self.deadline = state, time.monotonic(), deadline

    def kill(self) -> None:
        """Unblock whatever thread reads this socket; its handler then ends and closes it."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _HTTPServer(ThreadingHTTPServer):
    """Thread per connection, bounded: at most `max_connections`, header-read deadlines, backlog 128."""

    daemon_threads = True
    request_queue_size = 128  # a burst of connects must not wait for SYN retries (default 5)
    app: MetricsServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Admit the connection: over the cap, close the oldest header-reading (else idle) one, else refuse this."""
        app = self.app
        with app._conns_lock:
            if len(app._conns) >= app.max_connections:
                # Connections still sending their first headers go first (slowloris), then idle keep-alive
                # ones (a scraper that completed requests keeps its connection while others exist).
                waiting = [c for c in app._conns.values() if c.state == _HEADERS] or \
                    [c for c in app._conns.values() if c.state == _IDLE]
                if not waiting:
                    app.refused += 1
                    self.shutdown_request(request)
                    return
                victim = min(waiting, key=lambda c: c.since)
                del app._conns[id(victim.sock)]
                app.evicted += 1
                victim.kill()
            app._conns[id(request)] = _Conn(request, time.monotonic() + app.header_timeout)
        try:
            super().process_request(request, client_address)
        except Exception:
            with app._conns_lock:
                app._conns.pop(id(request), None)
            raise

    def shutdown_request(self, request: Any) -> None:
        with self.app._conns_lock:
            self.app._conns.pop(id(request), None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client-side failures (resets, idle timeouts, bad TLS handshakes) at debug; bugs at error."""
        exc_info = sys.exc_info()
        if isinstance(exc_info[1], OSError):
            self.app.log.debug("connection from %s failed", client_address, exc_info=exc_info)
        else:
            self.app.log.error("request from %s failed", client_address, exc_info=exc_info)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection between scrapes
    server_version = f"gpulens/{__version__}"
    sys_version = ""
    # Headers and body are two writes; without TCP_NODELAY Nagle + delayed ACK add ~40 ms to each scrape.
    disable_nagle_algorithm = True
    server: _HTTPServer
    _conn: _Conn | None = None

    def setup(self) -> None:
        app = self.server.app
        with app._conns_lock:
            self._conn = app._conns.get(id(self.request))
        self.timeout = app.header_timeout  # type: ignore[misc]  # the TLS handshake and first request line + headers
        ctx = app.tls_context()
        if ctx is not None:  # per connection, so a renewed certificate serves new connections at once
            self.request = ctx.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
            if self._conn is not None:
                self._conn.sock = self.request
            self.request.settimeout(app.header_timeout)
            self.request.do_handshake()
        super().setup()

    def handle(self) -> None:
        """Requests until the client closes: idle waits and header reads each have their own deadline."""
        app = self.server.app
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self._state(_IDLE, app.idle_timeout)
            try:
                if not cast(io.BufferedReader, self.rfile).peek(1):  # the client closed its keep-alive connection
                    return
            except OSError:  # idle timeout, reset, or evicted by the connection cap
                return
            self._state(_HEADERS, app.header_timeout)
            self.handle_one_request()

    def _state(self, state: str, timeout: float) -> None:
        self.connection.settimeout(timeout)
        if self._conn is not None:
            self._conn.set(state, time.monotonic() + timeout)

    def _handle(self) -> None:
        """Every method: request body, basic auth (exporter-toolkit guards all paths), 405, routing."""
        app = self.server.app
        self._state(_BUSY, app.header_timeout)  # writes to a reader that stalls time out too
        head = self.command == "HEAD"
        body = self._body()
        if body is None:
            return
        auth = self.headers.get("Authorization")
        web_config = app.current_web_config()
        path = self.path.partition("?")[0]
        route = app.routes.get(path) if self.command == "POST" and self._may_route() else None
        if web_config is not None and not check_basic_auth(web_config, auth):
            self._reply(401, b"Unauthorized\n", _PLAIN, head, (("WWW-Authenticate", _REALM),))
        elif route is not None:
            try:
                status, text = route(body)
            except Exception as err:  # a control endpoint bug must still answer
                app.log.exception("POST %s failed", path)
                status, text = 500, f"failed: {err}\n".encode()
            self._reply(status, text, _PLAIN, head)
        elif self.command not in ("GET", "HEAD"):
            self._reply(405, b"Method Not Allowed\n", _PLAIN, head, (("Allow", _METHODS),))
        else:
            self._route(app, path, head)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _handle

    def _may_route(self) -> bool:
        """Control routes answer loopback clients only (a pod's localhost, `kubectl port-forward`)."""
        if not self.server.app.routes_loopback_only:
            return True
        host = str(self.client_address[0])
        try:
            return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback
        except ValueError:
            return False

    def _body(self) -> bytes | None:
        """Read the request body, so it is never parsed as the next request; None when refused (400/413)."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._reply(400, b"Bad Request: Transfer-Encoding is not supported\n", _PLAIN, self.command == "HEAD")
            return None
        length_header = self.headers.get("Content-Length", "0").strip() or "0"
        if not length_header.isdigit():
            self.close_connection = True
            self._reply(400, b"Bad Request: bad Content-Length\n", _PLAIN, self.command == "HEAD")
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413, b"Content Too Large\n", _PLAIN, self.command == "HEAD")
            return None
        return self.rfile.read(length) if length else b""

    def _route(self, app: MetricsServer, path: str, head: bool) -> None:
        if path == "/metrics":
            self._metrics(app, head)
        elif path == "/healthz":
            self._reply(200, b"ok", _PLAIN, head)
        elif path == "/readyz":
            try:
                ok, reason = app.ready()
            except Exception as err:  # a readiness bug must still answer
                app.log.exception("readiness check failed")
                self._reply(500, f"readiness check failed: {err}".encode(), _PLAIN, head)
                return
            self._reply(200 if ok else 503, b"ok" if ok else reason.encode(), _PLAIN, head)
        elif path == "/":
            self._reply(200, app.landing_page, "text/html; charset=utf-8", head)
        else:
            self._reply(404, b"Not Found\n", _PLAIN, head)

    def _metrics(self, app: MetricsServer, head: bool) -> None:
        openmetrics = _wants_openmetrics(self.headers.get("Accept"))
        try:
            snapshot, tail = app.render(openmetrics)
        except Exception as err:  # never expected, but a scrape must get an answer, not a hang
            app.log.exception("rendering /metrics failed")
            self._reply(500, f"rendering metrics failed: {err}".encode(), _PLAIN, head)
            return
        ctype = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        if _gzip_accepted(self.headers.get("Accept-Encoding")):
            body = app.gzipped(openmetrics, snapshot, tail)
            self._reply(200, body, ctype, head, (("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")))
        else:
            self._reply(200, snapshot + tail, ctype, head)

    def _reply(self, status: int, body: bytes, ctype: str, head: bool,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines go to the logger at debug, not stderr: a scrape a second would drown the logs."""
        log = self.server.app.log
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """Serves one exporter's snapshot over HTTP(S) on a background thread.

    `render(openmetrics)` returns (snapshot, tail): the last rendered exposition (the same bytes object
    until the snapshot changes, so its gzip is cached) and a small per-scrape tail (e.g. the sample
    age; may be empty); `ready()` returns (ready, reason) for /readyz. `web_config` may be a loaded
    WebConfig (fixed) or a WebConfigReloader (re-read when its files change). `routes` maps a path to
    a POST handler `body -> (status, text)`, answered to loopback clients only by default.
    """

    def __init__(self, host: str, port: int, render: Callable[[bool], tuple[bytes, bytes]],
                 ready: Callable[[], tuple[bool, str]], web_config: WebConfig | WebConfigReloader | None = None,
                 title: str = "gpulens", log: logging.Logger = _LOG, max_connections: int = 64,
                 header_timeout: float = 10.0, idle_timeout: float = 120.0,
                 routes: Mapping[str, Callable[[bytes], tuple[int, bytes]]] | None = None,
                 routes_loopback_only: bool = True, about: Mapping[str, str] | None = None):
        self.host, self.requested_port = host, port
        self.render, self.ready, self.log = render, ready, log
        self.web_config = web_config
        self.max_connections, self.header_timeout, self.idle_timeout = max_connections, header_timeout, idle_timeout
        self.routes = dict(routes or {})
        self.routes_loopback_only = routes_loopback_only
        # Relative links keep working behind a path-prefixing proxy (kubectl proxy, ingress).
        t = html.escape(title)
        facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                        for k, v in {"version": __version__, **(about or {})}.items())
        self.landing_page = (
            f"<!DOCTYPE html><html><head><title>{t}</title></head><body><h1>{t}</h1><table>{facts}</table><ul>"
            '<li><a href="metrics">metrics</a></li><li><a href="healthz">healthz</a></li>'
            '<li><a href="readyz">readyz</a></li></ul></body></html>\n'
        ).encode()
        self._title = title
        self._gzip_lock = threading.Lock()
        self._gzip_cache: dict[bool, tuple[bytes, bytes, Any]] = {}
        self.gzip_wanted: set[bool] = set()  # formats scrapers asked for gzipped
        self._conns: dict[int, _Conn] = {}
        self._conns_lock = threading.Lock()
        self.evicted = 0  # connections closed to admit a new one (tests, benchmark)
        self.refused = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    def current_web_config(self) -> WebConfig | None:
        if isinstance(self.web_config, WebConfigReloader):
            return self.web_config.get()[0]
        return self.web_config

    def tls_context(self) -> ssl.SSLContext | None:
        if isinstance(self.web_config, WebConfigReloader):
            return self.web_config.get()[1]
        return self._static_ctx

    _static_ctx: ssl.SSLContext | None = None

    def start(self) -> None:
        """Bind and serve; OSError if the port is taken, WebConfigError if the TLS files don't load."""
        if self._httpd is not None:
            raise RuntimeError("MetricsServer already started")
        if isinstance(self.web_config, WebConfig) and self.web_config.tls is not None:
            self._static_ctx = ssl_context(self.web_config.tls)
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.requested_port), _Handler)
        httpd.app = self
        self._stopping.clear()
        # a short poll keeps stop() (and so pod termination and tests) quick; the loop is a select() call
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self._title}-http", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"{self._title}-http-deadlines", daemon=True)
        self._watchdog.start()
        self._httpd = httpd

    def _watch(self) -> None:
        """Close connections past their header or idle deadline: a slow client cannot hold a thread."""
        tick = min(1.0, self.header_timeout / 4)
        while not self._stopping.wait(tick):
            now = time.monotonic()
            with self._conns_lock:
                late = [c for c in self._conns.values() if c.state != _BUSY and c.deadline < now]
            for conn in late:
                conn.kill()

    @property
    def port(self) -> int:
        """The bound port (the OS's pick when constructed with port 0)."""
        if self._httpd is None:
            raise RuntimeError("MetricsServer not started")
        return int(self._httpd.server_address[1])

    @property
    def connections(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    def stop(self) -> None:
        """Stop accepting, close the listening socket and open connections; idempotent."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns.values())
        for conn in conns:
            conn.kill()
        if self._thread is not None:
            self._thread.join()
        if self._watchdog is not None:
            self._watchdog.join()
        self._httpd = self._thread = self._watchdog = None

    def prime(self, bodies: dict[bool, bytes]) -> None:
        """Compress a new snapshot now, in the caller's thread, for the formats scrapers gzip."""
        for openmetrics in tuple(self.gzip_wanted):
            self.gzipped(openmetrics, bodies[openmetrics], b"")

    def gzipped(self, openmetrics: bool, body: bytes, tail: bytes = b"") -> bytes:
        """One gzip member of body + tail; body is compressed once per snapshot however many scrapers ask.

        The compressor's state after a sync flush of `body` is kept, and each scrape compresses its tail
        on a copy: decoders that read only the first member (curl --compressed, some proxies) see it all.
        """
        self.gzip_wanted.add(openmetrics)
        with self._gzip_lock:
            cached = self._gzip_cache.get(openmetrics)
            if cached is None or cached[0] is not body:
                # Level 6 (zlib's default): nearly level 9's size at a fraction of the CPU. wbits 31: gzip header.
                compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
                prefix = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
                cached = (body, prefix, compressor)
                self._gzip_cache[openmetrics] = cached
            compressor = cached[2].copy()
        return cached[1] + compressor.compress(tail) + compressor.flush()
