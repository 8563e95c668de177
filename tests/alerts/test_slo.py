"""SLO specs: each validation rule with its exact message, and what the shipped specs generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpulens.alerts import slo

ROOT = Path(__file__).resolve().parents[2]
GOOD: dict[str, Any] = {"name": "llama", "selector": {"namespace": "models", "inferenceservice": "llama"},
                        "availability": 0.999, "latency": {"objective": 0.99, "threshold_seconds": 0.5}}


@pytest.mark.parametrize(("change", "message"), [
    ({"latency": {"objective": 0.99, "threshold_seconds": 0.3}},
     "x.yaml: latency.threshold_seconds 0.3 is not a bucket boundary of gpulens_model_request_duration_seconds "
     "(one of 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)"),
    ({"ttft": {"objective": 0.9, "threshold_seconds": 0.3}},
     "x.yaml: ttft.threshold_seconds 0.3 is not a bucket boundary of gpulens_model_time_to_first_token_seconds "
     "(one of 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10)"),
    ({"availability": 99.9}, "x.yaml: availability objective must be a fraction in (0, 1), got 99.9"),
    ({"latency": {"objective": 0.99}}, "x.yaml: latency needs exactly objective and threshold_seconds"),
    ({"source": "blackbox"}, "x.yaml: source must be one of ['probe', 'server'], got 'blackbox'"),
    ({"selector": {"pod": "x"}}, "x.yaml: selector must map some of ['inferenceservice', 'model', 'namespace', 'outcome', 'server'] "
                                 "to values, got {'pod': 'x'}"),
    ({"window": "a month"}, "x.yaml: window: not a Prometheus duration: 'a month'"),
    ({"objective": 0.9}, "x.yaml: unknown keys ['objective'] (allowed: name, source, selector, window, availability, latency, ttft)"),
    ({"name": "llama service"}, "x.yaml: name must be letters, digits and '-', got 'llama service'"),
])
def test_bad_spec_is_refused_with_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(slo.SloError) as err:
        slo.parse({**GOOD, **change}, "x.yaml")
    assert str(err.value) == message


def test_no_objective_is_refused() -> None:
    with pytest.raises(slo.SloError, match="no objective"):
        slo.parse({"name": "x", "selector": {"namespace": "a"}}, "x.yaml")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    for f in ("a.yaml", "b.yaml"):
        (tmp_path / f).write_text("name: same\nselector: {namespace: a}\navailability: 0.99\n")
    with pytest.raises(slo.SloError, match=r"duplicate SLO names \['same'\]"):
        slo.load(tmp_path)


def test_shipped_specs_generate_recording_rules_and_three_burn_tiers() -> None:
    specs = slo.load(ROOT / "alerts" / "slo")
    assert {s.name for s in specs} >= {"llama", "chat", "probe-llama"}
    for spec in specs:
        records = {r.record for r in slo.records(spec)}
        assert {slo.ERRORS.format(w) for w in (*slo.WINDOWS, spec.window)} <= records
        alerts = slo.alerts(spec)
        assert len(alerts) == 3 * len(spec.objectives)
        first = spec.objectives[0].kind
        tiers = sorted((a.severity, dict(a.labels)["long_window"]) for a in alerts if dict(a.labels)["objective"] == first)
        assert tiers == [("critical", "1h"), ("critical", "6h"), ("warning", "3d")]


def test_latency_sli_reads_the_threshold_bucket() -> None:
    (spec,) = [s for s in slo.load(ROOT / "alerts" / "slo") if s.name == "llama"]
    (rule,) = [r for r in slo.records(spec) if r.record == slo.ERRORS.format("5m") and dict(r.labels)["objective"] == "latency"]
    assert 'le="0.5"' in rule.expr and "gpulens_model_request_duration_seconds_count" in rule.expr
