"""`gpulens top`: pick a source, then draw a frame every interval (rich on a TTY, plain text otherwise)."""

from __future__ import annotations

import datetime
import json
import sys
import threading
import urllib.request
from typing import TextIO

from gpulens.top.config import TopConfig
from gpulens.top.model import View, build_traces
from gpulens.top.render import render_plain, render_rich
from gpulens.top.sources import ExporterSource, PrometheusSource


def choose_source(cfg: TopConfig) -> PrometheusSource | ExporterSource:
    """Prometheus when asked for or when it answers (auto); the exporters otherwise."""
    prometheus = PrometheusSource(cfg.prometheus_url)
    if cfg.source == "prometheus" or (cfg.source == "auto" and prometheus.reachable()):
        return prometheus
    return ExporterSource(cfg.gpu_url, cfg.kserve_url, cfg.probe_url)


def _with_traces(view: View, spans_url: str) -> View:
    """Add the span ring's recent probe traces when `gpulens up` keeps one; silent when there is none."""
    if spans_url:
        try:
            with urllib.request.urlopen(spans_url, timeout=1) as resp:
                view.traces = build_traces(json.load(resp))
        except (OSError, ValueError):
            pass
    return view


def _when() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def run(cfg: TopConfig, out: TextIO | None = None) -> int:
    """Draw until Ctrl-C (or one frame with --once); exit 1 if a --once frame could read nothing at all."""
    out = out or sys.stdout
    source = choose_source(cfg)
    stop = threading.Event()
    if isinstance(source, ExporterSource) and cfg.once:
        source.fetch()  # rates need two scrapes
        stop.wait(cfg.interval_seconds)
    tty = out.isatty() and not cfg.plain
    try:
        if not tty:
            return _plain(cfg, source, out, stop)
        return _live(cfg, source, out, stop)
    except KeyboardInterrupt:
        return 0


def _empty(view: View) -> bool:
    return not (view.gpus or view.services or view.probes or view.alerts) and bool(view.problems)


def _plain(cfg: TopConfig, source: PrometheusSource | ExporterSource, out: TextIO, stop: threading.Event) -> int:
    while True:
        view = _with_traces(source.fetch(), cfg.spans_url)
        out.write(render_plain(view, _when()))
        out.flush()
        if cfg.once:
            return 1 if _empty(view) else 0
        out.write("\n")
        if stop.wait(cfg.interval_seconds):
            return 0


def _live(cfg: TopConfig, source: PrometheusSource | ExporterSource, out: TextIO, stop: threading.Event) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out, width=cfg.width or None)
    view = _with_traces(source.fetch(), cfg.spans_url)
    if cfg.once:
        console.print(render_rich(view, _when()))
        return 1 if _empty(view) else 0
    with Live(render_rich(view, _when()), console=console, auto_refresh=False, screen=True) as live:
        while not stop.wait(cfg.interval_seconds):
            live.update(render_rich(_with_traces(source.fetch(), cfg.spans_url), _when()), refresh=True)
    return 0
