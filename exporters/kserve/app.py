"""`gpulens kserve-exporter`: wires discovery, the refresh loop (scrape + readiness + render) and the HTTP server.

Discovery runs on its own Loop threads (one list+watch per resource); the refresh Loop, every
`interval_seconds`, takes their snapshot, scrapes every model-server endpoint in parallel, asks each
model whether it is ready, and renders both exposition formats once. A scrape serves those bytes.
Nothing the exporter observes can stop it: an API or model server that fails leaves its last
known values exported with `…_up 0` and an old `…_last_success_timestamp_seconds`.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpulens import events
from gpulens.config import ConfigError
from gpulens.exporters.kserve import collectors as col
from gpulens.exporters.kserve import servers
from gpulens.exporters.kserve.config import KserveExporterConfig
from gpulens.exporters.kserve.discovery import (
    ISVC_PLURAL,
    InferenceService,
    KubeDiscovery,
    Pod,
    StaticTarget,
    api_client,
    check_namespaces,
    load_targets,
)
from gpulens.exporters.kserve.scrape import Http, ScrapeError
from gpulens.exposition import EOF, ExpositionFamily, Renderer
from gpulens.logs import StateLog
from gpulens.loop import Loop
from gpulens.metrics import kserve as k
from gpulens.server import MetricsServer


class KserveExporter:
    """The running exporter: start()/stop() the threads, refresh() once (tests, bench), render_parts() for scrapes."""

    def __init__(self, cfg: KserveExporterConfig, discovery: KubeDiscovery | None = None,
                 targets: list[StaticTarget] | None = None, log: logging.Logger | None = None):
        self.cfg = cfg
        self.discovery = discovery
        self.targets = targets or []
        self._log = log or logging.getLogger("gpulens.kserve_exporter")
        self.http = Http(cfg.scrape_timeout_seconds, cfg.scrape_max_bytes, cfg.scrape_concurrency)
        self._pool = ThreadPoolExecutor(cfg.scrape_concurrency, thread_name_prefix="gpulens-kserve-scrape")
        self.totals = col.Totals()
        self.cold = col.ColdStarts()
        self.model_ready: col.ModelReady = {}
        self.scrape_up: dict[tuple[str, str, str], bool] = {}  # (ns, isvc, endpoint) → last scrape ok
        self.scrape_last_success: dict[tuple[str, str, str], float] = {}
        self.scrape_errors: dict[tuple[str, str, str], int] = {}  # (ns, isvc, reason) → count
        self._endpoint_logs: dict[str, StateLog] = {}
        self.refresh_seconds: float | None = None
        self.phase_seconds: dict[str, float] = {}  # the last refresh, by phase (bench, debugging)
        self._readiness_at: float | None = None
        self._parsed: dict[str, tuple[bytes, servers.Normalised]] = {}  # endpoint → (body digest, its parse)
        self.refreshes = 0
        self.series = 0
        self._renderer = Renderer()
        self._state_renderer = Renderer()
        self._state_key: tuple[int, int] | None = None
        self._state: tuple[tuple[bytes, bytes], int] = ((b"", b""), 0)
        self._rendered = (b"", b"")
        self._lock = threading.Lock()
        self.on_rendered: Callable[[dict[bool, bytes]], None] | None = None
        self.loop = Loop("kserve-refresh", self.refresh, cfg.interval_seconds, self._log, jitter=0.05)
        self._state_key = None
        self._ready: dict[tuple[str, str], bool] = {}  # last Ready seen, for inferenceservice.ready_changed events

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.discovery is not None:
            self.discovery.start()
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
        if self.discovery is not None:
            self.discovery.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- one refresh ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[list[InferenceService], list[Pod], list[col.Endpoint]]:
        if self.discovery is not None:
            isvcs, pods = self.discovery.snapshot()
            return isvcs, pods, col.endpoints_from_kube(isvcs, pods, self.cfg.queue_proxy_port)
        return [], [], col.endpoints_from_static(self.targets)

    def _ready_events(self, isvcs: list[InferenceService]) -> None:
        """One `inferenceservice.ready_changed` event per flip of Ready (not for the first sighting: a restart is no flip)."""
        seen: dict[tuple[str, str], bool] = {}
        for isvc in isvcs:
            ready = isvc.ready
            if ready is None:
                continue
            key = (isvc.namespace, isvc.name)
            seen[key] = ready
            if key in self._ready and self._ready[key] != ready:
                reason = next((c.reason for c in isvc.conditions if c.type == "Ready"), "")
                events.emit(events.inferenceservice_ready_changed(isvc.namespace, isvc.name, ready, reason, isvc.url))
        self._ready = seen

    def refresh(self) -> None:
        """Scrape every endpoint, probe readiness, render. Never raises for the observed world's faults."""
        started = time.monotonic()
        isvcs, pods, endpoints = self.snapshot()
        self._ready_events(isvcs)
        scrapes = list(self._pool.map(self._scrape, endpoints))
        t_scraped = time.monotonic()
        if self.cfg.readiness_probes and (self._readiness_at is None
                                          or t_scraped - self._readiness_at >= self.cfg.readiness_interval_seconds):
            self.probe_readiness(endpoints)
        t_probed = time.monotonic()
        now = time.time()
        for ep, result in zip(endpoints, scrapes, strict=True):
            key = (ep.namespace, ep.inferenceservice, ep.name)
            state = self._endpoint_logs.setdefault(ep.metrics_url, StateLog(self._log, f"scrape {ep.metrics_url}"))
            if isinstance(result, ScrapeError):
                self.scrape_up[key] = False
                ekey = (ep.namespace, ep.inferenceservice, result.reason)
                self.scrape_errors[ekey] = self.scrape_errors.get(ekey, 0) + 1
                state.failed(result.reason, f"scraping {ep.server} metrics of {ep.namespace}/{ep.inferenceservice} "
                                            f"failed: {result}; keeping its last values",
                             labels={"namespace": ep.namespace, "inferenceservice": ep.inferenceservice})
                continue
            self.totals.add(ep, result)
            self.scrape_up[key] = True
            self.scrape_last_success[key] = now
            state.ok(f"scraping {ep.server} metrics of {ep.namespace}/{ep.inferenceservice} ok")
        # forget what went away: endpoints (their totals stay) and InferenceServices (everything goes)
        known = {(i.namespace, i.name) for i in isvcs} if self.discovery is not None else \
            {(t.namespace, t.name) for t in self.targets}
        self.totals.keep(endpoints, known)
        self.model_ready = {key: v for key, v in self.model_ready.items() if key in known}
        self.cold.observe(pods)
        self.cold.keep(known)
        live = {(e.namespace, e.inferenceservice, e.name) for e in endpoints}
        for d in (self.scrape_up, self.scrape_last_success):
            for key in [key for key in d if key not in live]:
                del d[key]
        for ekey in [ekey for ekey in self.scrape_errors if (ekey[0], ekey[1]) not in known]:
            del self.scrape_errors[ekey]
        for url in set(self._endpoint_logs) - {e.metrics_url for e in endpoints}:
            del self._endpoint_logs[url]
        live_ids = {col.Totals.endpoint_id(e) for e in endpoints}
        for eid in set(self._parsed) - live_ids:
            del self._parsed[eid]
        t_accounted = time.monotonic()
        self._render(isvcs, pods)
        done = time.monotonic()
        self.phase_seconds = {"scrape": round(t_scraped - started, 3), "readiness": round(t_probed - t_scraped, 3),
                              "account": round(t_accounted - t_probed, 3), "render": round(done - t_accounted, 3)}
        self.refresh_seconds = done - started
        self.refreshes += 1

    def probe_readiness(self, endpoints: list[col.Endpoint]) -> None:
        """Ask every endpoint's models whether they are ready (in parallel); replaces `model_ready`."""
        probes = [(ep, m) for ep in endpoints if ep.base_url for m in self._models(ep)]
        ready = list(self._pool.map(lambda pm: self.http.model_ready(pm[0].base_url, pm[0].protocol, pm[1]), probes))
        model_ready: col.ModelReady = {}
        for (ep, model), ok in zip(probes, ready, strict=True):
            model_ready.setdefault((ep.namespace, ep.inferenceservice), {})[(model, ep.server, ep.name)] = ok
        self.model_ready = model_ready
        self._readiness_at = time.monotonic()

    def _models(self, ep: col.Endpoint) -> list[str]:
        """Models to ask about: the configured/default ones plus any the server's /metrics named."""
        seen = {key[1] for (ns, isvc, server, key) in self.totals.counters if (ns, isvc, server) ==
                (ep.namespace, ep.inferenceservice, ep.server)} if ep.server != "kserve" else set()
        return sorted(set(ep.models) | seen)

    def _scrape(self, ep: col.Endpoint) -> servers.Normalised | ScrapeError:
        try:
            body = self.http.fetch(ep.metrics_url)
        except ScrapeError as err:
            return err
        eid = col.Totals.endpoint_id(ep)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        cached = self._parsed.get(eid)
        if cached is not None and cached[0] == digest:
            return cached[1]  # an idle server's body does not change: same values, no parse (most of a large cluster)
        try:
            text = body.decode("utf-8")
            result = servers.normalise(text, servers.table(ep.server), ep.models[0] if ep.models else ep.inferenceservice)
        except (ValueError, UnicodeDecodeError, TypeError, KeyError, IndexError) as err:
            return ScrapeError("parse", f"{ep.metrics_url}: {type(err).__name__}: {str(err)[:200]}")
        if result.samples == 0:
            return ScrapeError("empty", f"{ep.metrics_url}: no samples")
        self._parsed[eid] = (digest, result)
        return result

    # ---- rendering ------------------------------------------------------------------------------

    def collect(self, isvcs: list[InferenceService], pods: list[Pod]) -> Iterable[ExpositionFamily]:
        """Every family (tests); rendering splits them into the cached state part and the per-refresh part."""
        yield from col.collect_state(isvcs, pods, self.cold)
        yield from self.collect_dynamic(isvcs, pods)

    def collect_dynamic(self, isvcs: list[InferenceService], pods: list[Pod]) -> Iterable[ExpositionFamily]:
        yield from col.collect_degraded(isvcs, pods, self.model_ready, self.cfg.degraded_grace_seconds)
        yield from col.collect_models(self.totals, self.model_ready)
        yield from self.collect_self()

    def collect_self(self) -> Iterable[ExpositionFamily]:
        up, last, errors = k.SCRAPE_UP.new(), k.SCRAPE_LAST_SUCCESS.new(), k.SCRAPE_ERRORS.new()
        for (ns, isvc, endpoint), ok in sorted(self.scrape_up.items()):
            up.add_metric([ns, isvc, endpoint], 1 if ok else 0)
        for (ns, isvc, endpoint), at in sorted(self.scrape_last_success.items()):
            last.add_metric([ns, isvc, endpoint], at)
        for (ns, isvc, reason), n in sorted(self.scrape_errors.items()):
            errors.add_metric([ns, isvc, reason], n)
        yield from (up, last, errors)
        if self.discovery is not None:
            kube_up, kube_last, relists = k.KUBE_UP.new(), k.KUBE_LAST_SUCCESS.new(), k.KUBE_RELISTS.new()
            for resource, (ok, at) in sorted(self.discovery.health().items()):
                kube_up.add_metric([resource], 1 if ok else 0)
                if at is not None:
                    kube_last.add_metric([resource], at)
            for (resource, reason), n in sorted(self.discovery.relists().items()):
                relists.add_metric([resource, reason], n)
            yield from (kube_up, kube_last, relists)
        duration = k.REFRESH_DURATION.new()
        if self.refresh_seconds is not None:
            duration.add_metric([], self.refresh_seconds)
        yield duration

    def _render(self, isvcs: list[InferenceService], pods: list[Pod]) -> None:
        """Render the state part only when the API snapshot changed (most refreshes it has not), the rest always."""
        key = (self.discovery.generation if self.discovery is not None else 0, self.cold.observed)
        if key != self._state_key:
            families = [f for f in col.collect_state(isvcs, pods, self.cold) if _size(f)]
            self._state = self._state_renderer.render(families), sum(_size(f) for f in families)
            self._state_key = key
        (state_text, state_om), state_series = self._state
        families = [f for f in self.collect_dynamic(isvcs, pods) if _size(f)]
        self.series = state_series + sum(_size(f) for f in families)
        text, om = self._renderer.render(families)
        rendered = (state_text + text, state_om + om)
        with self._lock:
            self._rendered = rendered
        if self.on_rendered is not None:
            self.on_rendered({False: rendered[0], True: rendered[1]})

    def render_parts(self, openmetrics: bool) -> tuple[bytes, bytes]:
        with self._lock:
            text, om = self._rendered
        return (om, EOF) if openmetrics else (text, b"")

    def render(self, openmetrics: bool = False) -> bytes:
        return b"".join(self.render_parts(openmetrics))

    def ready(self) -> tuple[bool, str]:
        if self.refreshes == 0:
            return False, "no refresh yet"
        if self.discovery is not None and not all(r.listed for r in self.discovery.isvcs):
            return False, f"{ISVC_PLURAL} not listed yet (see gpulens_kserve_kubernetes_up and the logs)"
        return True, "ok"


