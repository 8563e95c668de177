"""MetricsServer against real HTTP(S) on 127.0.0.1: negotiation, gzip, health, TLS, basic auth, errors."""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
import ssl
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from gpulens.server import MetricsServer
from gpulens.webconfig import WebConfig, load_web_config

TEXT = b"# TYPE up gauge\nup 1\n" * 50
OM = b"# TYPE up gauge\nup 1\n# EOF\n"
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def _render(openmetrics: bool) -> tuple[bytes, bytes]:
    return (OM, b"") if openmetrics else (TEXT, b"")


@pytest.fixture
def serve() -> Iterator[Callable[..., MetricsServer]]:
    """Start MetricsServers on 127.0.0.1:0 (defaults: fixed render, always ready); stopped after the test."""
    servers: list[MetricsServer] = []

    def start(render: Callable[[bool], tuple[bytes, bytes]] = _render,
              ready: Callable[[], tuple[bool, str]] = lambda: (True, ""), **kw: Any) -> MetricsServer:
        server = MetricsServer("127.0.0.1", 0, render, ready, **kw)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _request(server: MetricsServer, path: str, method: str = "GET", headers: dict[str, str] | None = None,
             context: ssl.SSLContext | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=context)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_text_by_default(serve: Callable[..., MetricsServer]) -> None:
    status, headers, body = _request(serve(), "/metrics", headers={"Accept": "text/plain"})
    assert (status, headers["Content-Type"], body) == (200, CONTENT_TYPE_PLAIN_0_0_4, TEXT)
    assert headers["Content-Length"] == str(len(TEXT))


def test_openmetrics_when_asked(serve: Callable[..., MetricsServer]) -> None:
    status, headers, body = _request(serve(), "/metrics?x=1", headers={"Accept": PROMETHEUS_ACCEPT})
    assert (status, headers["Content-Type"], body) == (200, OPENMETRICS, OM)
    assert OPENMETRICS == "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_gzip_compressed_once_per_snapshot(serve: Callable[..., MetricsServer],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = zlib.compressobj

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(zlib, "compressobj", counting)
    server = serve()
    for _ in range(3):
        status, headers, body = _request(server, "/metrics", headers={"Accept-Encoding": "deflate, gzip;q=1"})
        assert (status, headers["Content-Encoding"]) == (200, "gzip")
        assert headers["Content-Length"] == str(len(body))
        assert gzip.decompress(body) == TEXT
    assert len(calls) == 1
    barrier, bodies = threading.Barrier(10), []

    def scrape() -> None:
        barrier.wait()
        bodies.append(gzip.decompress(_request(server, "/metrics", headers={"Accept-Encoding": "gzip"})[2]))

    scrapers = [threading.Thread(target=scrape) for _ in range(10)]
    for t in scrapers:
        t.start()
    for t in scrapers:
        t.join()
    assert bodies == [TEXT] * 10
    assert len(calls) == 1  # 10 concurrent scrapers of one snapshot: still one compression
    _request(server, "/metrics", headers={"Accept-Encoding": "gzip", "Accept": PROMETHEUS_ACCEPT})
    assert len(calls) == 2  # the other format has its own cache entry


def test_head(serve: Callable[..., MetricsServer]) -> None:
    status, headers, body = _request(serve(), "/metrics", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(len(TEXT)), b"")


