"""The target list loader: one exact message per validation rule, every problem reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpulens.config import ConfigError, load
from gpulens.probes.inference.config import OutputExpectation, ProbeConfig, load_targets, parse_targets

CFG = ProbeConfig()
OK = {"url": "http://127.0.0.1:8080", "model": "m", "protocol": "v2", "payload": "metadata"}


def problems(*targets: object) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_targets({"targets": list(targets)}, CFG)
    return err.value.problems


def test_a_full_target_parses_with_defaults_from_the_command() -> None:
    cfg = ProbeConfig(interval_seconds=30, timeout_seconds=2, connection="cold")
    [t] = parse_targets({"targets": [{**OK, "payload": {"inputs": []}, "headers": {"Authorization": "Bearer x"},
                                       "expect": {"status": 200, "outputs": [{"name": "o", "shape": [-1, 4], "min": 0, "max": 1}]}}]}, cfg)
    assert (t.name, t.interval_seconds, t.timeout_seconds, t.connection) == ("m", 30.0, 2.0, "cold")
    assert t.expect_outputs == (OutputExpectation("o", "", (-1, 4), 0, 1),)
    assert t.headers == (("Authorization", "Bearer x"),) and not t.expect_from_metadata
    [m] = parse_targets({"targets": [OK]}, CFG)
    assert m.payload is None and m.expect_from_metadata
    [o] = parse_targets({"targets": [{"url": "https://llm/", "model": "llm", "protocol": "openai",
                                       "openai": {"endpoint": "completions", "max_tokens": 4, "prefix": ""}}]}, CFG)
    assert (o.url, o.openai_endpoint, o.max_tokens, o.openai_prefix) == ("https://llm", "completions", 4, "")


@pytest.mark.parametrize("target, message", [
    ({**OK, "colour": 1}, "targets: targets[0]: unknown key 'colour' (allowed: name, url, model, protocol, payload, payload_file, "
                          "expect, interval_seconds, timeout_seconds, connection, headers, tls_verify, ca_file, openai)"),
    ({"model": "m", "protocol": "v2", "payload": "metadata"}, "targets: targets[0]: missing key 'url'"),
    ({**OK, "protocol": "grpc"}, "targets: targets[0].protocol: 'grpc' is not allowed (allowed: v1, v2, openai)"),
    ({**OK, "url": "127.0.0.1:8080"}, "targets: targets[0].url: '127.0.0.1:8080' must start with http:// or https://"),
    ({**OK, "connection": "sticky"}, "targets: targets[0].connection: 'sticky' is not allowed (allowed: persistent, cold)"),
    ({**OK, "timeout_seconds": 0}, "targets: targets[0].timeout_seconds: 0 is not a positive number"),
    ({**OK, "interval_seconds": "often"}, "targets: targets[0].interval_seconds: 'often' is not a positive number"),
    ({**OK, "payload": "random"},
     "targets: targets[0].payload: 'random' is not allowed (a JSON object, or 'metadata' to generate one)"),
    ({**OK, "payload_file": "x.json"}, "targets: targets[0]: give one of 'payload' and 'payload_file', not both"),
    ({k: v for k, v in OK.items() if k != "payload"},
     "targets: targets[0]: missing key 'payload' (a JSON object, 'metadata', or use 'payload_file')"),
    ({**OK, "expect": {"status": 700}}, "targets: targets[0].expect.status: 700 is not an HTTP status (100-599)"),
    ({**OK, "expect": {"code": 200}}, "targets: targets[0].expect: unknown key 'code' (allowed: status, outputs)"),
    ({**OK, "expect": {"outputs": [{"shape": "4"}]}},
     "targets: targets[0].expect.outputs[0].shape: '4' is not a list of integers (-1 for any size)"),
    ({**OK, "expect": {"outputs": [{"min": "low"}]}}, "targets: targets[0].expect.outputs[0].min: 'low' is not a number"),
    ({**OK, "headers": ["a"]}, "targets: targets[0].headers: expected a mapping of header names to values"),
    ({**OK, "openai": {"endpoint": "responses"}},
     "targets: targets[0].openai.endpoint: 'responses' is not allowed (allowed: chat, completions)"),
    ({**OK, "openai": {"max_tokens": 0}}, "targets: targets[0].openai.max_tokens: 0 is not a positive integer"),
    ({**OK, "openai": {"temperature": 1}},
     "targets: targets[0].openai: unknown key 'temperature' (allowed: endpoint, prompt, max_tokens, prefix)"),
    ("v2", "targets: targets[0]: expected a mapping (allowed keys: name, url, model, protocol, payload, payload_file, expect, "
           "interval_seconds, timeout_seconds, connection, headers, tls_verify, ca_file, openai)"),
])
def test_each_rule_has_one_exact_message(target: object, message: str) -> None:
    assert problems(target) == [message]


def test_every_problem_is_reported_at_once_and_names_are_unique() -> None:
    assert problems({**OK, "protocol": "v3"}, OK, {**OK, "timeout_seconds": -1}) == [
        "targets: targets[0].protocol: 'v3' is not allowed (allowed: v1, v2, openai)",
        "targets: targets[1].name: 'm' is used by another target (names label the series)",
        "targets: targets[2].timeout_seconds: -1 is not a positive number",
        "targets: targets[2].name: 'm' is used by another target (names label the series)",
    ]


def test_the_file_shape_and_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_targets([OK], CFG)
    assert err.value.problems == ["targets: expected a mapping with one key 'targets' holding a list of targets"]
    with pytest.raises(ConfigError) as err:
        load_targets(str(tmp_path / "missing.yaml"), CFG)
    assert err.value.problems == [f"targets file {tmp_path / 'missing.yaml'}: No such file or directory"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [\n")
    with pytest.raises(ConfigError) as err:
        load_targets(str(bad), CFG)
    assert err.value.problems[0].startswith(f"targets file {bad}: not valid YAML: ")
    payload = tmp_path / "payload.json"
    payload.write_text("{nope")
    with pytest.raises(ConfigError) as err:
        parse_targets({"targets": [{**{k: v for k, v in OK.items() if k != "payload"}, "payload_file": str(payload)}]}, CFG)
    assert err.value.problems[0].startswith(f"targets: targets[0].payload_file: {payload}: not valid JSON: ")
    payload.write_text(json.dumps({"instances": [[1]]}))
    good = tmp_path / "good.yaml"
    good.write_text(f"targets:\n  - {{url: 'http://h:1', model: m, protocol: v1, payload_file: '{payload}'}}\n")
    assert load_targets(str(good), CFG)[0].payload == {"instances": [[1]]}


def test_probe_config_flags_are_checked_by_the_shared_loader() -> None:
    with pytest.raises(ConfigError) as err:
        load(ProbeConfig, env={}, flags={"connection": "sticky", "otlp_protocol": "udp", "jitter": "0.9"})
    assert err.value.problems == [
        "flag --connection: 'sticky' is not allowed (allowed: persistent, cold)",
        "flag --otlp-protocol: 'udp' is not allowed (allowed: grpc, http)",
        "flag --jitter: 0.9 is above the maximum 0.5",
    ]
    assert load(ProbeConfig, env={}).port == 9447
