"""`gpulens probe` as a command: config problems exit 2, failures log ECS lines with the trace ids, loops run."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from gpulens import logs
from gpulens.cli import main as cli_main
from gpulens.probes.inference.app import ProbeApp
from gpulens.probes.inference.config import ProbeConfig, parse_targets
from gpulens.probes.inference.otel import Tracing, parse_headers, resource_attributes
from gpulens.sim.modelserver import free_port
from tests.probes.rawserver import RawServer, http_response


def test_bad_config_exits_2_with_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets:\n  - {url: 'http://h:1', model: m, protocol: v9, payload: {}}\n")
    code = cli_main(["probe", "--targets-file", str(targets), "--otlp-protocol", "http", "--otlp-endpoint", "jaeger:4318",
                     "--otlp-headers", "novalue"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gpulens probe: targets file {targets}: targets[0].protocol: 'v9' is not allowed (allowed: v1, v2, openai)",
        "gpulens probe: otlp_endpoint: 'jaeger:4318' must be an http(s):// URL with otlp_protocol http",
        "gpulens probe: otlp_headers: 'novalue' is not key=value",
    ]
    assert cli_main(["probe"]) == 2
    assert "gpulens probe: targets_file: required (a YAML file with a `targets:` list), unless discover is on" in capsys.readouterr().err


def test_a_failed_probe_logs_one_ecs_line_with_trace_and_span_ids() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log = logs.setup("info", "gpulens-probe", stream)
    cfg = ProbeConfig()
    url = f"http://127.0.0.1:{free_port()}"
    app = ProbeApp(cfg, parse_targets({"targets": [{"url": url, "model": "m", "protocol": "v2", "payload": {}}]}, cfg),
                   Tracing(cfg), log)
    try:
        result = app.probe_once(app.targets["m"])
    finally:
        app.stop()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"probe"' in x]
    assert line["trace"]["id"] == result.trace_id and line["span"]["id"] == result.span_id and len(result.span_id) == 16
    # The typed probe.failed event (gpulens.events): one line on stdout, and to Elasticsearch when a shipper is attached.
    assert line["event"]["reason"] == "connect" and line["event"]["action"] == "probe.failed" and line["log.level"] == "error"
    assert line["probe"] == {"target": "m", "model": "m", "protocol": "v2"} and line["url"]["full"] == url


def test_loops_probe_on_their_interval() -> None:
    server = RawServer(lambda req: [(0, http_response(b'{"outputs": []}'))])
    cfg = ProbeConfig()
    raw = [{"url": server.url, "model": "m", "protocol": "v2", "payload": {}, "interval_seconds": 0.05}]
    app = ProbeApp(cfg, parse_targets({"targets": raw}, cfg), Tracing(cfg))
    app.start()
    try:
        deadline = time.monotonic() + 10
        while len(server.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(server.requests) >= 3 and app.ready() == (True, "ok")
        assert 'gpulens_probe_success{model="m",protocol="v2",target="m"} 1.0' in app.render(False).decode()
    finally:
        app.stop()
        server.close()


def test_otel_helpers() -> None:
    assert parse_headers("Authorization=Bearer x, x-scope=a=b") == {"authorization": "Bearer x", "x-scope": "a=b"}
    env = {"NODE_NAME": "n1", "POD_NAME": "p", "POD_NAMESPACE": "ns", "POD_UID": "u"}
    attrs = resource_attributes("svc", env)
    assert attrs["k8s.node.name"] == "n1" and attrs["k8s.pod.uid"] == "u" and attrs["service.name"] == "svc"
    assert "k8s.node.name" not in resource_attributes("svc", {})


def test_readme_documents_every_probe_and_canary_flag() -> None:
    import dataclasses

    from gpulens.probes.canary.config import CanaryConfig

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for cls in (ProbeConfig, CanaryConfig):
        missing = [f.name for f in dataclasses.fields(cls) if f"`--{f.name.replace('_', '-')}`" not in readme]
        assert missing == [], (cls.__name__, missing)