def test_keep_alive_reuses_the_connection(serve: Callable[..., MetricsServer]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", serve().port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        assert conn.getresponse().read() == TEXT
        sock = conn.sock
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b"ok"
        assert conn.sock is sock
    finally:
        conn.close()


def test_health_landing_and_errors(serve: Callable[..., MetricsServer],
                                   capfd: pytest.CaptureFixture[str]) -> None:
    server = serve()
    assert _request(server, "/healthz")[::2] == (200, b"ok")
    status, headers, body = _request(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for link in (b'href="metrics"', b'href="healthz"', b'href="readyz"'):
        assert link in body
    assert _request(server, "/nope")[0] == 404
    status, headers, _ = _request(server, "/metrics", method="POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    assert capfd.readouterr().err == ""  # no request log lines on stderr


def test_readyz(serve: Callable[..., MetricsServer]) -> None:
    state = [(False, "no GPU sampled yet")]
    server = serve(ready=lambda: state[0])
    assert _request(server, "/readyz")[::2] == (503, b"no GPU sampled yet")
    state[0] = (True, "")
    assert _request(server, "/readyz")[::2] == (200, b"ok")


def test_render_error_is_a_500(serve: Callable[..., MetricsServer]) -> None:
    def broken(openmetrics: bool) -> tuple[bytes, bytes]:
        raise RuntimeError("snapshot missing")

    status, _, body = _request(serve(render=broken), "/metrics")
    assert status == 500 and b"snapshot missing" in body


def test_port_in_use(serve: Callable[..., MetricsServer]) -> None:
    taken = serve().port
    with pytest.raises(OSError):
        MetricsServer("127.0.0.1", taken, _render, lambda: (True, "")).start()


def _trusting(certdir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certdir / "cert.pem"))


def test_tls(serve: Callable[..., MetricsServer], certdir: Path) -> None:
    (certdir / "web-config.yml").write_text("tls_server_config: {cert_file: cert.pem, key_file: key.pem}\n")
    server = serve(web_config=load_web_config(certdir / "web-config.yml"))
    assert _request(server, "/metrics", context=_trusting(certdir))[::2] == (200, TEXT)
    with pytest.raises(urllib.error.URLError):  # plain HTTP clients and untrusting clients are refused
        urllib.request.urlopen(f"https://127.0.0.1:{server.port}/metrics", timeout=10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # a non-TLS client
        raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert b"up 1" not in raw.recv(4096)
        except ConnectionResetError:
            pass  # refused the handshake with unread input: a reset
    with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/healthz", timeout=10,
                                context=_trusting(certdir)) as resp:  # still serving after bad handshakes
        assert resp.read() == b"ok"


def test_client_certificates(serve: Callable[..., MetricsServer], certdir: Path) -> None:
    (certdir / "web-config.yml").write_text(
        "tls_server_config: {cert_file: cert.pem, key_file: key.pem, client_ca_file: cert.pem}\n")
    server = serve(web_config=load_web_config(certdir / "web-config.yml"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _request(server, "/metrics", context=_trusting(certdir))
    client = _trusting(certdir)
    client.load_cert_chain(certdir / "cert.pem", certdir / "key.pem")
    assert _request(server, "/metrics", context=client)[::2] == (200, TEXT)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_checks_bcrypt_once(serve: Callable[..., MetricsServer],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    calls = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        calls.append(password)
        return real(password, hashed_password)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    server = serve(web_config=WebConfig(basic_auth_users={"prometheus": hashed}))
    refused: list[dict[str, str]] = [{}, _basic("prometheus", "wrong"), _basic("grafana", "s3cret"),
                                     _basic("prometheus", "x" * 100)]
    for path, headers in [("/healthz", {}), *(("/metrics", h) for h in refused)]:
        status, resp_headers, _ = _request(server, path, headers=headers)
        assert (status, resp_headers["WWW-Authenticate"]) == (401, 'Basic realm="gpulens"'), (path, headers)
    calls.clear()
    assert _request(server, "/metrics", headers=_basic("prometheus", "s3cret"))[::2] == (200, TEXT)
    assert _request(server, "/readyz", headers=_basic("prometheus", "s3cret"))[::2] == (200, b"ok")
    assert calls == [b"s3cret"]  # the second request hit the cache
    assert _request(server, "/metrics", method="DELETE", headers=_basic("prometheus", "s3cret"))[0] == 405


def test_per_scrape_tail_is_in_the_same_single_gzip_member(serve: Callable[..., MetricsServer]) -> None:
    ticks = iter(range(1, 100))
    server = serve(render=lambda om: (TEXT, f"age {next(ticks)}\n".encode()))
    plain = _request(server, "/metrics")[2]
    assert plain == TEXT + b"age 1\n"
    for n in (2, 3):
        status, headers, body = _request(server, "/metrics", headers={"Accept-Encoding": "gzip"})
        # a decoder that reads one member only (curl --compressed, some proxies) still sees the tail
        one_member = zlib.decompressobj(31)
        assert one_member.decompress(body) == TEXT + f"age {n}\n".encode()
        assert one_member.eof and one_member.unused_data == b""


def test_q_zero_is_not_acceptable(serve: Callable[..., MetricsServer]) -> None:
    server = serve()
    status, headers, body = _request(server, "/metrics", headers={"Accept": "application/openmetrics-text;q=0, text/plain",
                                                                   "Accept-Encoding": "gzip;q=0, identity"})
    assert headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4 and "Content-Encoding" not in headers and body == TEXT
    status, headers, body = _request(server, "/metrics", headers={"Accept-Encoding": "*;q=0.5"})
    assert headers["Content-Encoding"] == "gzip"


def _raw(server: MetricsServer, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_get_body_is_read_not_parsed_as_a_second_request(serve: Callable[..., MetricsServer]) -> None:
    server = serve()
    smuggled = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = _raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled))
    assert reply.count(b"HTTP/1.1 ") == 1 and reply.endswith(b"ok")
    reply = _raw(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and reply.count(b"HTTP/1.1 ") == 1


def test_slow_headers_are_cut_at_the_deadline_and_the_cap_evicts_them(serve: Callable[..., MetricsServer]) -> None:
    server = serve(max_connections=4, header_timeout=0.5)
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
    for sock in slow:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")  # never finishes its headers
    assert _request(server, "/healthz")[0] == 200  # admitted past the cap: an older slow one made room
    for sock in slow:
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed by the cap or by the header deadline, never served
        sock.close()
    assert server.evicted >= 4


def test_post_routes_answer_loopback_clients(serve: Callable[..., MetricsServer]) -> None:
    got: list[bytes] = []

    def fault(body: bytes) -> tuple[int, bytes]:
        got.append(body)
        return 200, b"ok\n"

    server = serve(routes={"/-/simulate/fault": fault})
    status, _, body = _request(server, "/-/simulate/fault", method="POST", headers={"Content-Length": "0"})
    assert (status, body, got) == (200, b"ok\n", [b""])
    assert _request(server, "/metrics", method="POST")[0] == 405
    assert _request(server, "/-/simulate/fault")[0] == 404  # GET is not a route


def test_web_config_is_reloaded_and_a_broken_one_keeps_the_last_good(tmp_path: Path, serve: Callable[..., MetricsServer]) -> None:
    from gpulens.webconfig import WebConfigReloader

    path = tmp_path / "web.yml"
    old, new = bcrypt.hashpw(b"old", bcrypt.gensalt(4)).decode(), bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()
    path.write_text(f"basic_auth_users: {{prometheus: '{old}'}}\n")
    reloader = WebConfigReloader(path, check_seconds=0)
    server = serve(web_config=reloader)
    assert _request(server, "/metrics", headers=_basic("prometheus", "old"))[0] == 200
    path.write_text(f"basic_auth_users: {{prometheus: '{new}'}}\n")
    assert _request(server, "/metrics", headers=_basic("prometheus", "old"))[0] == 401
    assert _request(server, "/metrics", headers=_basic("prometheus", "new"))[0] == 200
    path.write_text("basic_auth_users: [broken\n")
    assert _request(server, "/metrics", headers=_basic("prometheus", "new"))[0] == 200
    assert reloader.reloads == 1
