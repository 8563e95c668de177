"""Server normalisers on recorded-format expositions, parsed by prometheus_client's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulens.exporters.kserve import servers
from gpulens.metrics import kserve as k

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kserve"
ROOT = Path(__file__).resolve().parents[3]


def _norm(kind: str, default_model: str = "isvc") -> servers.Normalised:
    return servers.normalise((FIXTURES / f"{servers.KINDS[kind]}.prom").read_text(), servers.table(kind), default_model)


def test_triton_microsecond_counters_become_seconds() -> None:
    n = _norm("triton")
    assert n.counters[(k.REQUESTS.name, "bert", "success")] == 1520
    assert n.counters[(k.REQUESTS.name, "bert", "error")] == 13  # BACKEND 12 + OTHER 1
    assert n.counters[(k.REQUEST_DURATION_SUM.name, "bert", "")] == pytest.approx(18.24)
    assert n.counters[(k.QUEUE_DURATION_SUM.name, "bert", "")] == pytest.approx(1.52)
    assert n.counters[(k.COMPUTE_DURATION_SUM.name, "bert-tokenizer", "")] == pytest.approx(0.6132)
    assert n.gauges[(k.PENDING.name, "bert", "")] == 3
    assert n.models == {"bert", "bert-tokenizer"}


def test_torchserve_java_exposition_with_trailing_commas() -> None:
    n = _norm("torchserve")
    assert n.counters[(k.REQUESTS.name, "resnet", "unknown")] == 120
    assert n.counters[(k.REQUEST_DURATION_SUM.name, "resnet", "")] == pytest.approx(24.0)
    assert n.counters[(k.QUEUE_DURATION_SUM.name, "densenet", "")] == pytest.approx(0.0021)


def test_vllm_histograms_pass_through_with_their_buckets() -> None:
    n = _norm("vllm")
    assert n.counters[(k.REQUESTS.name, "llama", "success")] == 1002  # stop + length + abort
    e2e = n.histograms[(k.REQUEST_DURATION.name, "llama", "")]
    assert e2e.count == 1002 and e2e.sum == pytest.approx(2104.2)
    assert e2e.buckets[0.3] == 10 and e2e.buckets[float("inf")] == 1002 and len(e2e.buckets) == 22
    assert n.histograms[(k.TTFT.name, "llama", "")].buckets[0.1] == 900
    assert n.histograms[(k.ITL.name, "llama", "")].count == 200875
    assert n.gauges[(k.KV_CACHE.name, "llama", "")] == pytest.approx(0.37)
    assert n.gauges[(k.IN_FLIGHT.name, "llama", "")] == 4 and n.gauges[(k.PENDING.name, "llama", "")] == 1
    assert n.counters[(k.QUEUE_DURATION_SUM.name, "llama", "")] == pytest.approx(95.3)
    assert n.counters[(k.COMPUTE_DURATION_SUM.name, "llama", "")] == pytest.approx(2008.9)


def test_queue_proxy_status_classes_and_the_inferenceservice_model() -> None:
    n = _norm("queue-proxy", default_model="sklearn-iris")
    assert n.counters[(k.REQUESTS.name, "sklearn-iris", "success")] == 1203  # 2xx + 4xx
    assert n.counters[(k.REQUESTS.name, "sklearn-iris", "error")] == 7  # 500 + 503
    assert n.gauges[(k.PENDING.name, "sklearn-iris", "")] == 2


def test_kserve_model_server_histograms() -> None:
    text = """# HELP request_predict_seconds predict latency
# TYPE request_predict_seconds histogram
request_predict_seconds_bucket{le="0.005",model_name="classifier"} 3.0
request_predict_seconds_bucket{le="0.01",model_name="classifier"} 4.0
request_predict_seconds_bucket{le="+Inf",model_name="classifier"} 5.0
request_predict_seconds_count{model_name="classifier"} 5.0
request_predict_seconds_sum{model_name="classifier"} 0.04
# HELP request_preprocess_seconds pre-processing latency
# TYPE request_preprocess_seconds histogram
request_preprocess_seconds_bucket{le="+Inf",model_name="classifier"} 5.0
request_preprocess_seconds_count{model_name="classifier"} 5.0
request_preprocess_seconds_sum{model_name="classifier"} 0.01
"""
    n = servers.normalise(text, servers.table("kserve"), "isvc")
    assert n.counters[(k.REQUESTS.name, "classifier", "unknown")] == 5
    assert n.counters[(k.REQUEST_DURATION_SUM.name, "classifier", "")] == pytest.approx(0.05)
    assert n.counters[(k.COMPUTE_DURATION_SUM.name, "classifier", "")] == pytest.approx(0.04)
    assert n.histograms[(k.REQUEST_DURATION.name, "classifier", "")].buckets == {0.005: 3, 0.01: 4, float("inf"): 5}


@pytest.mark.parametrize("body", ["<html><body>502 Bad Gateway</body></html>", "metric{label=oops} 1", "a b c d"])
def test_garbage_raises_value_error(body: str) -> None:
    with pytest.raises(ValueError):
        servers.normalise(body, servers.table("kserve"), "m")


def test_every_table_maps_into_catalogued_families_only() -> None:
    catalogued = {f.name for f in (k.REQUESTS, k.REQUEST_DURATION, k.REQUEST_DURATION_SUM, k.QUEUE_DURATION_SUM,
                                   k.COMPUTE_DURATION_SUM, k.IN_FLIGHT, k.PENDING, k.TTFT, k.ITL, k.KV_CACHE)}
    for kind in servers.KINDS:
        for rule in servers.table(kind):
            assert rule.target.name in catalogued, (kind, rule.source)
            if rule.target.kind == "histogram":
                assert rule.how == "histogram"


def test_readme_mapping_table_is_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert servers.update_readme(readme) == readme, "README server mapping table is stale: run `make readme`"
    for kind, source, target, _ in servers.mapping_rows():
        assert f"| {kind} | `{source}` | `{target}` |" in readme