def _size(family: Any) -> int:
    """Series in a family; fast rows are counted without building prometheus_client Samples."""
    rows = getattr(family, "rows", None)
    return len(rows) if rows is not None else len(family.samples)


def build(cfg: KserveExporterConfig, log: logging.Logger, client: Any = None) -> KserveExporter:
    """The exporter for a config: static targets, or Kubernetes discovery (ConfigError if it cannot be set up)."""
    if cfg.mode == "static":
        if not cfg.targets_file:
            raise ConfigError(["targets_file: required with mode static (a YAML list of targets)"])
        return KserveExporter(cfg, targets=load_targets(cfg.targets_file), log=log)
    namespaces = check_namespaces(cfg.namespaces)
    if client is None:
        try:
            client = api_client(cfg.kubeconfig, cfg.kube_context)
        except Exception as err:  # noqa: BLE001 - kubernetes.config raises several types for a bad kubeconfig
            where = cfg.kubeconfig or "in-cluster/default kubeconfig"
            raise ConfigError([f"kubeconfig: cannot load {where}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"]) \
                from err
    discovery = KubeDiscovery(client, namespaces, cfg.label_selector, cfg.resync_seconds, cfg.kube_timeout_seconds, log)
    return KserveExporter(cfg, discovery=discovery, log=log)


