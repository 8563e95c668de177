"""`gpulens gpu-exporter`: wires the sampler, pod attribution, event watcher and HTTP server.

The sampler thread reads NVML into an immutable snapshot. It renders a snapshot (both formats, cached
until the next sample) only if a scrape came since the previous sample; otherwise the first scrape
that asks renders it. Each scrape appends a small tail: the event counts (XIDs stay visible while NVML
hangs) and the sample age. With no scrapes nothing is rendered, so idle CPU is the sampling alone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import pynvml
from prometheus_client import ProcessCollector

from gpulens.config import ConfigError
from gpulens.exporters.gpu import collectors as gpu
from gpulens.exporters.gpu import dcgm, health
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.gpu.events import EventWatcher
from gpulens.exporters.gpu.sampler import Sampler, Snapshot
from gpulens.exporters.podresources.client import PodResourcesWatcher
from gpulens.exposition import EOF, ExpositionFamily, Renderer
from gpulens.logs import StateLog
from gpulens.metrics import gpu as c
from gpulens.server import MetricsServer
from gpulens.webconfig import WebConfigReloader

SWITCH_INTERVAL_SECONDS = 0.0005
STALE_INTERVALS = 3  # /readyz fails once the snapshot is this many intervals old (a hung NVML call)
_AGE_HEADER = f"# HELP {c.SAMPLE_AGE.name} {c.SAMPLE_AGE.help}\n# TYPE {c.SAMPLE_AGE.name} gauge\n".encode()
_PROCESS = ProcessCollector(registry=None)  # process_* (RSS, CPU, fds, start time), as node_exporter users expect


class GpuExporter:
    """The running exporter: start() the threads, render_parts(openmetrics) for scrapes, ready() for /readyz."""

    def __init__(self, cfg: GpuExporterConfig, nvml: Any, nvml_source: str, hostname: str = "",
                 pods: PodResourcesWatcher | None = None, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self._source = nvml_source
        self._hostname = hostname
        self._clock = clock
        self._log = log or logging.getLogger("gpulens.gpu_exporter")
        self._collector_logs: dict[str, StateLog] = {}
        self._renderer = Renderer()
        self._tail_renderer = Renderer()
        self._lock = threading.Lock()  # one render at a time; scrapes of a rendered snapshot only read
        self._started = clock()
        # Until the first sample: NVML counted down, age counted from start (a hang at start shows).
        self._placeholder = Snapshot(taken_at=time.time(), monotonic=self._started, nvml_up=False, nvml_error="no sample yet")
        self._rendered: tuple[bytes, bytes] = (b"", b"")
        self._rendered_snapshot: Snapshot | None = None  # the snapshot whose render is served (its age is published)
        self._tried: Snapshot | None = None
        self._render_error = ""
        self._success: dict[str, bool] = {}
        self._durations: dict[str, float] = {}
        self.events: EventWatcher | None = None
        self._scraped = False  # a scrape came since the last sample: render the next one ahead, in the sampler
        self.sampler = Sampler(nvml, cfg.interval_seconds, cfg.processes, cfg.gpm, clock=clock, log=self._log,
                               source=nvml_source, on_generation=self._generation_changed, on_snapshot=self._sampled)
        self.pods = pods
        self.usage: Any = None  # gpulens.exporters.pods.collector.PodUsage with --pod-usage
        if cfg.xid_events:
            self.events = EventWatcher(nvml, self.sampler.devices, lambda: self.sampler.generation,
                                       self.attribution, log=self._log)
        self.canary: Any = None
        self._canary_loop: Any = None
        if cfg.canary:  # torch is imported only here: the default exporter stays small
            from gpulens.probes.canary.collectors import Canary
            from gpulens.probes.canary.config import CanaryConfig

            # auto: the CUDA GPUs when present, else the CPU (labelled device="cpu"), as `gpulens canary`
            self.canary = Canary(CanaryConfig(interval_seconds=cfg.canary_interval_seconds), log=self._log)
            self._canary_loop = self.canary.loop()

    def _sampled(self, snapshot: Snapshot) -> None:
        """Scrapers active since the last sample will want this one: render it now, off their path.

        With nobody scraping nothing is rendered (idle CPU is the sampling alone); a scraper slower
        than the interval renders on its own scrape, once per sample however many scrapers there are.
        """
        if self.usage is not None:  # per-pod usage splits this very cycle's device figures (before the render)
            self.usage.on_snapshot(snapshot)
        if self._scraped:
            self._scraped = False
            with self._lock:
                if snapshot is not self._tried:
                    self._tried = snapshot
                    self._render(snapshot)

    def _generation_changed(self) -> None:
        if self.events is not None:
            self.events.trigger()

    def attribution(self) -> gpu.Attribution:
        return self.pods.mapping() if self.pods is not None else {}

    def start(self) -> None:
        """Start the threads; the first sample is taken on the sampler thread (a hung NVML cannot block start)."""
        self.sampler.start()
        if self.pods is not None:
            self.pods.start()
        if self.usage is not None:
            self.usage.start()
        if self.events is not None:
            self.events.start()
        if self._canary_loop is not None:
            self._canary_loop.start()

    def stop(self) -> None:
        if self._canary_loop is not None:
            self._canary_loop.stop()
        if self.events is not None:
            self.events.stop()
        if self.usage is not None:
            self.usage.stop()
        if self.pods is not None:
            self.pods.stop()
        self.sampler.stop()

    def _collectors(self, snapshot: Snapshot) -> dict[str, Callable[[], Iterable[ExpositionFamily]]]:
        attribution = self.attribution()
        out: dict[str, Callable[[], Iterable[ExpositionFamily]]] = {
            "gpu": lambda: gpu.collect(snapshot, attribution, self.cfg.nvlink_per_link)}
        if self.pods is not None:
            out["podresources"] = self.pods.collect
        if self.usage is not None:
            out["pod_usage"] = self.usage.collect
        if self.cfg.compat == "dcgm":
            last_xid = self.events.last_xid() if self.events is not None else {}
            out["dcgm"] = lambda: dcgm.collect(snapshot, attribution, self._hostname, last_xid)
        if self.canary is not None:
            out["canary"] = self.canary.collect
        out["process"] = lambda: cast(Iterable[ExpositionFamily], _PROCESS.collect())
        return out

    def _render(self, snapshot: Snapshot) -> None:
        """Render every collector into both formats, each isolated: one that raises (while collecting or
        rendering) is left out and reported, the rest still export. Called under self._lock."""
        parts: list[tuple[bytes, bytes]] = []
        for name, collect in self._collectors(snapshot).items():
            parts.append(self._isolated(name, self._group(collect)))
        try:
            families = [f for f in health.collect(snapshot, self._source, self._success, self._durations) if f.samples]
            parts.append(self._renderer.render_group(families))
        except Exception as err:  # the self-health families themselves: nothing honest to serve
            self._render_error = f"rendering failed: {err!r}"
            self._log.exception("rendering the exporter's health families failed; serving the previous snapshot")
            return
        self._renderer.commit()
        self._rendered = (b"".join(p[0] for p in parts), b"".join(p[1] for p in parts))
        self._rendered_snapshot = snapshot
        self._render_error = ""

    def _group(self, collect: Callable[[], Iterable[ExpositionFamily]]) -> Callable[[], tuple[bytes, bytes]]:
        return lambda: self._renderer.render_group(f for f in collect() if f.samples)

    def _isolated(self, name: str, render: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        state = self._collector_logs.setdefault(name, StateLog(self._log, f"collector-{name}"))
        started = time.perf_counter()
        try:
            out = render()
            self._success[name] = True
            state.ok(f"collector {name} rendering")
        except Exception as err:  # a bug in one collector must not blank the others
            self._success[name] = False
            state.failed(type(err).__name__, f"collector {name} failed: {err!r}")
            out = (b"", b"")
        self._durations[name] = time.perf_counter() - started
        return out

    def render_parts(self, openmetrics: bool) -> tuple[bytes, bytes]:
        """(the snapshot's exposition, the per-scrape tail: events and the sample age); never touches NVML.

        The first part is the same bytes object until the next sample, so the server compresses it
        once per sample however many scrapers ask.
        """
        snapshot = self.sampler.snapshot or self._placeholder
        self._scraped = True
        with self._lock:
            if snapshot is not self._tried:
                self._tried = snapshot
                self._render(snapshot)
            text, om = self._rendered
            served = self._rendered_snapshot or self._placeholder
            events = self._events_tail()
        age = self._clock() - served.monotonic
        tail = events[1 if openmetrics else 0] + _AGE_HEADER + f"{c.SAMPLE_AGE.name} {age:.6f}\n".encode()
        return (om, tail + EOF) if openmetrics else (text, tail)

    def _events_tail(self) -> tuple[bytes, bytes]:
        """Event-derived series, rendered per scrape: independent of the sampler (and of a hung NVML call)."""
        if self.events is None:
            return b"", b""
        events = self.events
        out = self._isolated("events", lambda: self._tail_renderer.render_group(f for f in events.collect() if f.samples))
        self._tail_renderer.commit()
        return out

    def render(self, openmetrics: bool) -> bytes:
        """The whole exposition as one scrape would see it."""
        return b"".join(self.render_parts(openmetrics))

    def stalled_for(self) -> float:
        """Seconds since the last sample (or since start, before the first one)."""
        return self._clock() - (self.sampler.snapshot or self._placeholder).monotonic

    def ready(self) -> tuple[bool, str]:
        dead = [loop.name for loop in self._loops() if not loop.alive]
        if dead:
            return False, f"background thread stopped: {', '.join(dead)}"
        snapshot = self.sampler.snapshot
        if snapshot is None:
            return False, f"no sample yet ({self.stalled_for():.1f}s since start; an NVML call may hang)"
        if not snapshot.nvml_up:
            return False, f"NVML is down: {snapshot.nvml_error}"
        age = self.stalled_for()
        if age > STALE_INTERVALS * self.cfg.interval_seconds:
            return False, f"sampler stalled: last sample {age:.1f}s ago (an NVML call may hang)"
        if self._render_error:
            return False, self._render_error
        failed = sorted(name for name, ok in self._success.items() if not ok)
        if failed:
            return False, f"collector failed at the last render: {', '.join(failed)}"
        return True, "ok"

    def _loops(self) -> list[Any]:
        loops = [self.sampler.loop, getattr(self.events, "loop", None), getattr(self.pods, "loop", None),
                 *(self.usage.loops() if self.usage is not None else ())]
        return [loop for loop in loops if loop is not None and loop.started]


def open_nvml(cfg: GpuExporterConfig, log: logging.Logger) -> tuple[Any, str]:
    """The NVML to use: real pynvml, or the simulated one (`--simulate N[:model]`, or `auto` fallback).

    gpulens.sim is imported only here, only when simulating: the real path never loads it.
    """
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
    from gpulens.sim import SimulatedNVML, parse_simulate

    count, model = parse_simulate(spec)
    if spec == cfg.simulate:
        log.warning(f"serving {count} simulated {model} GPUs (uuids GPU-sim-…), not real data")
    return SimulatedNVML(count=count, model=model, mig=cfg.simulate_mig or None), "simulated"


class _Simulation:
    """What `--simulate` adds around the exporter: demo kubelet, fault schedule, the fault endpoint."""

    def __init__(self, cfg: GpuExporterConfig, nvml: Any, log: logging.Logger):
        import tempfile

        from gpulens.sim.faults import FaultError, FaultInjector
        from gpulens.sim.kubelet import FakeKubelet, demo_pods

        self._fault_error = FaultError
        self.faults = FaultInjector(nvml, log)
        self.kubelet: Any = None
        self._tmp: Any = None
        self.socket_path = ""
        if cfg.simulate_kubelet and cfg.pod_attribution:
            self._tmp = tempfile.TemporaryDirectory(prefix="gpulens-")
            self.kubelet = FakeKubelet(os.path.join(self._tmp.name, "kubelet.sock")).start()
            self.kubelet.set_pods(demo_pods(nvml.devices()))
            self.socket_path = self.kubelet.socket_path
            log.warning(f"pod attribution from a stand-in kubelet with demo pods on {self.socket_path}")

    def start(self, schedule: str) -> None:
        self.faults.start()
        if schedule:
            self.faults.add(schedule)

    def post_fault(self, body: bytes) -> tuple[int, bytes]:
        """POST /-/simulate/fault: the body is a fault schedule (same grammar as --simulate-faults)."""
        try:
            faults = self.faults.add(body.decode("utf-8", "replace"))
        except self._fault_error as err:
            return 400, f"{err}\n".encode()
        if not faults:
            return 400, b"empty fault schedule; e.g. xid:79@gpu3\n"
        return 200, "".join(f"scheduled {f.spec}\n" for f in faults).encode()

    def stop(self) -> None:
        self.faults.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def run(cfg: GpuExporterConfig, log: logging.Logger) -> int:
    """Run until SIGTERM/SIGINT (handled from the first instant); returns the process exit code."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    web_config = WebConfigReloader(cfg.web_config_file, log) if cfg.web_config_file else None
    nvml, source = open_nvml(cfg, log)
    sim = _Simulation(cfg, nvml, log) if source == "simulated" else None
    socket_path = sim.socket_path if sim is not None and sim.socket_path else cfg.podresources_socket
    pods = None
    if cfg.pod_attribution:
        if source == "simulated" and not os.path.exists(socket_path):
            log.info(f"pod attribution disabled: no kubelet socket at {socket_path} (add --simulate-kubelet for demo pods)",
                     extra={"event": {"action": "podresources-disabled"}})
        else:
            pods = PodResourcesWatcher(socket_path, cfg.podresources_interval_seconds, log=log)
    hostname = cfg.hostname or os.environ.get("NODE_NAME") or socket.gethostname()
    exporter = GpuExporter(cfg, nvml, source, hostname, pods, log)
    if cfg.pod_usage:
        from gpulens.exporters.pods.collector import PodUsage

        exporter.usage = PodUsage.from_config(nvml, exporter.sampler.devices, cfg.interval_seconds, cfg.proc_root,
                                              cfg.node_name, cfg.kubeconfig, log, simulated=source == "simulated")
    routes = {"/-/simulate/fault": sim.post_fault} if sim is not None else {}
    server = MetricsServer(cfg.listen_address, cfg.port, exporter.render_parts, exporter.ready, web_config,
                           title="gpulens GPU exporter", log=log, max_connections=cfg.max_connections,
                           header_timeout=cfg.header_timeout_seconds, idle_timeout=cfg.idle_timeout_seconds,
                           routes=routes, about={"mode": f"{source} NVML", "nvml": source})
    try:
        server.start()
    except OSError as err:
        log.error(f"cannot listen on {cfg.listen_address}:{cfg.port}: {err.strerror}")
        return 1
    # The sampler thread is CPU-bound for a few ms per cycle; the default 5 ms GIL switch interval
    # would make a scrape arriving then wait for it. 0.5 ms keeps /metrics p99 flat while sampling.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    if sim is not None:  # before the sampler: a fault at 0 s (a hang in nvmlInit) hits the first sample
        sim.start(cfg.simulate_faults)
    exporter.start()
    log.info(f"gpu exporter serving on {cfg.listen_address}:{server.port} ({source} NVML)",
             extra={"event": {"action": "started"}})
    stall = StateLog(log, "sampler-stall")
    while not done.wait(min(cfg.interval_seconds, 1.0)):
        stalled = exporter.stalled_for()
        if stalled > STALE_INTERVALS * cfg.interval_seconds + 1.0:
            stall.failed("stalled", f"no NVML sample for {stalled:.0f}s: an NVML call hangs (serving the last sample, "
                                    "/readyz failing)")
        else:
            stall.ok("sampling")
    server.stop()
    exporter.stop()
    if sim is not None:
        sim.stop()
    return 0


def main(cfg: GpuExporterConfig) -> int:
    """`gpulens gpu-exporter`: check what the config names exists, then run; ConfigError → exit 2."""
    from gpulens import logs
    from gpulens.webconfig import WebConfigError, load_web_config

    problems = []
    given = [name for name in ("simulate_mig", "simulate_kubelet", "simulate_faults") if getattr(cfg, name)]
    if given and not cfg.simulate:
        problems += [f"flag --{name.replace('_', '-')} needs --simulate (it only applies to simulated GPUs)" for name in given]
    if cfg.simulate not in ("", "auto"):
        from gpulens.sim import MODELS, parse_simulate
        from gpulens.sim.faults import FaultError, parse_faults
        from gpulens.sim.mig import parse_layout

        try:
            count, model = parse_simulate(cfg.simulate)
            if cfg.simulate_mig:
                parse_layout(cfg.simulate_mig, MODELS[model])
            if cfg.simulate_faults:
                parse_faults(cfg.simulate_faults, count)
        except FaultError as err:
            problems.append(f"simulate-faults: {err}")
        except ValueError as err:
            problems.append(f"simulate: {err}")
    from gpulens.exporters.pods.collector import check as check_pod_usage

    problems += check_pod_usage(cfg)
    if cfg.canary:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            problems.append("canary: torch is not installed: pip install 'gpulens[canary]'")
    if cfg.web_config_file:
        try:
            load_web_config(cfg.web_config_file)
        except WebConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(problems)
    return run(cfg, logs.setup(cfg.log_level, "gpulens-gpu-exporter"))
