"""`gpulens top` drawn once from exporters serving known data: the output carries those values."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console

from gpulens.cli import main
from gpulens.metrics import gpu as g
from gpulens.metrics import kserve as k
from gpulens.metrics import probe as p
from gpulens.top.model import View, histogram_quantile
from gpulens.top.render import render_plain, render_rich, sparkline
from gpulens.top.sources import ExporterSource

GIB = 1 << 30
A = 'gpu="0",uuid="GPU-sim-a"'
B = 'gpu="1",uuid="GPU-sim-b"'
POD = 'namespace="models",pod="llama-0",container="server"'


def _gpu_text() -> str:
    return "\n".join([
        f"# TYPE {g.GPU_INFO.name} gauge",
        f'{g.GPU_INFO.name}{{{A},name="NVIDIA H100 80GB HBM3"}} 1',
        f'{g.GPU_INFO.name}{{{B},name="NVIDIA H100 80GB HBM3"}} 1',
        f"# TYPE {g.GPU_UP.name} gauge", f"{g.GPU_UP.name}{{{A}}} 1", f"{g.GPU_UP.name}{{{B}}} 0",
        f"# TYPE {g.GPU_UTIL.name} gauge", f"{g.GPU_UTIL.name}{{{A},{POD}}} 0.73",
        f"# TYPE {g.MEM_USED.name} gauge", f"{g.MEM_USED.name}{{{A},{POD}}} {40 * GIB}",
        f"# TYPE {g.MEM_TOTAL.name} gauge", f"{g.MEM_TOTAL.name}{{{A},{POD}}} {80 * GIB}",
        f"# TYPE {g.POWER.name} gauge", f"{g.POWER.name}{{{A},{POD}}} 312.4",
        f"# TYPE {g.POWER_LIMIT.name} gauge", f"{g.POWER_LIMIT.name}{{{A},{POD}}} 700",
        f"# TYPE {g.TEMP.name} gauge", f"{g.TEMP.name}{{{A},{POD}}} 64",
        f"# TYPE {g.CLOCK_EVENT.name} gauge",
        f'{g.CLOCK_EVENT.name}{{{A},{POD},reason="sw_thermal_slowdown"}} 1',
        f'{g.CLOCK_EVENT.name}{{{A},{POD},reason="gpu_idle"}} 0',
        f"# TYPE {g.BUILD_INFO.name} gauge", f'{g.BUILD_INFO.name}{{version="0.1.0",nvml="simulated"}} 1', "",
    ])


def _kserve_text(n: int) -> str:
    """Second scrape (n=1): +90 successes, +10 errors, +100 observations (50 ≤5ms, 90 ≤10ms, 100 ≤50ms)."""
    svc = 'namespace="default",inferenceservice="classifier",model="classifier",server="kserve"'
    base = k.REQUEST_DURATION.name
    return "\n".join([
        f"# TYPE {k.REQUESTS.name.removesuffix('_total')} counter",
        f'{k.REQUESTS.name}{{{svc},outcome="success"}} {990 + 90 * n}',
        f'{k.REQUESTS.name}{{{svc},outcome="error"}} {10 + 10 * n}',
        f"# TYPE {base} histogram",
        f'{base}_bucket{{{svc},le="0.005"}} {500 + 50 * n}',
        f'{base}_bucket{{{svc},le="0.01"}} {900 + 90 * n}',
        f'{base}_bucket{{{svc},le="0.05"}} {1000 + 100 * n}',
        f'{base}_bucket{{{svc},le="+Inf"}} {1000 + 100 * n}',
        f"{base}_sum{{{svc}}} {5 + n}", f"{base}_count{{{svc}}} {1000 + 100 * n}", "",
    ])


def _probe_text(n: int) -> str:
    """Second scrape: 10 more probes taking 0.25 s together: 25 ms each."""
    t = 'target="classifier-v2",model="classifier",protocol="v2"'
    return "\n".join([
        f"# TYPE {p.SUCCESS.name} gauge", f"{p.SUCCESS.name}{{{t}}} 1",
        f"# TYPE {p.DURATION.name} histogram",
        f'{p.DURATION.name}_bucket{{{t},le="+Inf"}} {100 + 10 * n}',
        f"{p.DURATION.name}_sum{{{t}}} {1.0 + 0.25 * n}", f"{p.DURATION.name}_count{{{t}}} {100 + 10 * n}", "",
    ])


@pytest.fixture
def exporters() -> Iterator[dict[str, str]]:
    """Three /metrics endpoints; kserve and probe counters move by known amounts on the second scrape."""
    scrapes: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            n = min(scrapes.get(self.path, 0), 1)
            scrapes[self.path] = scrapes.get(self.path, 0) + 1
            body = {"/gpu": _gpu_text, "/kserve": lambda: _kserve_text(n), "/probe": lambda: _probe_text(n)}[self.path]()
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"gpu": base + "/gpu", "kserve": base + "/kserve", "probe": base + "/probe"}
    server.shutdown()
    server.server_close()


def _top(exporters: dict[str, str], *extra: str) -> list[str]:
    return ["top", "--once", "--source", "exporters", "--interval-seconds", "0.1", "--gpu-url", exporters["gpu"],
            "--kserve-url", exporters["kserve"], "--probe-url", exporters["probe"], *extra]


def test_plain_frame_shows_the_known_values(exporters: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_top(exporters)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    gpu0 = next(line for line in lines if line.startswith("0 "))
    for value in ("H100 80GB HBM3", "73%", "[#########---]", "40.0/80.0 GiB", "312 W / 700 W", "64 C", "THERMAL"):
        assert value in gpu0, (value, gpu0)
    assert "idle" not in gpu0  # gpu_idle is 0
    assert "LOST" in next(line for line in lines if line.startswith("1 "))
    service = next(line for line in lines if line.startswith("default/classifier"))
    assert "10%" in service and "46.0 ms" in service  # 10 errors in 100; p99 between the 10 ms and 50 ms buckets
    probe = next(line for line in lines if line.startswith("classifier-v2"))
    assert " ok " in probe and "25.0 ms" in probe
    assert "SIMULATED GPUs" in lines[0]
    assert "Alerts: (need Prometheus)" in out
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal


def test_unreachable_exporters_are_named_and_once_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["top", "--once", "--source", "exporters", "--interval-seconds", "0.1",
                 "--gpu-url", "http://127.0.0.1:9/metrics", "--kserve-url", "", "--probe-url", ""])
    assert code == 1
    assert "! GPU exporter http://127.0.0.1:9/metrics:" in capsys.readouterr().out


def test_rich_frame_has_bars_and_the_same_values(exporters: dict[str, str]) -> None:
    source = ExporterSource(exporters["gpu"], exporters["kserve"], exporters["probe"])
    source.fetch()
    view = source.fetch()
    console = Console(file=io.StringIO(), width=160, force_terminal=True, record=True)
    console.print(render_rich(view, "12:00:00"))
    text = console.export_text()
    for value in ("73%", "40.0/80.0 GiB", "312 W / 700 W", "64 C", "THERMAL", "LOST", "46.0 ms", "25.0 ms", "█"):
        assert value in text, value


def test_alerts_section_lists_firing_first() -> None:
    from gpulens.top.model import AlertRow

    view = View("prometheus", alerts=[AlertRow("GpulensGpuXidCritical", "critical", "firing", "GPU XID 79", "gpu=3")])
    out = render_plain(view)
    assert "Alerts (1 firing)" in out
    assert "firing  critical  GpulensGpuXidCritical  gpu=3" in out


def test_histogram_quantile_matches_prometheus() -> None:
    buckets = [(0.005, 50.0), (0.01, 90.0), (0.05, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.046)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.005)
    assert histogram_quantile(0.99, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(0.1, 1.0), (float("inf"), 100.0)]) == 0.1  # above the top bucket


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5]) == "▁▁"
    assert sparkline([]) == ""


def test_auto_falls_back_to_the_exporters_without_prometheus(exporters: dict[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = _top(exporters, "--prometheus-url", "http://127.0.0.1:9")
    argv[argv.index("--source") + 1] = "auto"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("gpulens top  source=exporters") and "73%" in out
