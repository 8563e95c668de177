"""The observability stack the dashboard and alert tests share, started once per session.

Real parts: Debian `prometheus` (rules loaded, `--rules.alert.resend-delay=1s`, 1 s scrape and
evaluation) and `prometheus-alertmanager` (alerts/alertmanager.yml with its receivers pointed at a
webhook server in this process and short group timings). Scraped: in-process `gpulens gpu-exporter`s
on simulated NVML with the stand-in kubelet, one per "node", faults injected through the sim's API:

  gpu-node-1  6 H100s: 0 busy, hot, 97% memory, thermally throttled; 1 XID 48, uncorrectable ECC,
              row remap pending and failed; 2 healthy (the end-to-end paging test's XID 79 target);
              3 allocated and idle; 4 lost (GpuIsLost); 5 in MIG mode. Every whole GPU is held by a
              KServe-named predictor pod (demo pods), MIG slices by small-model pods.
  gpu-node-2  2 GPUs, NVML down (driver unloaded).
  gpu-node-3  2 GPUs, an NVML call hangs: samples go stale.
  gpu-node-4  no exporter listening: the target is down.

And `gpulens kserve-exporter` (Kubernetes mode, in process) against the Kubernetes API stand-in
holding the sim's InferenceService fixtures: sklearn-iris (serverless), bert (raw), llama (canary
at 10 %), resnet (failed rollout, crash-looping pod). Their model servers' pod IPs do not exist
here, so request families stay empty until a model server is added.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pynvml
import pytest
import yaml

from gpulens.alerts.build import render_rule_files
from gpulens.alerts.config import AlertConfig
from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.kserve.app import KserveExporter
from gpulens.exporters.kserve.app import build as build_kserve
from gpulens.exporters.kserve.config import KserveExporterConfig
from gpulens.exporters.podresources.client import PodResourcesWatcher
from gpulens.server import MetricsServer
from gpulens.sim import MODELS, SimulatedNVML
from gpulens.sim.inferenceservices import fixtures as isvc_fixtures
from gpulens.sim.kubeapi import KubeAPI
from gpulens.sim.kubelet import FakeKubelet, demo_pods
from tests.prometheus_server import free_port
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
JOB = AlertConfig().gpu_exporter_job
KSERVE_JOB = "gpulens-kserve-exporter"
CLUSTER = "test"
HOT_GPU, BROKEN_GPU, PAGE_GPU, IDLE_GPU, LOST_GPU, MIG_GPU = range(6)
THERMAL = 0x40  # HwThermalSlowdown
LOG = logging.getLogger("tests.stack")


def wait(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll until check() returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:  # Prometheus explains a bad query in the body
        raise AssertionError(f"{err.code} from {urllib.parse.unquote(url)}: {err.read().decode()[:500]}") from err


class Webhook:
    """Collects what Alertmanager posts, by path (/pager, /pagerduty, /ticket, /chat)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                with outer._lock:
                    outer.received.append((self.path, dict(self.headers), body))
                reply = b'{"status":"success","message":"Event processed","dedup_key":"x"}'
                self.send_response(202 if self.path == "/pagerduty" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self, path: str) -> list[Any]:
        with self._lock:
            return [body for p, _, body in self.received if p == path]

    def alerts(self, path: str) -> list[dict[str, Any]]:
        """Every alert in every webhook notification to `path`."""
        return [a for body in self.posts(path) for a in body["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Node:
    """One simulated GPU node: NVML, stand-in kubelet, exporter and its HTTP server."""

    name: str
    nvml: SimulatedNVML
    exporter: GpuExporter
    server: MetricsServer
    kubelet: FakeKubelet
    uuids: list[str]  # by GPU index, as the exporter enumerated them
    release: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.release.set()  # un-hang a hung NVML call so the sampler thread can finish
        self.server.stop()
        self.exporter.stop()
        self.kubelet.stop()


def _node(name: str, tmp: Path, count: int, seed: int, prepare: Callable[[SimulatedNVML], None] = lambda nv: None,
          after: Callable[[SimulatedNVML], None] = lambda nv: None) -> Node:
    nvml = SimulatedNVML(count=count, model="h100", seed=seed)  # own seed: uuids differ between nodes
    prepare(nvml)
    devices = nvml.devices()
    kubelet = FakeKubelet(str(tmp / f"{name}.sock")).start()
    kubelet.set_pods(demo_pods(devices))
    after(nvml)
    pods = PodResourcesWatcher(kubelet.socket_path, interval=0.5, log=LOG)
    cfg = GpuExporterConfig(listen_address="127.0.0.1", port=0, interval_seconds=0.5, processes=True)
    exporter = GpuExporter(cfg, nvml, "simulated", name, pods, LOG)
    server = MetricsServer("127.0.0.1", 0, exporter.render_parts, exporter.ready, None, title=name, log=LOG)
    server.start()
    exporter.start()
    wait(f"{name}'s first NVML sample", lambda: exporter.sampler.snapshot, timeout=30)
    return Node(name, nvml, exporter, server, kubelet, [uuid for uuid, _ in devices])


def _gpu_node_1(nv: SimulatedNVML) -> None:
    nv.set_load(IDLE_GPU, 0.0)
    nv.set_load(HOT_GPU, 1.0)
    nv.set_processes(HOT_GPU, [(4242, int(MODELS["h100"].memory_bytes * 0.97))])
    nv.set_mig(MIG_GPU, "3g.40gb+2x2g.20gb")


@dataclass
class Kserve:
    """The KServe exporter on the Kubernetes API stand-in."""

    api: KubeAPI
    exporter: KserveExporter
    server: MetricsServer

    def stop(self) -> None:
        self.server.stop()
        self.exporter.stop()
        self.api.stop()


def _kserve(tmp: Path) -> Kserve:
    api = KubeAPI().start()
    for isvc, pods in isvc_fixtures("models").values():
        api.add(isvc)
        for pod in pods:
            api.add(pod)
    cfg = KserveExporterConfig(listen_address="127.0.0.1", port=0, kubeconfig=api.kubeconfig(str(tmp / "kubeconfig")),
                               interval_seconds=1.0, scrape_timeout_seconds=0.2, readiness_probes=False)
    exporter = build_kserve(cfg, LOG)
    server = MetricsServer("127.0.0.1", 0, exporter.render_parts, exporter.ready, None, title="kserve", log=LOG)
    exporter.on_rendered = server.prime
    server.start()
    exporter.start()
    return Kserve(api, exporter, server)


class Prometheus:
    def __init__(self, workdir: Path, targets: dict[str, str], alertmanager: str, rules_dir: Path, kserve: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rules_dir / "*.yaml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [{
                "job_name": JOB,
                # The node label comes from relabelling in a cluster (ServiceMonitor); here it is a target label.
                "static_configs": [{"targets": [t], "labels": {"node": node, "cluster": CLUSTER}} for node, t in targets.items()],
            }, {
                "job_name": KSERVE_JOB,
                "static_configs": [{"targets": [kserve], "labels": {"cluster": CLUSTER}}],
            }],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [require_tool("prometheus"), f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--rules.alert.resend-delay=1s", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        body = _get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]

    def ready(self) -> bool:
        try:
            return _get(f"{self.url}/api/v1/status/runtimeinfo")["status"] == "success"
        except (OSError, AssertionError):  # not listening, or 503 while starting
            assert self.proc.poll() is None, "prometheus exited; see prometheus.log"
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


def alertmanager_config(webhook: str, key_file: Path) -> dict[str, Any]:
    """alerts/alertmanager.yml as shipped, with every receiver pointed at the test's webhook and short timings."""
    config = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = "1s"
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            pd.update(url=f"{webhook}/pagerduty", routing_key_file=str(key_file))
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook}/{receiver['name']}"
    return config


class Alertmanager:
    def __init__(self, workdir: Path, config: dict[str, Any]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self._log = open(workdir / "alertmanager.log", "wb")
        self.proc = subprocess.Popen(
            [require_tool("prometheus-alertmanager"), f"--config.file={workdir / 'alertmanager.yml'}",
             f"--storage.path={workdir / 'am-data'}", f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in filters.items()])
        return list(_get(f"{self.url}/api/v2/alerts?{query}"))

    def post(self, alerts: list[dict[str, Any]]) -> None:
        req = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5):
            pass

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            assert self.proc.poll() is None, "alertmanager exited; see alertmanager.log"
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


@dataclass
class Stack:
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: Webhook
    nodes: dict[str, Node]
    kserve: Kserve
    rules: dict[str, str]  # the rule files Prometheus loaded (every `for:` set to 0s)

    def uuid(self, node: str, gpu: int) -> str:
        return self.nodes[node].uuids[gpu]


def _inject_faults(stack: Stack) -> None:
    """Counter faults after the first scrape, so Prometheus sees them increase."""
    n1 = stack.nodes["gpu-node-1"].nvml
    n1.add_ecc(BROKEN_GPU, uncorrected=2)
    n1.add_remapped_rows(BROKEN_GPU, unc=1, pending=True, failure=True)
    n1.inject_xid(BROKEN_GPU, 48)
    n1.set_throttle(HOT_GPU, THERMAL)
    n2 = stack.nodes["gpu-node-2"].nvml
    n2.fail_init(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    n2.set_error("nvmlDeviceGetCount", pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    n3 = stack.nodes["gpu-node-3"]
    n3.nvml.hang("nvmlDeviceGetUtilizationRates", n3.release)


@pytest.fixture(scope="session")
def gpulens_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gpulens-stack")
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    webhook = Webhook()
    nodes: dict[str, Node] = {}
    prom = am = kserve = None
    try:
        nodes["gpu-node-1"] = _node("gpu-node-1", tmp, 6, 1, _gpu_node_1, lambda nv: nv.lose_gpu(LOST_GPU))
        nodes["gpu-node-2"] = _node("gpu-node-2", tmp, 2, 2)
        nodes["gpu-node-3"] = _node("gpu-node-3", tmp, 2, 3)
        targets = {name: f"127.0.0.1:{n.server.port}" for name, n in nodes.items()}
        targets["gpu-node-4"] = f"127.0.0.1:{free_port()}"  # nothing listens: up == 0
        kserve = _kserve(tmp)
        (tmp / "pagerduty-routing-key").write_text("R0UT1NGK3Y0000000000000000000000\n")
        am = Alertmanager(tmp, alertmanager_config(webhook.url, tmp / "pagerduty-routing-key"))
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        rules = render_rule_files(AlertConfig(), for_="0s")
        for name, text in rules.items():
            (rules_dir / name).write_text(text)
        prom = Prometheus(tmp, targets, f"127.0.0.1:{am.port}", rules_dir, f"127.0.0.1:{kserve.server.port}")
        wait("alertmanager ready", am.ready)
        wait("prometheus ready", prom.ready)
        stack = Stack(prom, am, webhook, nodes, kserve, rules)
        wait("every exporter scraped once", lambda: len(prom.query(f'up{{job="{JOB}"}} == 1')) == 3)
        _inject_faults(stack)
        for what, query in [
            ("the XID 48", 'gpulens_gpu_xid_errors_total{xid="48"}'),
            ("the ECC errors as an increase", 'increase(gpulens_gpu_ecc_errors_total{type="uncorrected"}[1m]) > 0'),
            ("NVML down on gpu-node-2", 'gpulens_nvml_up{node="gpu-node-2"} == 0'),
            ("stale samples on gpu-node-3", 'gpulens_gpu_sample_age_seconds{node="gpu-node-3"} > 3'),
            ("the idle GPU's activity record", 'gpulens:gpu_activity:ratio{gpu="3", node="gpu-node-1"} == 0'),
            ("the cost records", "gpulens:inferenceservice_gpus_allocated:count"),
            ("the down target", f'up{{job="{JOB}", node="gpu-node-4"}} == 0'),
            ("the InferenceServices", 'count(gpulens_inferenceservice_ready) == 4'),
        ]:
            wait(what, lambda q=query: prom.query(q))
        yield stack
    finally:
        if prom is not None:
            prom.stop()
        if am is not None:
            am.stop()
        if kserve is not None:
            kserve.stop()
        for node in nodes.values():
            node.stop()
        webhook.stop()
