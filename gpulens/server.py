"""The HTTP server every gpulens exporter uses: /metrics, /healthz, /readyz and a landing page.

Scrapes serve pre-rendered snapshot bytes (DESIGN: sample in the background, serve from a snapshot), so
a scrape costs a header write and a send, whatever the number of scrapers or GPUs. TLS and basic auth come
from an exporter-toolkit web-config.yml.
"""

from __future__ import annotations

import gzip
import html
import logging
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import gzip_accepted
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

from gpulens import __version__
from gpulens.webconfig import WebConfig, check_basic_auth, ssl_context

try:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as TEXT_CONTENT_TYPE
except ImportError:  # prometheus-client < 0.22, whose CONTENT_TYPE_LATEST is still text 0.0.4
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as TEXT_CONTENT_TYPE

_LOG = logging.getLogger(__name__)
_PLAIN = "text/plain; charset=utf-8"
_METHODS = "GET, HEAD"
_REALM = 'Basic realm="gpulens"'


def _wants_openmetrics(accept: str | None) -> bool:
    """prometheus_client's negotiation: OpenMetrics if any listed type is application/openmetrics-text."""
    return any(part.split(";", 1)[0].strip() == "application/openmetrics-text"
               for part in (accept or "").split(","))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: MetricsServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

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
    timeout = 120  # seconds a kept-alive or handshaking connection may idle before its thread ends
    # Headers and body are two writes; without TCP_NODELAY Nagle + delayed ACK add ~40 ms to each scrape.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        # The listening socket defers the TLS handshake so that a slow client stalls its own thread only.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def _handle(self) -> None:
        """Every method: basic auth first (exporter-toolkit guards all paths), then 405, then routing."""
        app = self.server.app
        head = self.command == "HEAD"
        if self.command not in ("GET", "HEAD"):
            self.close_connection = True  # its body, if any, is unread
        auth = self.headers.get("Authorization")
        if app.web_config is not None and not check_basic_auth(app.web_config, auth):
            self._reply(401, b"Unauthorized\n", _PLAIN, head, (("WWW-Authenticate", _REALM),))
        elif self.command not in ("GET", "HEAD"):
            self._reply(405, b"Method Not Allowed\n", _PLAIN, head, (("Allow", _METHODS),))
        else:
            self._route(app, self.path.partition("?")[0], head)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _handle

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
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            # Two gzip members (RFC 1952 §2.2; Go's gzip reader and Prometheus read them as one stream):
            # the snapshot's, compressed once, and the small per-scrape tail's.
            app.gzip_wanted.add(openmetrics)
            body = app.gzipped(openmetrics, snapshot) + (gzip.compress(tail, mtime=0) if tail else b"")
            self._reply(200, body, ctype, head, (("Content-Encoding", "gzip"),))
        else:
            self._reply(200, snapshot + tail, ctype, head)

    def _reply(self, status: int, body: bytes, ctype: str, head: bool,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
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
    age; may be empty); `ready()` returns (ready, reason) for /readyz.
    """

    def __init__(self, host: str, port: int, render: Callable[[bool], tuple[bytes, bytes]],
                 ready: Callable[[], tuple[bool, str]], web_config: WebConfig | None = None,
                 title: str = "gpulens", log: logging.Logger = _LOG):
        self.host, self.requested_port = host, port
        self.render, self.ready, self.web_config, self.log = render, ready, web_config, log
        # Relative links keep working behind a path-prefixing proxy (kubectl proxy, ingress).
        t = html.escape(title)
        self.landing_page = (
            f"<!DOCTYPE html><html><head><title>{t}</title></head><body><h1>{t}</h1><ul>"
            '<li><a href="metrics">metrics</a></li><li><a href="healthz">healthz</a></li>'
            '<li><a href="readyz">readyz</a></li></ul></body></html>\n'
        ).encode()
        self._title = title
        self._gzip_lock = threading.Lock()
        self._gzip_cache: dict[bool, tuple[bytes, bytes]] = {}
        self.gzip_wanted: set[bool] = set()  # formats scrapers asked for gzipped: worth compressing ahead
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; OSError if the port is taken, WebConfigError if the TLS files don't load."""
        if self._httpd is not None:
            raise RuntimeError("MetricsServer already started")
        tls = self.web_config.tls if self.web_config is not None else None
        ctx = ssl_context(tls) if tls is not None else None
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.requested_port), _Handler)
        httpd.app = self
        if ctx is not None:
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        # a short poll keeps stop() (and so pod termination and tests) quick; the loop is a select() call
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self._title}-http", daemon=True)
        self._thread.start()
        self._httpd = httpd

    @property
    def port(self) -> int:
        """The bound port (the OS's pick when constructed with port 0)."""
        if self._httpd is None:
            raise RuntimeError("MetricsServer not started")
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        """Stop accepting and close the listening socket; idempotent."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def prime(self, bodies: dict[bool, bytes]) -> None:
        """Compress a new snapshot now, in the caller's (sampler's) thread, for the formats scrapers
        use: otherwise the first scrape after each sample pays the compression (the p99)."""
        for openmetrics in tuple(self.gzip_wanted):
            self.gzipped(openmetrics, bodies[openmetrics])

    def gzipped(self, openmetrics: bool, body: bytes) -> bytes:
        """gzip of `body`, compressed once per rendered snapshot however many scrapers ask at once."""
        with self._gzip_lock:
            cached = self._gzip_cache.get(openmetrics)
            if cached is None or cached[0] is not body:
                # Level 6 (zlib's default): nearly level 9's size at a fraction of the CPU.
                cached = (body, gzip.compress(body, compresslevel=6, mtime=0))
                self._gzip_cache[openmetrics] = cached
            return cached[1]