def main(cfg: KserveExporterConfig) -> int:
    """`gpulens kserve-exporter`: validate, serve until SIGTERM/SIGINT; ConfigError → exit 2."""
    from gpulens import logs
    from gpulens.webconfig import WebConfigError, load_web_config

    web_config = None
    problems = []
    if cfg.web_config_file:
        try:
            web_config = load_web_config(cfg.web_config_file)
        except WebConfigError as err:
            problems.append(str(err))
    if cfg.mode == "static" and not cfg.targets_file:
        problems.append("targets_file: required with mode static (a YAML list of targets)")
    if problems:
        raise ConfigError(problems)
    log = logs.setup(cfg.log_level, "gpulens-kserve-exporter")
    exporter = build(cfg, log)
    server = MetricsServer(cfg.listen_address, cfg.port, exporter.render_parts, exporter.ready, web_config,
                           title="gpulens KServe exporter", log=log)
    exporter.on_rendered = server.prime
    try:
        server.start()
    except OSError as err:
        log.error(f"cannot listen on {cfg.listen_address}:{cfg.port}: {err.strerror}")
        return 1
    exporter.start()
    log.info(f"kserve exporter serving on {cfg.listen_address}:{server.port} ({cfg.mode} mode)",
             extra={"event": {"action": "started"}})
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    exporter.stop()
    return 0
