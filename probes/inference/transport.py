"""The probe's HTTP/1.1 client, on sockets and http.client, so each phase is a real, separate measurement.

A library client (requests, urllib3) hides connect, TLS and time-to-first-byte inside one call; here
each is its own step on the `PhaseClock`: `connect` (TCP), `tls` (handshake), `write` (request line,
headers and body), `server` (until the first response byte is readable: the server's time), `read`
(status, headers and body) and `decode` (the prober's parse and checks). A `Session` keeps its
connection between probes (`persistent`) or opens one per probe (`cold`).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PHASES = ("connect", "tls", "write", "server", "read", "decode")
REASONS = ("timeout", "connect", "tls", "http_4xx", "http_5xx", "decode", "validation")
LLM_REASONS = ("stream_broken", "empty_output", "finish_reason_error")


class ProbeFailure(Exception):
    """A probe failed for `reason` (one of REASONS or LLM_REASONS); the message says what was seen."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PhaseClock:
    """Times the fixed phase list with perf_counter_ns; maps marks to epoch ns for spans."""

    def __init__(self) -> None:
        self.wall0 = time.time_ns()
        self.perf0 = time.perf_counter_ns()
        self.marks: list[tuple[str, int, int]] = []  # (phase, start, end) in perf_counter ns
        self.current = ""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time one phase; re-entering the phase just ended extends it (a streamed body read in steps)."""
        self.current = name
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            end = time.perf_counter_ns()
            if self.marks and self.marks[-1][0] == name:
                start = self.marks.pop()[1]
            self.marks.append((name, start, end))

    def seconds(self) -> dict[str, float]:
        """Seconds per phase reached, in PHASES order; a phase entered twice (a retry) is summed."""
        out: dict[str, float] = {}
        for name in PHASES:
            spent = [end - start for phase, start, end in self.marks if phase == name]
            if spent:
                out[name] = sum(spent) / 1e9
        return out

    def epoch_ns(self, perf_ns: int) -> int:
        return self.wall0 + perf_ns - self.perf0

    def elapsed(self) -> float:
        return (time.perf_counter_ns() - self.perf0) / 1e9


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    raw: http.client.HTTPResponse | None = field(default=None, repr=False)  # streaming: not yet read
    conn: http.client.HTTPConnection | None = field(default=None, repr=False)  # streaming: until finish()


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProbeFailure("timeout", "probe timeout reached")
    return left


class Session:
    """One target's connection: `persistent` keeps it open between probes, otherwise one per probe."""

    def __init__(self, url: str, persistent: bool = True, tls_verify: bool = True, ca_file: str = ""):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.base_path = parts.path.rstrip("/")
        self.persistent = persistent
        self.cache: dict[str, Any] = {}  # per-target facts a prober looks up once (v2 metadata)
        self._ctx: ssl.SSLContext | None = None
        if self.https:
            self._ctx = ssl.create_default_context(cafile=ca_file or None)
            if not tls_verify:
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self, clock: PhaseClock, deadline: float) -> http.client.HTTPConnection:
        try:
            with clock.phase("connect"):
                sock = socket.create_connection((self.host, self.port), timeout=_remaining(deadline))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as err:
            raise ProbeFailure("timeout", f"connect to {self.host}:{self.port} timed out") from err
        except OSError as err:
            raise ProbeFailure("connect", f"connect to {self.host}:{self.port}: {err.strerror or err}") from err
        if self._ctx is not None:
            try:
                with clock.phase("tls"):
                    sock.settimeout(_remaining(deadline))
                    sock = self._ctx.wrap_socket(sock, server_hostname=self.host)
            except TimeoutError as err:
                sock.close()
                raise ProbeFailure("timeout", "TLS handshake timed out") from err
            except (ssl.SSLError, ssl.CertificateError, OSError) as err:
                sock.close()
                raise ProbeFailure("tls", f"TLS handshake with {self.host}:{self.port}: {err}") from err
        conn = http.client.HTTPConnection(self.host, self.port)
        conn.sock = sock  # already connected: http.client writes to it and never connects itself
        return conn

    def _idle_conn(self) -> http.client.HTTPConnection | None:
        """The kept-alive connection if the server has not closed it (an idle socket must not be readable)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.sock is None:
            return None
        readable, _, _ = select.select([conn.sock], [], [], 0)
        if readable:  # EOF or stray bytes: either way not reusable
            conn.close()
            return None
        return conn

    def request(self, clock: PhaseClock, method: str, path: str, body: bytes, headers: Mapping[str, str],
                deadline: float, stream: bool = False) -> Response:
        """Send one request and read the response (its body too unless `stream`), phase by phase.

        Raises ProbeFailure(timeout|connect|tls|decode). A kept-alive connection that the server
        closed in the meantime is replaced once, before any response byte, as browsers do.
        """
        idle = self._idle_conn() if self.persistent else None
        if idle is not None:
            before = len(clock.marks)
            try:
                return self._exchange(clock, idle, True, method, path, body, headers, deadline, stream)
            except _Stale:
                del clock.marks[before:]  # the failed attempt is not part of this probe's phases
        return self._exchange(clock, self._open(clock, deadline), False, method, path, body, headers, deadline, stream)

    def _exchange(self, clock: PhaseClock, conn: http.client.HTTPConnection, reused: bool, method: str, path: str,
                  body: bytes, headers: Mapping[str, str], deadline: float, stream: bool) -> Response:
        sock = conn.sock
        keep = got = False
        try:
            with clock.phase("write"):
                sock.settimeout(_remaining(deadline))
                conn.putrequest(method, self.base_path + path, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)  # headers and body in one send (no Nagle/delayed-ACK stall)
            with clock.phase("server"):
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                if not pending and not select.select([sock], [], [], _remaining(deadline))[0]:
                    raise ProbeFailure("timeout", f"no response within the timeout ({clock.elapsed():.3f} s)")
            with clock.phase("read"):
                sock.settimeout(_remaining(deadline))
                raw = conn.getresponse()
                got = True
                response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()})
                if stream:
                    response.raw, response.conn = raw, conn
                    keep = True  # the caller reads the stream, then calls finish()
                    return response
                response.body = raw.read()
                keep = self.persistent and not raw.will_close
                return response
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
            if reused and not got:  # closed while idle; nothing of this request was processed
                raise _Stale() from err
            raise ProbeFailure("connect", f"connection lost during {clock.current}: {err}") from err
        except TimeoutError as err:
            raise ProbeFailure("timeout", f"timed out during {clock.current} ({clock.elapsed():.3f} s)") from err
        except http.client.HTTPException as err:
            raise ProbeFailure("decode", f"not an HTTP/1.1 response: {type(err).__name__}: {err}") from err
        except OSError as err:
            raise ProbeFailure("connect", f"connection error during {clock.current}: {err}") from err
        finally:
            if not keep:
                conn.close()
            elif not stream:
                self._conn = conn

    def finish(self, response: Response, complete: bool) -> None:
        """After a streamed body: keep the connection if it was read to the end and may stay open."""
        if response.raw is None or response.conn is None:
            return
        if complete and self.persistent and not response.raw.will_close:
            self._conn = response.conn
        else:
            response.conn.close()
        response.raw = response.conn = None


class _Stale(Exception):
    """A kept-alive connection the server had closed: retry once on a new one."""


def status_reason(status: int) -> str | None:
    """The failure reason an HTTP status implies (None for 1xx–3xx)."""
    if 400 <= status < 500:
        return "http_4xx"
    if status >= 500:
        return "http_5xx"
    return None


def parse_server_timing(header: str) -> dict[str, float]:
    """`Server-Timing: predict;dur=12.5, queue;desc="q";dur=3` → {"predict": 0.0125, "queue": 0.003} (seconds)."""
    out: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (p.strip() for p in entry.split(";"))
        if not name:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    out[name] = float(value.strip().strip('"')) / 1000
                except ValueError:
                    pass
    return out


def traceparent_trace_id(headers: Mapping[str, str]) -> str:
    """The trace id of a W3C `traceparent` header (version-traceid-spanid-flags), or ''."""
    parts = headers.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""
