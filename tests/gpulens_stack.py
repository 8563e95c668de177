"""The observability stack the dashboard and alert tests share, started once per session.

Real parts: Debian `prometheus` (rules loaded, `--rules.alert.resend-delay=1s`, 1 s scrape and
evaluation) and `prometheus-alertmanager` (alerts/alertmanager.yml with its receivers pointed at a
webhook server in this process and short group timings). Scraped: `gpulens gpu-exporter` processes
on simulated NVML with the demo kubelet (KServe-named predictor pods hold every GPU), faults given
with `--simulate-faults` and, at run time, `POST /-/simulate/fault`:

  gpu-node-1  6 H100s (--pod-usage: demo pods, two time-share each odd GPU): 0 busy, hot and thermally
              throttled; 1 XID 48 + uncorrectable ECC, row remap
              pending and failed; 2 healthy and half busy (the end-to-end paging test's XID 79 target); 3 idle;
              4 lost (GpuIsLost); 5 half busy. Loads are pinned so that only the idle GPU looks idle.
  gpu-node-2  2 GPUs, NVML down (driver unloaded) after 3 s.
  gpu-node-3  2 GPUs, an NVML call hangs after 3 s: samples go stale.
  gpu-node-4  no exporter listening: the target is down.
  gpu-node-5  2 GPUs in MIG mode (3g.40gb + 2x 2g.20gb).

And `gpulens kserve-exporter` (Kubernetes mode) against the Kubernetes API stand-in holding the
sim's InferenceService fixtures: sklearn-iris (serverless), bert (raw), llama (canary at 10 %),
resnet (failed rollout, crash-looping pod). Their pods' IPs do not exist here, so a second
`gpulens kserve-exporter` in static mode scrapes the real KServe model server of the session
(`model_server` fixture) as models/llama while a thread sends it v2 inference requests: request,
latency, cost and SLO figures come from real traffic.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulens.alerts.build import render_rule_files
from gpulens.alerts.config import AlertConfig
from gpulens.sim.inferenceservices import fixtures as isvc_fixtures
from gpulens.sim.kubeapi import KubeAPI
from gpulens.sim.modelserver import ModelServerProcess, sample_input
from tests.prometheus_server import free_port
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
JOB = AlertConfig().gpu_exporter_job
KSERVE_JOB = "gpulens-kserve-exporter"
PROBE_JOB = "gpulens-probe"
CLUSTER = "test"
HOT_GPU, BROKEN_GPU, PAGE_GPU, IDLE_GPU, LOST_GPU = range(5)
LOG = logging.getLogger("tests.stack")
NODES: dict[str, list[str]] = {  # node → extra gpu-exporter flags
    "gpu-node-1": ["--simulate", "6:h100", "--pod-usage", "--simulate-faults",
                   f"load:1@gpu{HOT_GPU}; throttle:thermal@gpu{HOT_GPU}; load:0@gpu{IDLE_GPU}; load:0.5@gpu{PAGE_GPU}; load:0.5@gpu5; "
                   f"lost@gpu{LOST_GPU}; "
                   # counters move after Prometheus has scraped them once, so increase() sees them
                   f"ecc-dbe:2@gpu{BROKEN_GPU}+4s; xid:48@gpu{BROKEN_GPU}+4s; remap-pending@gpu{BROKEN_GPU}; "
                   f"remap-failure@gpu{BROKEN_GPU}"],
    "gpu-node-2": ["--simulate", "2:h100", "--simulate-faults",
                   "error:nvmlInit=DriverNotLoaded@3s; error:nvmlDeviceGetCount=DriverNotLoaded@3s"],
    "gpu-node-3": ["--simulate", "2:h100", "--simulate-faults", "hang:nvmlDeviceGetUtilizationRates@3s..900s"],
    "gpu-node-5": ["--simulate", "2:h100", "--simulate-mig", "3g.40gb+2x2g.20gb"],
}


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
        threading.Thread(target=self.server.serve_forever, name="alert-webhook", daemon=True).start()

    def posts(self, path: str) -> list[Any]:
        with self._lock:
            return [body for p, _, body in self.received if p == path]

    def alerts(self, path: str) -> list[dict[str, Any]]:
        """Every alert in every webhook notification to `path`."""
        return [a for body in self.posts(path) for a in body["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Process:
    """A `gpulens` subcommand as its own process (the real CLI), logging to a file."""

    def __init__(self, workdir: Path, name: str, args: list[str]):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(workdir / f"{name}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gpulens", *args, "--listen-address", "127.0.0.1", "--port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def up(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited with {self.proc.returncode}; see {self._log.name}"
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def fault(self, schedule: str) -> None:
        """POST /-/simulate/fault: inject a fault into the running simulation."""
        req = urllib.request.Request(f"{self.url}/-/simulate/fault", data=schedule.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200, resp.read()

    def stop(self, grace: float = 10.0) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _gpu_exporter(workdir: Path, node: str, flags: list[str]) -> Process:
    return Process(workdir, node, ["gpu-exporter", *flags, "--simulate-kubelet", "--processes", "--hostname", node,
                                   "--interval-seconds", "0.5", "--podresources-interval-seconds", "0.5"])


class Traffic:
    """v2 inference requests to the model server until stopped (a few per second)."""

    def __init__(self, url: str):
        flat = [v for image in sample_input(1) for channel in image for row in channel for v in row]
        self._body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": flat}]}).encode()
        self._url = f"{url}/v2/models/classifier/infer"
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="inference-traffic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            req = urllib.request.Request(self._url, data=self._body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    resp.read()
                self.sent += 1
            except OSError as err:
                LOG.warning(f"inference request failed: {err}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _kubeapi(workdir: Path) -> tuple[KubeAPI, str]:
    api = KubeAPI().start()
    for isvc, pods in isvc_fixtures("models").values():
        api.add(isvc)
        for pod in pods:
            api.add(pod)
    return api, api.kubeconfig(str(workdir / "kubeconfig"))


class Prometheus:
    def __init__(self, workdir: Path, targets: dict[str, str], alertmanager: str, rules_dir: Path, kserve: list[str],
                 probes: list[str]):
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
                "static_configs": [{"targets": kserve, "labels": {"cluster": CLUSTER}}],
            }, {
                # The probe and the canary, in OpenMetrics (as Prometheus negotiates it): exemplars included.
                "job_name": PROBE_JOB,
                "static_configs": [{"targets": probes, "labels": {"cluster": CLUSTER, "node": "gpu-node-1"}}],
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
    exporters: dict[str, Process]
    rules: dict[str, str]  # the rule files Prometheus loaded (every `for:` set to 0s)

    def uuid(self, node: str, gpu: int) -> str:
        (info,) = self.prometheus.query(f'gpulens_gpu_info{{node="{node}", gpu="{gpu}"}}')
        return str(info["metric"]["uuid"])


_RUNNING: list[tuple[Stack, Callable[[], None]]] = []  # the stack and how to stop it, while it runs


@pytest.fixture
def gpulens_stack(tmp_path_factory: pytest.TempPathFactory, model_server: ModelServerProcess) -> Stack:
    """The shared stack: started by the first test that asks, stopped after the last consecutive one
    (so its processes do not load the rest of the session), restarted if a later test asks again."""
    if not _RUNNING:
        _RUNNING.append(_start(tmp_path_factory.mktemp("gpulens-stack"), model_server))
    return _RUNNING[0][0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the stack's tests one after another (in their collected order), so it starts once."""
    users = [i for i in items if "gpulens_stack" in getattr(i, "fixturenames", ())]
    if users:
        first = items.index(users[0])
        chosen = set(map(id, users))
        rest = [i for i in items if id(i) not in chosen]
        items[:] = rest[:first] + users + rest[first:]


