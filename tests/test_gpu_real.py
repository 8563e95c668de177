"""`make test-gpu`: the exporter on real NVML. Runs only on a machine with an NVIDIA driver (-m gpu).

Every per-GPU family must be present or its NVML function recorded as NotSupported, and the values
must be physically sane. The output is meant to be pasted into a closing note.
"""

from __future__ import annotations

from typing import Any

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.metrics import gpu as c

pytestmark = pytest.mark.gpu


def read_samples(nvml: Any = pynvml, source: str = "real") -> dict[str, list]:
    """Three sampler cycles on `nvml`, parsed: what the checks below look at (also run on the simulator)."""
    exporter = GpuExporter(GpuExporterConfig(pod_attribution=False, xid_events=False, processes=True), nvml, source)
    for _ in range(3):
        exporter.sampler.cycle()
    snapshot = exporter.sampler.snapshot
    assert snapshot is not None and snapshot.nvml_up, snapshot and snapshot.nvml_error
    exporter.sampler.stop()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(exporter.render(False).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


@pytest.fixture(scope="module")
def samples() -> dict[str, list]:
    return read_samples()


def _not_supported(samples: dict[str, list]) -> set[str]:
    # the parser names counter samples with their `_total`, which the catalogue name already has
    return {s.labels["function"] for s in samples.get(c.NVML_ERRORS.name, [])
            if s.labels["error"] in ("NotSupported", "NoPermission")}


def test_every_family_present_or_not_supported(samples: dict[str, list]) -> None:
    check_every_family(samples)


def check_every_family(samples: dict[str, list]) -> None:
    unsupported = _not_supported(samples)
    report = []
    for family in c.families():
        if family.subsystem not in ("gpu", "gpm", "mig") or family is c.GPU_ALLOCATION:
            continue
        name = family.name + ("_total" if family.kind == "counter" and not family.name.endswith("_total") else "")
        present = any(n == family.name or n.startswith(family.name) for n in samples)
        status = "present" if present else ("NotSupported" if family.source in unsupported else "MISSING")
        report.append(f"{status:13} {name} ({family.source})")
    print("\n".join(report))
    # MIG families need MIG mode; GPM needs Hopper+; processes need a running process.
    optional = {f.name for f in c.families() if f.subsystem in ("mig", "gpm")} | {c.PROCESS_MEMORY.name} | {
        f.name for f in (c.NVLINK_UP, c.NVLINK_LINK_TX, c.NVLINK_LINK_RX, c.NVLINK_LINK_ERRORS)}  # --nvlink-per-link
    if c.NVLINK_LINKS.name not in samples:  # a board without NVLink (L4, PCIe cards): none of its families
        optional |= {f.name for f in c.families() if f.name.startswith("gpulens_gpu_nvlink_")}
    missing = [line for line in report if line.startswith("MISSING") and line.split()[1] not in optional]
    assert not missing, missing


def test_values_are_sane(samples: dict[str, list]) -> None:
    check_values(samples)
    assert all(s.labels["uuid"].startswith("GPU-") and "sim" not in s.labels["uuid"] for s in samples[c.GPU_INFO.name])


def check_values(samples: dict[str, list]) -> None:
    by_gpu = lambda name: {s.labels["gpu"]: s.value for s in samples.get(name, [])}  # noqa: E731
    total, used = by_gpu(c.MEM_TOTAL.name), by_gpu(c.MEM_USED.name)
    assert total, "no memory readings"
    for gpu, value in used.items():
        assert 0 <= value <= total[gpu]
    for gpu, value in by_gpu(c.TEMP.name).items():
        assert 0 <= value <= 120, (gpu, value)
    limits = by_gpu(c.POWER_ENFORCED.name) or by_gpu(c.POWER_LIMIT.name)
    for gpu, value in by_gpu(c.POWER.name).items():
        assert 0 < value <= limits[gpu] * 1.1, (gpu, value)  # brief excursions over the limit happen
    for value in by_gpu(c.GPU_UTIL.name).values():
        assert 0 <= value <= 1
