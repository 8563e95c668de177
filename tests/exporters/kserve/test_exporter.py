"""The exporter end to end: the real KServe ModelServer, the API stand-in, stand-in endpoints for faults."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gpulens.exporters.kserve.app import KserveExporter
from gpulens.exporters.kserve.config import KserveExporterConfig
from gpulens.exporters.kserve.discovery import KubeDiscovery, api_client, parse_targets
from gpulens.loop import Backoff
from gpulens.metrics import families
from gpulens.metrics import kserve as k
from gpulens.sim.inferenceservices import fixtures, inference_service, predictor_pod
from gpulens.sim.kubeapi import KubeAPI
from gpulens.sim.modelmetrics import MetricsEndpoints
from gpulens.sim.modelserver import ModelServerProcess, sample_input
from tests.exporters.kserve.test_discovery import wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: bytes) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(snap: Samples, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels` (None if absent; error if ambiguous)."""
    found = [v for (n, ls), v in snap.items() if n == name and labels.items() <= dict(ls).items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def post(url: str, body: Any) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def v1(server: ModelServerProcess, model: str) -> int:
    return post(f"{server.url}/v1/models/{model}:predict", {"instances": sample_input(1)})


def v2(server: ModelServerProcess, model: str) -> int:
    return post(f"{server.url}/v2/models/{model}/infer",
                {"inputs": [{"name": "input-0", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": sample_input(1)}]})


def server_count(server: ModelServerProcess, model: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as resp:
        snap = samples(resp.read())
    return value(snap, "request_predict_seconds_count", model_name=model) or 0.0


REQ = k.REQUESTS.name
DUR = k.REQUEST_DURATION.name


def test_static_mode_counts_match_the_requests_sent(model_server: ModelServerProcess) -> None:
    cfg = KserveExporterConfig(mode="static", scrape_timeout_seconds=10)
    targets = parse_targets([{"name": "demo", "namespace": "local", "url": model_server.url, "protocol": "v2",
                              "models": ["classifier", "broken", "slow"]}])
    exporter = KserveExporter(cfg, targets=targets)
    try:
        exporter.refresh()
        before = samples(exporter.render())
        server_before = server_count(model_server, "classifier")
        statuses = [v1(model_server, "classifier") for _ in range(3)] + [v2(model_server, "classifier") for _ in range(2)]
        statuses += [v1(model_server, "broken"), v2(model_server, "broken")]
        assert statuses == [200] * 5 + [500, 500]
        exporter.refresh()
        after = samples(exporter.render())
        ids = {"namespace": "local", "inferenceservice": "demo", "server": "kserve"}

        def delta(name: str, **labels: str) -> float:
            return (value(after, name, **ids, **labels) or 0.0) - (value(before, name, **ids, **labels) or 0.0)

        assert delta(REQ, model="classifier", outcome="unknown") == 5
        assert server_count(model_server, "classifier") - server_before == 5  # the server agrees
        assert delta(REQ, model="broken", outcome="unknown") == 2  # KServe counts failed predicts too
        assert delta(DUR + "_count", model="classifier") == 5
        assert delta(DUR + "_bucket", model="classifier", le="+Inf") == 5
        assert delta(k.COMPUTE_DURATION_SUM.name, model="classifier") > 0
        for model in ("classifier", "broken", "slow"):
            assert value(after, k.MODEL_READY.name, model=model, endpoint=model_server.url.split("//")[1]) == 1
        assert value(after, k.SCRAPE_UP.name, inferenceservice="demo") == 1
        assert value(after, k.SCRAPE_LAST_SUCCESS.name, inferenceservice="demo")
    finally:
        exporter.stop()


def _kube_exporter(kubeapi: KubeAPI, tmp_path: Path, **cfg: Any) -> KserveExporter:
    """An exporter on the stand-in through a kubeconfig, with test-sized backoff (threads not started)."""
    config = KserveExporterConfig(kubeconfig=kubeapi.kubeconfig(str(tmp_path / "kubeconfig")), **cfg)
    discovery = KubeDiscovery(api_client(config.kubeconfig), (), "", config.resync_seconds, 2.0,
                              backoff=Backoff(base=0.1, cap=0.3), watch_grace=0.5)
    return KserveExporter(config, discovery=discovery)


def _wait_listed(exporter: KserveExporter, isvcs: int, pods: int) -> None:
    assert exporter.discovery is not None
    wait_until(lambda: len(exporter.discovery.snapshot()[0]) == isvcs and len(exporter.discovery.snapshot()[1]) == pods,  # type: ignore[union-attr]
               what=f"{isvcs} InferenceServices and {pods} pods listed")


def test_kubernetes_mode_against_the_real_model_server(model_server: ModelServerProcess, kubeapi: KubeAPI, tmp_path: Path) -> None:
    port = model_server.port
    kubeapi.add(inference_service("classifier", mode="RawDeployment", protocol="v2", runtime="kserve-pytorchserver"))
    pod = predictor_pod("classifier", serverless=False, ip="127.0.0.1", metrics_port=port)
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = port
    kubeapi.add(pod)
    exporter = _kube_exporter(kubeapi, tmp_path)
    exporter.discovery.start()  # type: ignore[union-attr]
    try:
        _wait_listed(exporter, 1, 1)
        exporter.refresh()
        before = samples(exporter.render())
        for _ in range(4):
            assert v2(model_server, "classifier") == 200
        exporter.refresh()
        after = samples(exporter.render())
        ids = {"namespace": "models", "inferenceservice": "classifier"}
        got = value(after, REQ, **ids, model="classifier") or 0
        assert got - (value(before, REQ, **ids, model="classifier") or 0) == 4
        assert value(after, k.ISVC_READY.name, **ids) == 1
        assert value(after, k.ISVC_INFO.name, **ids, deployment_mode="RawDeployment", runtime="kserve-pytorchserver") == 1
        assert value(after, k.MODEL_READY.name, **ids, model="classifier", server="kserve") == 1
        assert value(after, k.ISVC_REPLICAS_READY.name, **ids, component="predictor") == 1
        assert all(v == 0 for (n, _), v in after.items() if n == k.ISVC_DEGRADED.name)
        assert value(after, k.KUBE_UP.name, resource="inferenceservices") == 1
        # the pod starts crash-looping: KServe's Ready stays True, we say degraded
        kubeapi.modify(predictor_pod("classifier", serverless=False, ip="127.0.0.1", metrics_port=port, crash_loop=True))
        wait_until(lambda: any(p.crash_looping for p in exporter.discovery.snapshot()[1]))  # type: ignore[union-attr]
        exporter.refresh()
        snap = samples(exporter.render())
        assert value(snap, k.ISVC_DEGRADED.name, **ids, reason="crash_loop") == 1
        assert value(snap, k.ISVC_DEGRADED.name, **ids, reason="pods_not_ready") == 1
        assert value(snap, k.ISVC_READY.name, **ids) == 1
    finally:
        exporter.stop()


def test_state_families_for_the_fixtures(kubeapi: KubeAPI, tmp_path: Path) -> None:
    for isvc, pods in fixtures().values():
        kubeapi.add(isvc)
        for pod in pods:
            kubeapi.add(pod)
    exporter = _kube_exporter(kubeapi, tmp_path, scrape_timeout_seconds=0.2, readiness_probes=False)
    exporter.discovery.start()  # type: ignore[union-attr]
    try:
        _wait_listed(exporter, 4, 7)
        exporter.refresh()  # every scrape fails fast (10.0.x.x is not routable here): state is still complete
        snap = samples(exporter.render())
        m = {"namespace": "models"}
        assert value(snap, k.ISVC_TRAFFIC.name, **m, inferenceservice="llama", revision="llama-predictor-00001") == 0.9
        assert value(snap, k.ISVC_TRAFFIC.name, **m, inferenceservice="llama", tag="latest", latest="true") == 0.1
        assert value(snap, k.ISVC_REVISION_MISMATCH.name, **m, inferenceservice="resnet") == 1
        assert value(snap, k.ISVC_REVISION_MISMATCH.name, **m, inferenceservice="llama") == 0
        assert value(snap, k.ISVC_MODEL_FAILED_COPIES.name, **m, inferenceservice="resnet") == 1
        assert value(snap, k.ISVC_MODEL_STATE.name, **m, inferenceservice="resnet", transition_status="BlockedByFailedLoad") == 1
        assert value(snap, k.ISVC_READY.name, **m, inferenceservice="resnet") == 0
        assert value(snap, k.ISVC_CONDITION.name, **m, inferenceservice="resnet", condition="PredictorReady", status="false") == 1
        assert value(snap, k.ISVC_CONDITION.name, **m, inferenceservice="resnet", condition="PredictorReady", status="true") == 0
        assert value(snap, k.ISVC_CONDITION_TRANSITION.name, **m, inferenceservice="bert", condition="Ready")
        assert value(snap, k.ISVC_REPLICAS_DESIRED.name, **m, inferenceservice="bert", component="predictor") == 2
        assert value(snap, k.ISVC_DEGRADED.name, **m, inferenceservice="resnet", reason="crash_loop") == 0  # not Ready anyway
        # cold start: 6 ready pods observed once each; ready 75 s after creation, image pull+start 25 s
        assert value(snap, k.ISVC_COLD_START.name + "_count", **m, inferenceservice="bert", phase="ready") == 2
        assert value(snap, k.ISVC_COLD_START.name + "_bucket", **m, inferenceservice="bert", phase="ready", le="60.0") == 0
        assert value(snap, k.ISVC_COLD_START.name + "_bucket", **m, inferenceservice="bert", phase="ready", le="120.0") == 2
        assert value(snap, k.ISVC_COLD_START.name + "_sum", **m, inferenceservice="bert", phase="container_started") == 90
        exporter.refresh()
        again = samples(exporter.render())
        assert value(again, k.ISVC_COLD_START.name + "_count", **m, inferenceservice="bert", phase="ready") == 2
        errors = sum(v for (n, ls), v in again.items() if n == k.SCRAPE_ERRORS.name)
        assert errors >= 2 * 7  # every endpoint, both refreshes: counted, never raised
    finally:
        exporter.stop()


KSERVE_BODY = """# TYPE request_predict_seconds histogram
request_predict_seconds_bucket{{le="0.1",model_name="m"}} {n}
request_predict_seconds_bucket{{le="+Inf",model_name="m"}} {n}
request_predict_seconds_count{{model_name="m"}} {n}
request_predict_seconds_sum{{model_name="m"}} {s}
"""


@pytest.fixture
def endpoints() -> Iterator[MetricsEndpoints]:
    with MetricsEndpoints(delay=2.0, huge_bytes=50 * 1024 * 1024) as eps:
        yield eps


def _static(endpoints: MetricsEndpoints, **cfg: Any) -> KserveExporter:
    targets = parse_targets([{"name": "a", "namespace": "ns", "url": f"{endpoints.url}/a", "protocol": "v2", "models": ["m"]}])
    cfg.setdefault("scrape_timeout_seconds", 0.5)
    return KserveExporter(KserveExporterConfig(mode="static", scrape_max_bytes=1024 * 1024, **cfg), targets=targets)


@pytest.mark.parametrize(("fault", "reason"), [("timeout", "timeout"), ("garbage", "parse"), ("huge", "too_large"),
                                               ("http500", "http"), ("empty", "empty")])
def test_scrape_faults(endpoints: MetricsEndpoints, fault: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    endpoints.set("a", KSERVE_BODY.format(n=10, s=0.5))
    exporter = _static(endpoints)
    exporter.refresh()
    good = samples(exporter.render())
    last_ok = value(good, k.SCRAPE_LAST_SUCCESS.name)
    endpoints.fault("a", fault)
    with caplog.at_level(logging.ERROR):
        exporter.refresh()
        exporter.refresh()
    snap = samples(exporter.render())
    assert value(snap, k.SCRAPE_UP.name) == 0
    assert value(snap, k.SCRAPE_ERRORS.name, reason=reason) == 2
    assert value(snap, k.SCRAPE_LAST_SUCCESS.name) == last_ok  # stale, and says so
    assert value(snap, REQ, model="m") == 10  # last known value still exported
    assert value(snap, DUR + "_count", model="m") == 10
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1  # logged once
    endpoints.fault("a", None)
    endpoints.set("a", KSERVE_BODY.format(n=12, s=0.6))
    exporter.refresh()
    snap = samples(exporter.render())
    assert value(snap, k.SCRAPE_UP.name) == 1 and value(snap, REQ, model="m") == 12


def test_scrape_connection_refused() -> None:
    from gpulens.sim.modelserver import free_port

    port = free_port()
    targets = parse_targets([{"name": "gone", "namespace": "ns", "url": f"http://127.0.0.1:{port}"}])
    exporter = KserveExporter(KserveExporterConfig(mode="static"), targets=targets)
    exporter.refresh()
    snap = samples(exporter.render())
    assert value(snap, k.SCRAPE_ERRORS.name, reason="connect") == 1
    assert value(snap, k.MODEL_READY.name, model="gone") == 0


def test_counter_reset_keeps_totals_monotonic(endpoints: MetricsEndpoints) -> None:
    exporter = _static(endpoints)
    for n, expected in ((100, 100), (130, 130), (30, 160), (40, 170)):  # 130 → 30: the pod restarted
        endpoints.set("a", KSERVE_BODY.format(n=n, s=n / 100))
        exporter.refresh()
        snap = samples(exporter.render())
        assert value(snap, REQ, model="m") == expected
        assert value(snap, DUR + "_bucket", model="m", le="+Inf") == expected
        assert value(snap, DUR + "_sum", model="m") == pytest.approx(expected / 100)
    assert exporter.totals.resets == 4  # one restart, seen by 3 counters (requests, 2 sums) and the histogram


def test_exporter_keeps_state_while_the_api_is_down(kubeapi: KubeAPI, endpoints: MetricsEndpoints, tmp_path: Path) -> None:
    endpoints.set("p0", (Path(__file__).resolve().parents[2] / "fixtures" / "kserve" / "triton.prom").read_text())
    kubeapi.add(inference_service("bert", mode="RawDeployment", runtime="kserve-tritonserver", protocol="v2"))
    kubeapi.add(predictor_pod("bert", serverless=False, ip="127.0.0.1", metrics_port=endpoints.port, metrics_path="/p0/metrics"))
    exporter = _kube_exporter(kubeapi, tmp_path, readiness_probes=False)
    exporter.discovery.start()  # type: ignore[union-attr]
    try:
        _wait_listed(exporter, 1, 1)
        exporter.refresh()
        kubeapi.down()
        wait_until(lambda: not exporter.discovery.health()["inferenceservices"][0])  # type: ignore[union-attr]
        exporter.refresh()
        snap = samples(exporter.render())
        assert value(snap, k.KUBE_UP.name, resource="inferenceservices") == 0
        assert value(snap, k.KUBE_LAST_SUCCESS.name, resource="inferenceservices")
        assert value(snap, k.ISVC_READY.name, inferenceservice="bert") == 1
        assert value(snap, REQ, inferenceservice="bert", model="bert", outcome="error", server="triton") == 13
        ok, reason = exporter.ready()
        assert ok, reason  # stale but serving: /readyz stays up, the _up gauge says the rest
    finally:
        exporter.stop()


def test_promtool_accepts_the_exposition(model_server: ModelServerProcess, promtool: str, kubeapi: KubeAPI,
                                         endpoints: MetricsEndpoints, tmp_path: Path) -> None:
    fixture_dir = Path(__file__).resolve().parents[2] / "fixtures" / "kserve"
    for kind in ("triton", "vllm", "torchserve"):
        endpoints.set(kind, (fixture_dir / f"{kind}.prom").read_text())
    endpoints.set("kserve", KSERVE_BODY.format(n=3, s=0.1))
    endpoints.set("", (fixture_dir / "queue_proxy.prom").read_text())  # every queue-proxy at :<port>/metrics
    for isvc, pods in fixtures().values():
        kubeapi.add(isvc)
        server = {"sklearn-iris": "kserve", "bert": "triton", "llama": "vllm", "resnet": "torchserve"}[isvc["metadata"]["name"]]
        for pod in pods:
            pod["status"]["podIP"] = "127.0.0.1"
            pod["metadata"]["annotations"].update({"prometheus.kserve.io/port": str(endpoints.port),
                                                   "prometheus.kserve.io/path": f"/{server}/metrics"})
            kubeapi.add(pod)
    exporter = _kube_exporter(kubeapi, tmp_path, queue_proxy_port=endpoints.port, scrape_timeout_seconds=2)
    exporter.discovery.start()  # type: ignore[union-attr]
    try:
        _wait_listed(exporter, 4, 7)
        exporter.refresh()
        kubeapi.expire()  # one relist, so the relist counter has a sample
        wait_until(lambda: exporter.discovery.relists().get(("inferenceservices", "expired")))  # type: ignore[union-attr]
        exporter.refresh()
        text = exporter.render()
    finally:
        exporter.stop()
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    # the catalogue and a live /metrics agree: every kserve family is exported, nothing uncatalogued is
    live = {f.name for f in text_string_to_metric_families(text.decode())}
    catalogued = {f.name.removesuffix("_total") for f in families("kserve")}
    assert live - catalogued == set()
    assert catalogued - live == {k.SCRAPE_ERRORS.name.removesuffix("_total")}  # nothing failed here: see test_scrape_faults


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpulens", "kserve-exporter", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("targets", "line"), [
    ([{"name": "a", "namespace": "ns", "url": "http://h:1", "server": "onnx"}],
     "targets[0]: unknown server kind 'onnx' (allowed: kserve, triton, torchserve, vllm)"),
    ([{"name": "a", "namespace": "ns", "url": "http//h"}], "targets[0]: url: 'http//h' is not an http(s) URL with a host"),
    ([{"name": "a", "url": "http://h:1"}], "targets[0]: missing 'namespace'"),
])
def test_cli_bad_targets_exit_2(tmp_path: Path, targets: Any, line: str) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": targets}))
    out = _cli("--mode", "static", "--targets-file", str(path))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"gpulens kserve-exporter: targets file {path}: {line}"]


@pytest.mark.parametrize(("args", "line"), [
    (("--namespaces", "models,Bad_NS"), "namespaces: 'Bad_NS' is not a valid namespace name (lowercase RFC 1123 label)"),
    (("--mode", "static"), "targets_file: required with mode static (a YAML list of targets)"),
    (("--mode", "helm"), "flag --mode: 'helm' is not allowed (allowed: kubernetes, static)"),
])
def test_cli_bad_flags_exit_2(args: tuple[str, ...], line: str) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"gpulens kserve-exporter: {line}"]


def test_cli_missing_kubeconfig_exit_2(tmp_path: Path) -> None:
    out = _cli("--kubeconfig", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert out.stderr.startswith(f"gpulens kserve-exporter: kubeconfig: cannot load {tmp_path / 'nope'}:")


def test_readme_documents_every_flag() -> None:
    import dataclasses

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for f in dataclasses.fields(KserveExporterConfig):
        assert f"`--{f.name.replace('_', '-')}`" in readme, f.name


class _Sink:
    """Collects shipped event documents (what a Shipper's submit() receives)."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def submit(self, doc: dict[str, Any]) -> None:
        self.docs.append(doc)


def test_ready_flips_are_events_and_first_sightings_are_not(kubeapi: KubeAPI, tmp_path: Path) -> None:
    from gpulens import events

    kubeapi.add(inference_service("flip", ready=True))
    exporter = _kube_exporter(kubeapi, tmp_path, scrape_timeout_seconds=0.2, readiness_probes=False)
    sink = _Sink()
    events.attach(sink)
    exporter.discovery.start()  # type: ignore[union-attr]
    try:
        _wait_listed(exporter, 1, 0)
        exporter.refresh()
        assert sink.docs == []  # first sighting: no flip
        kubeapi.modify(inference_service("flip", ready=False))
        wait_until(lambda: exporter.discovery.snapshot()[0][0].ready is False, what="Ready=False seen")  # type: ignore[union-attr]
        exporter.refresh()
        exporter.refresh()  # unchanged: no second event
        [doc] = sink.docs
        assert doc["event"]["action"] == "inferenceservice.ready_changed"
        assert doc["inferenceservice"] == {"namespace": "models", "name": "flip", "ready": False}
    finally:
        events.detach(sink)
        exporter.stop()
