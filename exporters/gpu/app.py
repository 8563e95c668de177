"""`gpulens gpu-exporter`: wires the sampler, pod attribution, event watcher and HTTP server.

Rendering happens once per sample, in the sampler thread, into both exposition formats; a scrape
only appends the sample age to pre-rendered bytes. Scrape cost therefore does not depend on NVML
latency or on how many scrapers there are.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pynvml
from prometheus_client.core import Metric

from gpulens.config import ConfigError
from gpulens.exporters.gpu import collectors as gpu
from gpulens.exporters.gpu import dcgm, health
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.gpu.events import EventWatcher
from gpulens.exporters.gpu.sampler import Sampler, Snapshot
from gpulens.exporters.podresources.client import PodResourcesWatcher
from gpulens.exposition import EOF, Renderer
from gpulens.logs import StateLog
from gpulens.metrics import gpu as c
from gpulens.server import MetricsServer
from gpulens.sim import SimulatedNVML, parse_simulate
from gpulens.sim.kubelet import FakeKubelet, demo_pods
from gpulens.webconfig import load_web_config

SWITCH_INTERVAL_SECONDS = 0.0005
STALE_INTERVALS = 3  # /readyz fails once the snapshot is this many intervals old (a hung NVML call)
_AGE_HEADER = f"# HELP {c.SAMPLE_AGE.name} {c.SAMPLE_AGE.help}\n# TYPE {c.SAMPLE_AGE.name} gauge\n".encode()


class GpuExporter:
    """The running exporter: start() the threads, render(openmetrics) for scrapes, ready() for /readyz."""

    def __init__(self, cfg: GpuExporterConfig, nvml: Any, nvml_source: str, hostname: str = "",
                 pods: PodResourcesWatcher | None = None, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self._source = nvml_source
        self._hostname = hostname
        self._clock = clock
        self._log = log or logging.getLogger("gpulens.gpu_exporter")
        self._collector_logs: dict[str, StateLog] = {}
        self._rendered = (b"", b"")
        self._renderer = Renderer()
        self.on_rendered: Callable[[dict[bool, bytes]], None] | None = None  # e.g. MetricsServer.prime
        self._render_lock = threading.Lock()
        self.sampler = Sampler(nvml, cfg.interval_seconds, cfg.processes, cfg.gpm, on_snapshot=self._render,
                               clock=clock, log=self._log)
        self.pods = pods
        self.events = EventWatcher(nvml, self.sampler.devices, lambda: self.sampler.generation,
                                   self.attribution, log=self._log) if cfg.xid_events else None

    def attribution(self) -> gpu.Attribution:
        return self.pods.mapping() if self.pods is not None else {}

    def start(self) -> None:
        self.sampler.cycle()  # first sample before serving, so /readyz is meaningful at once
        self.sampler.start()
        if self.pods is not None:
            self.pods.start()
        if self.events is not None:
            self.events.start()

    def stop(self) -> None:
        if self.events is not None:
            self.events.stop()
        if self.pods is not None:
            self.pods.stop()
        self.sampler.stop()

    def _collectors(self, snapshot: Snapshot) -> dict[str, Callable[[], Iterable[Metric]]]:
        attribution = self.attribution()
        out: dict[str, Callable[[], Iterable[Metric]]] = {"gpu": lambda: gpu.collect(snapshot, attribution, self.cfg.nvlink_per_link)}
        if self.events is not None:
            out["events"] = self.events.collect
        if self.pods is not None:
            out["podresources"] = self.pods.collect
        if self.cfg.compat == "dcgm":
            last_xid = self.events.last_xid() if self.events is not None else {}
            out["dcgm"] = lambda: dcgm.collect(snapshot, attribution, self._hostname, last_xid)
        return out

    def _render(self, snapshot: Snapshot) -> None:
        """Render every collector into both formats; one that raises is reported, the rest still export."""
        families: list[Metric] = []
        success = {}
        durations = {}
        for name, collect in self._collectors(snapshot).items():
            state = self._collector_logs.setdefault(name, StateLog(self._log, f"collector-{name}"))
            started = time.perf_counter()
            try:
                families.extend(collect())
                success[name] = True
                state.ok(f"collector {name} rendering")
            except Exception as err:  # a bug in one collector must not blank the others
                success[name] = False
                state.failed(type(err).__name__, f"collector {name} failed: {err!r}")
            durations[name] = time.perf_counter() - started
        families.extend(health.collect(snapshot, self._source, success, durations))
        # A family with no samples (NotSupported everywhere) is left out rather than exposed empty.
        rendered = self._renderer.render(f for f in families if f.samples)
        with self._render_lock:
            self._rendered = rendered
        if self.on_rendered is not None:
            self.on_rendered({False: rendered[0], True: rendered[1]})

    def render_parts(self, openmetrics: bool) -> tuple[bytes, bytes]:
        """(the last snapshot's exposition, the per-scrape tail with its age); never touches NVML.

        The first part is the same bytes object until the next sample, so the server compresses it
        once per sample however many scrapers ask.
        """
        snapshot = self.sampler.snapshot
        age = self._clock() - snapshot.monotonic if snapshot is not None else 0.0
        text, om = self._rendered
        tail = _AGE_HEADER + f"{c.SAMPLE_AGE.name} {age:.6f}\n".encode()
        return (om, tail + EOF) if openmetrics else (text, tail)

    def render(self, openmetrics: bool) -> bytes:
        """The whole exposition as one scrape would see it."""
        return b"".join(self.render_parts(openmetrics))

    def ready(self) -> tuple[bool, str]:
        snapshot = self.sampler.snapshot
        if snapshot is None:
            return False, "no sample yet"
        if not snapshot.nvml_up:
            return False, f"NVML is down: {snapshot.nvml_error}"
        age = self._clock() - snapshot.monotonic
        if age > STALE_INTERVALS * self.cfg.interval_seconds:
            return False, f"sampler stalled: last sample {age:.1f}s ago (an NVML call may hang)"
        return True, "ok"


def open_nvml(cfg: GpuExporterConfig, log: logging.Logger) -> tuple[Any, str]:
    """The NVML to use: real pynvml, or the simulated one (`--simulate N[:model]`, or `auto` fallback)."""
    spec = cfg.simulate
    if spec == "auto":
        try:
            pynvml.nvmlInit()
            pynvml.nvmlShutdown()
            return pynvml, "real"
        except pynvml.NVMLError as err:
            spec = "8:h100"
            log.warning(
                f"!!! NO NVIDIA DRIVER ({type(err).__name__}): SERVING 8 SIMULATED H100 GPUs (uuids GPU-sim-…), "
                "NOT REAL DATA !!!", extra={"event": {"action": "simulate-fallback"}},
            )
    if not spec:
        return pynvml, "real"
    count, model = parse_simulate(spec)
    if spec == cfg.simulate:
        log.warning(f"serving {count} simulated {model} GPUs (uuids GPU-sim-…), not real data")
    return SimulatedNVML(count=count, model=model, mig=cfg.simulate_mig or None), "simulated"


def run(cfg: GpuExporterConfig, log: logging.Logger) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    web_config = load_web_config(cfg.web_config_file) if cfg.web_config_file else None
    nvml, source = open_nvml(cfg, log)
    kubelet = None
    socket_path = cfg.podresources_socket
    if cfg.simulate_kubelet and source == "simulated":
        kubelet = FakeKubelet(os.path.join(tempfile.mkdtemp(prefix="gpulens-"), "kubelet.sock")).start()
        socket_path = kubelet.socket_path
    pods = PodResourcesWatcher(socket_path, cfg.podresources_interval_seconds) if cfg.pod_attribution else None
    hostname = cfg.hostname or os.environ.get("NODE_NAME") or socket.gethostname()
    exporter = GpuExporter(cfg, nvml, source, hostname, pods, log)
    server = MetricsServer(cfg.listen_address, cfg.port, exporter.render_parts, exporter.ready, web_config,
                           title="gpulens GPU exporter", log=log)
    exporter.on_rendered = server.prime
    try:
        server.start()
    except OSError as err:
        log.error(f"cannot listen on {cfg.listen_address}:{cfg.port}: {err.strerror}")
        return 1
    # The sampler thread is CPU-bound for a few ms per cycle; the default 5 ms GIL switch interval
    # would make a scrape arriving then wait for it. 0.5 ms keeps /metrics p99 flat while sampling.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    exporter.start()
    if kubelet is not None and pods is not None and exporter.sampler.snapshot is not None:
        gpus = exporter.sampler.snapshot.gpus
        kubelet.set_pods(demo_pods([g.identity.uuid for g in gpus], [m.uuid for g in gpus for m in g.mig]))
        pods.refresh()
        log.warning(f"pod attribution from a stand-in kubelet with demo pods on {socket_path}")
    log.info(f"gpu exporter serving on {cfg.listen_address}:{server.port} ({source} NVML)",
             extra={"event": {"action": "started"}})
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    exporter.stop()
    if kubelet is not None:
        kubelet.stop()
    return 0


def main(cfg: GpuExporterConfig) -> int:
    """`gpulens gpu-exporter`: check what the config names exists, then run; ConfigError → exit 2."""
    from gpulens import logs
    from gpulens.sim import MODELS, parse_simulate
    from gpulens.sim.mig import parse_layout
    from gpulens.webconfig import WebConfigError, load_web_config

    problems = []
    if cfg.simulate not in ("", "auto"):
        try:
            model = parse_simulate(cfg.simulate)[1]
            if cfg.simulate_mig:
                parse_layout(cfg.simulate_mig, MODELS[model])
        except ValueError as err:
            problems.append(f"simulate: {err}")
    if cfg.web_config_file:
        try:
            load_web_config(cfg.web_config_file)
        except WebConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(problems)
    return run(cfg, logs.setup(cfg.log_level, "gpulens-gpu-exporter"))
