"""The probe against the real KServe ModelServer, with spans to a test OTLP receiver (gRPC and HTTP).

Done-when of the issue: spans received with the right names, links and attributes; the trace id is
the same in the span, in the OpenMetrics exemplar and in the `traceparent` the server received;
every broken demo model fails with its reason. LLM figures are checked against the injected
per-token delay with wide tolerances (no tight timing asserts).
"""

from __future__ import annotations

import statistics
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from gpulens.probes.inference.app import ProbeApp
from gpulens.probes.inference.config import ProbeConfig, Target, parse_targets
from gpulens.probes.inference.otel import Tracing
from gpulens.server import MetricsServer
from gpulens.sim.modelserver import ModelServerProcess, free_port, sample_input
from tests.probes.otlp import Receiver

TOKEN_DELAY = 0.03
TOKENS = 8


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    """A second demo server with the `llm` model and a known per-token delay."""
    log = tmp_path_factory.mktemp("llm") / "modelserver.log"
    server = ModelServerProcess(models="llm", token_delay_seconds=TOKEN_DELAY, log_path=str(log)).start()
    yield server
    server.stop()


def targets(url: str, llm_url: str = "") -> list[Target]:
    flat = [v for image in sample_input(1) for channel in image for row in channel for v in row]
    v2_payload = {"inputs": [{"name": "input-0", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": flat}]}
    raw = [
        {"name": "classifier-v2", "url": url, "model": "classifier", "protocol": "v2", "payload": v2_payload,
         "expect": {"outputs": [{"name": "output-0", "shape": [-1, 4], "datatype": "FP32", "min": 0, "max": 1}]}},
        {"name": "classifier-v1", "url": url, "model": "classifier", "protocol": "v1", "payload": {"instances": sample_input(2)},
         "expect": {"outputs": [{"shape": [2, 4], "min": 0, "max": 1}]}},
        {"name": "classifier-meta", "url": url, "model": "classifier", "protocol": "v2", "payload": "metadata", "connection": "cold"},
        {"name": "broken", "url": url, "model": "broken", "protocol": "v2", "payload": "metadata"},
        {"name": "wrong-shape", "url": url, "model": "wrong-shape", "protocol": "v2", "payload": "metadata"},
        {"name": "slow", "url": url, "model": "slow", "protocol": "v2", "payload": v2_payload, "timeout_seconds": 0.01},
        {"name": "closed", "url": f"http://127.0.0.1:{free_port()}", "model": "classifier", "protocol": "v2", "payload": v2_payload},
        {"name": "unknown-model", "url": url, "model": "nope", "protocol": "v1", "payload": {"instances": sample_input(1)}},
    ]
    if llm_url:
        raw += [{"name": "chat", "url": llm_url, "model": "llm", "protocol": "openai", "timeout_seconds": 10,
                 "openai": {"endpoint": "chat", "prompt": "hello there", "max_tokens": TOKENS}},
                {"name": "completions", "url": llm_url, "model": "llm", "protocol": "openai", "timeout_seconds": 10,
                 "openai": {"endpoint": "completions", "prompt": "once upon", "max_tokens": TOKENS}}]
    return parse_targets({"targets": raw}, ProbeConfig())


def _exemplars(openmetrics: str, family: str, target: str) -> set[str]:
    found = set()
    for fam in text_string_to_metric_families(openmetrics):
        if fam.name == family:
            for s in fam.samples:
                if s.labels.get("target") == target and s.exemplar is not None:
                    found.add(s.exemplar.labels["trace_id"])
    return found


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_probe_traces_metrics_and_reasons_against_kserve(model_server: ModelServerProcess, llm_server: ModelServerProcess,
                                                          receiver: Receiver, transport: str) -> None:
    endpoint = f"127.0.0.1:{receiver.grpc_port}" if transport == "grpc" else f"http://127.0.0.1:{receiver.http_port}/v1/traces"
    cfg = ProbeConfig(otlp_endpoint=endpoint, otlp_protocol=transport, otlp_headers="x-tenant=gpulens")
    env = {"NODE_NAME": "gpu-node-1", "POD_NAME": "probe-abc", "POD_NAMESPACE": "monitoring"}
    app = ProbeApp(cfg, targets(model_server.url, llm_server.url), Tracing(cfg, env=env, schedule_delay_millis=50))
    try:
        results = {name: app.probe_once(t) for name, t in app.targets.items()}
        reasons = {name: r.reason for name, r in results.items()}
        assert reasons == {"classifier-v2": None, "classifier-v1": None, "classifier-meta": None, "broken": "http_5xx",
                           "wrong-shape": "validation", "slow": "timeout", "closed": "connect", "unknown-model": "http_4xx",
                           "chat": None, "completions": None}, {n: r.message for n, r in results.items()}
        ok = results["classifier-v2"]
        assert ok.status == 200 and "predict" in ok.server_timing
        assert set(ok.phases) == {"connect", "write", "server", "read", "decode"}
        assert "shape [1, 3]" in results["wrong-shape"].message  # caught from the v2 metadata, no per-model config

        # the server received our traceparent: the demo model echoes it
        assert ok.received_traceparent.split("-")[1] == ok.trace_id
        assert results["chat"].llm is not None and results["chat"].llm.response_id == f"cmpl-{results['chat'].trace_id}"

        # spans: root `probe <model>`, HTTP client span and phase spans as its children, on the wire
        spans = receiver.wait_for(ok.trace_id, 2 + len(ok.marks))
        by_name = {s.name: s for s in spans}
        root = by_name["probe classifier"]
        assert root.parent_id == "" and root.span_id == ok.span_id
        assert {s.name for s in spans if s.parent_id == root.span_id} == {"POST", "connect", "write", "server", "read", "decode"}
        client = by_name["POST"]
        assert client.kind == 3 and client.attributes["http.response.status_code"] == 200  # SPAN_KIND_CLIENT
        version, trace_id, parent_id, flags = ok.received_traceparent.split("-")
        assert (version, trace_id, parent_id) == ("00", ok.trace_id, client.span_id)
        assert int(flags, 16) & 1  # sampled (03 = sampled + random trace id, W3C trace context level 2)
        assert root.attributes["gpulens.probe.target"] == "classifier-v2" and root.attributes["gpulens.probe.success"] is True
        assert root.resource["service.name"] == "gpulens-probe" and root.resource["k8s.node.name"] == "gpu-node-1"
        assert root.resource["k8s.pod.name"] == "probe-abc" and root.resource["k8s.namespace.name"] == "monitoring"
        assert root.headers.get("x-tenant") == "gpulens"
        for phase in ok.marks:
            assert root.start_ns <= by_name[phase[0]].start_ns <= by_name[phase[0]].end_ns <= root.end_ns
        failed = receiver.wait_for(results["broken"].trace_id, 3)
        broken_root = next(s for s in failed if s.name == "probe broken")
        assert broken_root.status_code == 2 and broken_root.attributes["error.type"] == "http_5xx"  # STATUS_CODE_ERROR

        # OpenMetrics: exemplars carry the same trace ids, parsed by prometheus_client's real parser
        om = app.render(True).decode()
        assert _exemplars(om, "gpulens_probe_duration_seconds", "classifier-v2") == {ok.trace_id}
        assert _exemplars(om, "gpulens_probe_phase_duration_seconds", "classifier-v2") == {ok.trace_id}
        assert _exemplars(om, "gpulens_probe_time_to_first_token_seconds", "chat") == {results["chat"].trace_id}
        text = app.render(False).decode()
        assert "# {" not in text  # exemplars only in OpenMetrics
        assert 'gpulens_probe_success{model="broken",protocol="v2",target="broken"} 0.0' in text
        assert 'gpulens_probe_failures_total{model="wrong-shape",protocol="v2",reason="validation",target="wrong-shape"} 1.0' in text
        assert 'gpulens_probe_failures_total{model="classifier",protocol="v2",reason="timeout",target="classifier-v2"} 0.0' in text
        assert 'gpulens_probe_phase_duration_seconds_count{model="classifier",phase="tls",protocol="v2",target="classifier-v2"} 0.0' in text
        assert 'gpulens_probe_tokens_total{kind="completion",model="llm",protocol="openai",target="chat"} 8.0' in text
        assert 'gpulens_probe_span_export_errors_total 0.0' in text
    finally:
        app.stop()


def test_llm_figures_follow_the_injected_token_delay(llm_server: ModelServerProcess) -> None:
    cfg = ProbeConfig()
    app = ProbeApp(cfg, [t for t in targets("http://127.0.0.1:1", llm_server.url) if t.protocol == "openai"], Tracing(cfg))
    try:
        for name in ("chat", "completions"):
            runs = [app.probe_once(app.targets[name]) for _ in range(3)]
            assert all(r.success for r in runs), [r.message for r in runs]
            for r in runs:
                llm = r.llm
                assert llm is not None and llm.output_tokens == TOKENS and llm.completion_tokens == TOKENS
                assert llm.prompt_tokens and llm.finish_reason == "length"
                assert llm.ttft is not None and TOKEN_DELAY <= llm.ttft < TOKEN_DELAY + 2.0  # first token after one delay
                assert len(llm.inter_token) == TOKENS - 1
                # the server sleeps TOKEN_DELAY before each token: gaps add up to at least (n-1)·delay, minus jitter
                assert sum(llm.inter_token) >= 0.8 * (TOKENS - 1) * TOKEN_DELAY
                assert 0.5 * TOKEN_DELAY <= statistics.median(llm.inter_token) < TOKEN_DELAY + 0.5
                assert llm.tokens_per_second is not None and 0 < llm.tokens_per_second <= 1.5 / TOKEN_DELAY
    finally:
        app.stop()


def test_export_failures_are_counted_and_never_block_probing(model_server: ModelServerProcess, receiver: Receiver) -> None:
    cfg = ProbeConfig(otlp_endpoint=f"http://127.0.0.1:{receiver.http_port}/v1/traces", otlp_protocol="http", otlp_timeout_seconds=1)
    receiver.fail = True
    app = ProbeApp(cfg, targets(model_server.url)[:1], Tracing(cfg, schedule_delay_millis=50))
    try:
        results = [app.probe_once(app.targets["classifier-v2"]) for _ in range(3)]
        assert all(r.success and r.duration < 1.0 for r in results)  # the probe never waits for the exporter
        app.tracing.provider.force_flush(5000)
        assert app.tracing.export_errors > 0
        assert f"gpulens_probe_span_export_errors_total {float(app.tracing.export_errors)}" in app.render(False).decode()
    finally:
        receiver.fail = False
        app.stop()


def test_served_over_http_with_openmetrics_negotiation(model_server: ModelServerProcess, promtool: str) -> None:
    cfg = ProbeConfig()
    app = ProbeApp(cfg, targets(model_server.url)[:1], Tracing(cfg))
    server = MetricsServer("127.0.0.1", 0, app.render_parts, app.ready)
    server.start()
    try:
        result = app.probe_once(app.targets["classifier-v2"])
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith("# EOF\n")
        assert _exemplars(body, "gpulens_probe_duration_seconds", "classifier-v2") == {result.trace_id}
        lint = subprocess.run([promtool, "check", "metrics"], input=app.render(False), capture_output=True, timeout=60)
        assert lint.returncode == 0, lint.stderr.decode() + lint.stdout.decode()
    finally:
        server.stop()
        app.stop()


def test_targets_can_change_and_old_series_go(model_server: ModelServerProcess) -> None:
    cfg = ProbeConfig()
    first = targets(model_server.url)
    app = ProbeApp(cfg, first[:2], Tracing(cfg))
    try:
        for t in app.targets.values():
            app.probe_once(t)
        app.set_targets(first[1:2])
        text = app.render(False).decode()
        assert 'target="classifier-v2"' not in text and 'target="classifier-v1"' in text
    finally:
        app.stop()
