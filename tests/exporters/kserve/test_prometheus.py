"""Done-when: a real Prometheus scrapes the exporter (real KServe ModelServer + API stand-in) and the
recording rules give the model's request rate and p99 latency.

The rules come from alerts/rules/*.yaml (the dashboards/alerts build) when present; otherwise a
minimal group with exactly the recording rule names the dashboards use.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gpulens.metrics import kserve as k
from gpulens.sim.inferenceservices import inference_service, predictor_pod
from gpulens.sim.kubeapi import KubeAPI
from gpulens.sim.modelserver import ModelServerProcess
from tests.exporters.kserve.test_exporter import v2
from tests.prometheus_server import Prometheus, free_port

ROOT = Path(__file__).resolve().parents[3]
REQUESTS, ERRORS, P50, P99 = ("gpulens:inference_requests:rate5m", "gpulens:inference_error_ratio:rate5m",
                              "gpulens:inference_latency_seconds:p50_5m", "gpulens:inference_latency_seconds:p99_5m")
BY = "namespace, inferenceservice, model, server"
FALLBACK = {"groups": [{"name": "gpulens-inference-test", "rules": [
    {"record": REQUESTS, "expr": f"sum by ({BY}) (rate({k.REQUESTS.name}[5m]))"},
    {"record": ERRORS, "expr": f'(sum by ({BY}) (rate({k.REQUESTS.name}{{outcome="error"}}[5m])) or {REQUESTS} * 0) / {REQUESTS}'},
    *({"record": f"gpulens:inference_latency_seconds:p{q}_5m",
       "expr": f"histogram_quantile(0.{q}, sum by ({BY}, le) (rate({k.REQUEST_DURATION.name}_bucket[5m])))"} for q in (50, 95, 99)),
]}]}


def rule_files(tmp: Path) -> tuple[str, ...]:
    shipped = [p for p in sorted((ROOT / "alerts" / "rules").glob("*.yaml")) if REQUESTS in p.read_text()]
    if shipped:
        return tuple(str(p) for p in shipped)
    (tmp / "rules.yaml").write_text(yaml.safe_dump(FALLBACK))
    return (str(tmp / "rules.yaml"),)


@pytest.fixture
def stack(model_server: ModelServerProcess, prometheus_bin: str, tmp_path: Path):
    api = KubeAPI().start()
    api.add(inference_service("classifier", mode="RawDeployment", protocol="v2", runtime="kserve-custom"))
    pod = predictor_pod("classifier", serverless=False, ip="127.0.0.1", metrics_port=model_server.port)
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = model_server.port
    api.add(pod)
    port = free_port()
    log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpulens", "kserve-exporter", "--kubeconfig", api.kubeconfig(str(tmp_path / "kubeconfig")),
         "--listen-address", "127.0.0.1", "--port", str(port), "--interval-seconds", "0.5"],
        stdout=log, stderr=subprocess.STDOUT)
    prom = Prometheus(prometheus_bin, tmp_path, {"gpulens-kserve": f"127.0.0.1:{port}"}, rule_files=rule_files(tmp_path))
    try:
        yield prom
    finally:
        prom.stop()
        proc.terminate()
        proc.wait(10)
        log.close()
        api.stop()


def _value(prom: Prometheus, promql: str) -> float:
    [result] = prom.query(promql)
    return float(result["value"][1])


def test_recording_rules_give_request_rate_and_p99(stack: Prometheus, model_server: ModelServerProcess) -> None:
    prom = stack
    assert v2(model_server, "classifier") == 200  # the series exists from here on
    sel = '{namespace="models",inferenceservice="classifier",model="classifier",server="kserve"}'
    prom.wait_for(f"{k.ISVC_READY.name}{{inferenceservice=\"classifier\"}} == 1", timeout=60)
    prom.wait_for(f"{k.REQUESTS.name}{sel}", timeout=60)
    time.sleep(1.5)  # two scrapes of the same value: the exporter has caught up with the server
    start = _value(prom, f"{k.REQUESTS.name}{sel}")
    sent = 40
    stop = threading.Event()

    def load() -> None:
        for _ in range(sent):
            assert v2(model_server, "classifier") == 200
            time.sleep(0.05)
        stop.set()

    t = threading.Thread(target=load)
    t.start()
    t.join(120)
    assert stop.is_set()
    # the count Prometheus holds moves by exactly the requests sent
    prom.wait_for(f"{k.REQUESTS.name}{sel} == {start + sent}", timeout=30)
    rate = float(prom.wait_for(f"{REQUESTS}{sel} > 0", timeout=30)[0]["value"][1])
    p99 = float(prom.wait_for(f"{P99}{sel} > 0", timeout=30)[0]["value"][1])
    p50 = _value(prom, f"{P50}{sel}")
    assert 0 < p50 <= p99 <= 10.0  # seconds, from KServe's own predict buckets
    assert rate > 0
    assert _value(prom, f"{ERRORS}{sel}") == 0  # KServe counts no errors itself: unknown outcome, ratio 0
