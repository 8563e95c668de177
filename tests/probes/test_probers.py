"""Probers on the wire: phases, connection reuse and each failure reason, against scripted raw servers.

The real KServe server is in test_integration.py; these are the answers it never gives (garbage,
streams cut short, a closed port) plus the parsing helpers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gpulens.probes.inference import openai, v1, v2
from gpulens.probes.inference.config import ProbeConfig, Target, parse_targets
from gpulens.probes.inference.transport import PHASES, Session, parse_server_timing, traceparent_trace_id
from tests.probes.rawserver import RawServer, chunk, http_response, sse_head

TRACEPARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
V2_OK = json.dumps({"model_name": "m", "outputs": [{"name": "out", "shape": [1, 2], "datatype": "FP32", "data": [0.25, 0.75]}]}).encode()


def target(url: str, protocol: str = "v2", **extra: Any) -> Target:
    raw = {"url": url, "model": "m", "protocol": protocol, "payload": {"inputs": []}, "timeout_seconds": 2, **extra}
    if protocol == "openai":
        raw.pop("payload")
    return parse_targets({"targets": [raw]}, ProbeConfig())[0]


@pytest.fixture
def servers() -> Iterator[list[RawServer]]:
    made: list[RawServer] = []
    yield made
    for s in made:
        s.close()


def serve(servers: list[RawServer], reply: Any, keep_alive: bool = True) -> RawServer:
    server = RawServer(reply if callable(reply) else (lambda req: [(0, reply)]), keep_alive)
    servers.append(server)
    return server


def test_phases_are_measured_in_order_and_a_persistent_connection_is_reused(servers: list[RawServer]) -> None:
    server = serve(servers, http_response(V2_OK, extra="Server-Timing: predict;dur=1.5, queue;dur=0.5\r\n"))
    session = Session(server.url, persistent=True)
    first = v2.probe(target(server.url), session, TRACEPARENT)
    second = v2.probe(target(server.url), session, TRACEPARENT)
    assert first.success and second.success, (first.message, second.message)
    assert list(first.phases) == ["connect", "write", "server", "read", "decode"]  # no TLS on http://
    assert "connect" not in second.phases and server.connections == 1
    assert [m[0] for m in first.marks] == ["connect", "write", "server", "read", "decode"]
    assert all(a[2] <= b[1] for a, b in zip(first.marks, first.marks[1:], strict=False))  # one after the other
    assert first.server_timing == {"predict": 0.0015, "queue": 0.0005} and first.status == 200
    assert first.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert b"traceparent: 00-0af7651916cd43dd8448eb211c80319c" in server.requests[0]
    assert sum(first.phases.values()) <= first.duration


def test_cold_connections_connect_every_time(servers: list[RawServer]) -> None:
    server = serve(servers, http_response(V2_OK))
    session = Session(server.url, persistent=False)
    for _ in range(2):
        assert "connect" in v2.probe(target(server.url, connection="cold"), session, {}).phases
    assert server.connections == 2


def test_a_kept_alive_connection_the_server_closed_is_replaced(servers: list[RawServer]) -> None:
    server = serve(servers, http_response(V2_OK), keep_alive=False)  # closes without `Connection: close`
    session = Session(server.url, persistent=True)
    assert v2.probe(target(server.url), session, {}).success
    again = v2.probe(target(server.url), session, {})
    assert again.success and "connect" in again.phases and server.connections == 2


def test_failure_reasons(servers: list[RawServer]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    cases = {
        "connect": closed,
        "decode": serve(servers, b"garbage, not HTTP\r\n\r\n").url,
        "http_4xx": serve(servers, http_response(b'{"error":"no"}', "404 Not Found")).url,
        "http_5xx": serve(servers, http_response(b'{"error":"boom"}', "500 Internal Server Error")).url,
        "timeout": serve(servers, lambda req: [(1.0, http_response(V2_OK))]).url,
        "validation": serve(servers, http_response(b'{"outputs": "none"}')).url,
    }
    for reason, url in cases.items():
        result = v2.probe(target(url, timeout_seconds=0.3), Session(url), {})
        assert (result.success, result.reason) == (False, reason), (reason, result.message)
    body_garbage = serve(servers, http_response(b"<html>not json</html>", ctype="text/html")).url
    assert v2.probe(target(body_garbage), Session(body_garbage), {}).reason == "decode"
    result = v2.probe(target(cases["http_5xx"]), Session(cases["http_5xx"]), {})
    assert result.status == 500 and "boom" in result.message


def test_v2_output_expectations(servers: list[RawServer]) -> None:
    url = serve(servers, http_response(V2_OK)).url
    checks = {
        "shape [1, 2] (expected [-1, 4])": {"name": "out", "shape": [-1, 4]},
        "datatype FP32 (expected INT64)": {"name": "out", "datatype": "INT64"},
        "value 0.75 above 0.5": {"name": "out", "max": 0.5},
        "output nope missing": {"name": "nope"},
    }
    for message, expect in checks.items():
        result = v2.probe(target(url, expect={"outputs": [expect]}), Session(url), {})
        assert result.reason == "validation" and message in result.message, result.message
    assert v2.probe(target(url, expect={"outputs": [{"name": "out", "shape": [-1, 2], "min": 0, "max": 1}]}), Session(url), {}).success


def test_v1_predictions_shape_and_range(servers: list[RawServer]) -> None:
    url = serve(servers, http_response(b'{"predictions": [[0.1, 0.9], [0.5, 0.5]]}')).url
    ok = target(url, "v1", payload={"instances": [[1]]}, expect={"outputs": [{"shape": [-1, 2], "min": 0, "max": 1}]})
    assert v1.probe(ok, Session(url), {}).success
    bad = target(url, "v1", payload={"instances": [[1]]}, expect={"outputs": [{"shape": [-1, 3]}]})
    assert v1.probe(bad, Session(url), {}).reason == "validation"
    assert b"POST /v1/models/m:predict HTTP/1.1" in servers[-1].requests[0]


def _sse(*events: str, done: bool = True) -> list[tuple[float, bytes]]:
    out = [(0.0, sse_head())] + [(0.01, chunk(f"data: {e}\n\n".encode())) for e in events]
    if done:
        out.append((0.0, chunk(b"data: [DONE]\n\n")))
    return out + [(0.0, b"0\r\n\r\n")]


def _delta(text: str | None, finish: str | None = None) -> str:
    return json.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text},
                                                                                   "finish_reason": finish}]})


USAGE = json.dumps({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})


def test_openai_stream_figures_and_reasons(servers: list[RawServer]) -> None:
    good = serve(servers, lambda req: _sse(_delta(""), _delta("a"), _delta("b", "length"), USAGE))
    session = Session(good.url)
    result = openai.probe(target(good.url, "openai"), session, {})
    assert result.success, result.message
    llm = result.llm
    assert llm is not None and llm.output_tokens == 2 and len(llm.inter_token) == 1
    assert (llm.prompt_tokens, llm.completion_tokens, llm.finish_reason) == (3, 2, "length")
    assert llm.ttft is not None and 0 < llm.ttft <= result.duration
    body = json.loads(good.requests[0].split(b"\r\n\r\n", 1)[1])
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True} and body["messages"][0]["role"] == "user"
    assert b"POST /openai/v1/chat/completions" in good.requests[0]
    assert openai.probe(target(good.url, "openai"), session, {}).success and good.connections == 1  # stream read to the end: reused
    cases = {
        "stream_broken": lambda req: _sse(_delta("a", "stop"), done=False),
        "empty_output": lambda req: _sse(_delta(""), _delta(None, "stop")),
        "finish_reason_error": lambda req: _sse(_delta("a"), _delta("b", "abort")),
        "http_4xx": lambda req: [(0, http_response(b'{"error": {"message": "bad model"}}', "400 Bad Request"))],
    }
    for reason, reply in cases.items():
        url = serve(servers, reply).url
        result = openai.probe(target(url, "openai"), Session(url), {})
        assert result.reason == reason, (reason, result.message)
    not_json = serve(servers, lambda req: _sse("{not json"))
    assert openai.probe(target(not_json.url, "openai"), Session(not_json.url), {}).reason == "stream_broken"
    plain = serve(servers, http_response(b'{"choices": []}'))
    assert openai.probe(target(plain.url, "openai"), Session(plain.url), {}).reason == "stream_broken"
    stalled = serve(servers, lambda req: [(0, sse_head()), (0, chunk(f"data: {_delta('a')}\n\n".encode())), (2.0, b"")])
    assert openai.probe(target(stalled.url, "openai", timeout_seconds=0.3), Session(stalled.url), {}).reason == "timeout"


def test_parsers() -> None:
    assert parse_server_timing('predict;dur=12.5, cache;desc="hit", db;dur="3"') == {"predict": 0.0125, "db": 0.003}
    assert parse_server_timing("") == {} and parse_server_timing("x;dur=abc") == {}
    assert traceparent_trace_id(TRACEPARENT) == "0af7651916cd43dd8448eb211c80319c"
    assert traceparent_trace_id({"traceparent": "garbage"}) == ""
    assert PHASES == ("connect", "tls", "write", "server", "read", "decode")
    assert v2.random_values("INT32", 3, __import__("random").Random(1)) == [2, 9, 1]


def test_tls_is_its_own_phase_and_a_bad_certificate_is_reason_tls(servers: list[RawServer], certdir: Any) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certdir / "cert.pem"), str(certdir / "key.pem"))
    server = RawServer(lambda req: [(0, http_response(V2_OK))], tls=ctx)
    servers.append(server)
    ok = v2.probe(target(server.url, ca_file=str(certdir / "cert.pem")), Session(server.url, ca_file=str(certdir / "cert.pem")), {})
    assert ok.success and list(ok.phases)[:2] == ["connect", "tls"], ok.message
    untrusted = v2.probe(target(server.url), Session(server.url), {})  # self-signed, not in the default trust store
    assert untrusted.reason == "tls" and "CERTIFICATE_VERIFY_FAILED" in untrusted.message
