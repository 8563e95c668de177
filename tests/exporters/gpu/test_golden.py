"""Golden exposition: 2 simulated H100s on a fixed clock render exactly tests/golden/gpu_exporter_h100.prom.

A rename, a unit change or a lost label shows up as a reviewable diff. Rewrite the file on purpose
with `GPULENS_UPDATE_GOLDEN=1 make test`; the golden file itself is linted with the real promtool.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.sim import SimulatedNVML
from tests.exporters.gpu.test_gpu_exporter import Clock

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "gpu_exporter_h100.prom"
# Lines that legitimately differ between machines and runs: interpreter version, timings.
VOLATILE = re.compile(r"^(gpulens_build_info|gpulens_gpu_sample_duration_seconds|gpulens_gpu_sample_age_seconds"
                      r"|gpulens_collector_duration_seconds|process_|# HELP process_|# TYPE process_)")


def _render() -> str:
    clock = Clock()
    nv = SimulatedNVML(count=2, model="h100", clock=clock, seed=0)
    exporter = GpuExporter(GpuExporterConfig(pod_attribution=False, xid_events=False), nv, "simulated", clock=clock)
    for _ in range(3):
        exporter.sampler.cycle()
        clock.tick(1.0)
    return "".join(line + "\n" for line in exporter.render(False).decode().splitlines() if not VOLATILE.match(line))


def test_golden_exposition() -> None:
    rendered = _render()
    if os.environ.get("GPULENS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered)
    assert rendered == GOLDEN.read_text(), "exposition changed: review, then GPULENS_UPDATE_GOLDEN=1 make test"


def test_golden_file_passes_promtool(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(), capture_output=True, timeout=60)
    assert out.returncode == 0 and not out.stdout and not out.stderr, out.stdout + out.stderr
