"""Collectors without servers: "ready but broken", endpoints, and the README fault table's tests exist."""

from __future__ import annotations

import re
from pathlib import Path

from gpulens.exporters.kserve.collectors import degraded, endpoints_from_kube
from gpulens.exporters.kserve.discovery import parse_inference_service, parse_pod
from gpulens.sim.inferenceservices import BASE_TIME, inference_service, predictor_pod

ROOT = Path(__file__).resolve().parents[3]
NOW = BASE_TIME + 3600


def test_ready_but_broken_reasons() -> None:
    isvc = parse_inference_service(inference_service("a", mode="RawDeployment"))
    ok = [parse_pod(predictor_pod("a", serverless=False))]
    assert not any(degraded(isvc, ok, {("a", "kserve", "p"): True}, 120, NOW).values())
    assert degraded(isvc, ok, {("a", "kserve", "p"): False}, 120, NOW)["model_not_ready"]
    assert degraded(isvc, [], {}, 120, NOW)["no_pods"]
    crash = [parse_pod(predictor_pod("a", serverless=False, crash_loop=True))]
    assert {r for r, on in degraded(isvc, crash, {}, 120, NOW).items() if on} == {"crash_loop", "pods_not_ready"}
    young = [parse_pod(predictor_pod("a", serverless=False, ready=False, created=NOW - 30))]
    assert not degraded(isvc, young, {}, 120, NOW)["pods_not_ready"]  # still starting: within the grace


def test_not_degraded_when_not_ready_or_scaled_to_zero() -> None:
    failing = parse_inference_service(inference_service("a", failed=True, revision=2))
    crash = [parse_pod(predictor_pod("a", crash_loop=True))]
    assert not any(degraded(failing, crash, {}, 120, NOW).values())  # Ready False already says it
    serverless = parse_inference_service(inference_service("a"))
    assert not any(degraded(serverless, [], {}, 120, NOW).values())  # scale to zero is normal


def test_endpoints_per_pod_and_queue_proxy() -> None:
    isvc = parse_inference_service(inference_service("a", protocol="v2"))  # runtime kserve-torchserve
    pods = [parse_pod(predictor_pod("a", ip="10.0.0.5")),
            parse_pod(predictor_pod("a", index=1, ip=""))]  # no IP yet: not scraped
    eps = endpoints_from_kube([isvc], pods, queue_proxy_port=9091)
    assert [(e.server, e.metrics_url, e.count_requests) for e in eps] == [
        ("torchserve", "http://10.0.0.5:8080/metrics", False), ("queue-proxy", "http://10.0.0.5:9091/metrics", True)]
    assert eps[0].base_url == "http://10.0.0.5:8080" and eps[0].models == ("a",) and eps[0].protocol == "v2"


def test_every_test_named_in_the_readme_fault_table_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Faults.** Whatever fails, the exporter")
    section = readme[start:readme.index("\n## ", start)]
    named = set(re.findall(r"`(test_[a-z0-9_]+)", section))
    assert len(named) >= 10
    code = "".join(p.read_text() for p in (ROOT / "tests" / "exporters" / "kserve").glob("test_*.py"))
    assert {n for n in named if f"def {n}(" not in code} == set()