def _stop_stack() -> None:
    while _RUNNING:
        _RUNNING.pop()[1]()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _RUNNING and (nextitem is None or "gpulens_stack" not in getattr(nextitem, "fixturenames", ())):
        _stop_stack()


def pytest_sessionfinish() -> None:
    _stop_stack()


def _start(tmp: Path, model_server: ModelServerProcess) -> tuple[Stack, Callable[[], None]]:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    webhook = Webhook()
    exporters: dict[str, Process] = {}
    api: KubeAPI | None = None
    prom: Prometheus | None = None
    am: Alertmanager | None = None
    traffic: Traffic | None = None

    def stop() -> None:
        if prom is not None:
            prom.stop()
        if am is not None:
            am.stop()
        if traffic is not None:
            traffic.stop()
        for process in exporters.values():
            process.proc.terminate()  # all at once; an exporter whose NVML call hangs may not finish
        for process in exporters.values():
            process.stop(grace=3.0)
        if api is not None:
            api.stop()
        webhook.stop()

    try:
        for node, flags in NODES.items():
            exporters[node] = _gpu_exporter(tmp, node, flags)
        api, kubeconfig = _kubeapi(tmp)
        exporters["kserve"] = Process(tmp, "kserve", ["kserve-exporter", "--kubeconfig", kubeconfig, "--interval-seconds", "1",
                                                      "--scrape-timeout-seconds", "0.2", "--readiness-probes", "false"])
        (tmp / "targets.yaml").write_text(yaml.safe_dump([{"name": "llama", "namespace": "models", "url": model_server.url,
                                                            "protocol": "v2", "server": "kserve", "models": ["classifier"]}]))
        exporters["kserve-static"] = Process(tmp, "kserve-static", ["kserve-exporter", "--mode", "static", "--targets-file",
                                                                    str(tmp / "targets.yaml"), "--interval-seconds", "1"])
        # The probe: a healthy target and the broken model (HTTP 500: GpulensProbeFailing fires for it).
        (tmp / "probe-targets.yaml").write_text(yaml.safe_dump({"targets": [
            {"name": "classifier", "url": model_server.url, "model": "classifier", "protocol": "v2", "payload": "metadata"},
            {"name": "broken", "url": model_server.url, "model": "broken", "protocol": "v2", "payload": "metadata"}]}))
        exporters["probe"] = Process(tmp, "probe", ["probe", "--targets-file", str(tmp / "probe-targets.yaml"),
                                                    "--interval-seconds", "1", "--timeout-seconds", "2"])
        # The canary on the CPU (no CUDA here), sized to take milliseconds.
        exporters["canary"] = Process(tmp, "canary", ["canary", "--device", "cpu", "--interval-seconds", "1",
                                                      "--matmul-size", "64", "--copy-bytes", "65536"])
        traffic = Traffic(model_server.url)
        targets = {node: f"127.0.0.1:{exporters[node].port}" for node in NODES}
        targets["gpu-node-4"] = f"127.0.0.1:{free_port()}"  # nothing listens: up == 0
        (tmp / "pagerduty-routing-key").write_text("R0UT1NGK3Y0000000000000000000000\n")
        am = Alertmanager(tmp, alertmanager_config(webhook.url, tmp / "pagerduty-routing-key"))
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        rules = render_rule_files(AlertConfig(), for_="0s")
        for name, text in rules.items():
            (rules_dir / name).write_text(text)
        prom = Prometheus(tmp, targets, f"127.0.0.1:{am.port}", rules_dir,
                          [f"127.0.0.1:{exporters[k].port}" for k in ("kserve", "kserve-static")],
                          [f"127.0.0.1:{exporters[k].port}" for k in ("probe", "canary")])
        wait("alertmanager ready", am.ready)
        wait("prometheus ready", prom.ready)
        for name, process in exporters.items():
            wait(f"{name} serving", process.up)
        stack = Stack(prom, am, webhook, exporters, rules)
        for what, query in [
            ("the XID 48", 'gpulens_gpu_xid_errors_total{xid="48"}'),
            ("the ECC errors as an increase", 'increase(gpulens_gpu_ecc_errors_total{type="uncorrected"}[1m]) > 0'),
            ("NVML down on gpu-node-2", 'gpulens_nvml_up{node="gpu-node-2"} == 0'),
            ("stale samples on gpu-node-3", 'gpulens_gpu_sample_age_seconds{node="gpu-node-3"} > 3'),
            ("the idle GPU's activity record", f'gpulens:gpu_activity:ratio{{gpu="{IDLE_GPU}", node="gpu-node-1"}} == 0'),
            ("the lost GPU", f'gpulens_gpu_up{{gpu="{LOST_GPU}", node="gpu-node-1"}} == 0'),
            ("the MIG instances", 'gpulens_mig_info{node="gpu-node-5"}'),
            ("the cost records", "gpulens:inferenceservice_gpus_allocated:count"),
            ("the down target", f'up{{job="{JOB}", node="gpu-node-4"}} == 0'),
            ("the InferenceServices", "count(gpulens_inferenceservice_ready) == 4"),
            ("llama's request rate", 'gpulens:inference_requests:rate5m{inferenceservice="llama"} > 0'),
            ("llama's latency SLO ratios", 'gpulens:slo_errors:ratio_rate5m{slo="llama", objective="latency"}'),
            ("the broken model's failed probes", 'gpulens_probe_success{model="broken"} == 0'),
            ("the canary's runs", "gpulens_canary_success == 1"),
        ]:
            wait(what, lambda q=query: prom.query(q))
        return stack, stop
    except BaseException:
        stop()
        raise
