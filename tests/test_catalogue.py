"""The catalogue is the one source of metric names: conventions, README table, and live /metrics."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gpulens import docs
from gpulens.exporters.gpu.app import GpuExporter
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.exporters.podresources.client import Allocation
from gpulens.metrics import gpu as c
from gpulens.sim import SimulatedNVML
from tests.exporters.gpu.test_gpu_exporter import Clock, Pods

ROOT = Path(__file__).resolve().parents[1]
UNITS = ("bytes", "seconds", "celsius", "watts", "joules", "hertz", "ratio", "bytes_per_second")
BANNED = ("_percent", "_mib", "_mhz", "_mj", "_milliwatts", "_kib", "_ms")


def test_names_follow_prometheus_conventions() -> None:
    for f in c.families():
        if f.subsystem == "dcgm":
            assert f.name.startswith(("DCGM_FI_DEV_", "DCGM_FI_PROF_")), f.name
            continue
        assert re.fullmatch(r"gpulens_[a-z0-9_]+", f.name), f.name
        assert ":" not in f.name
        assert f.name.endswith("_total") == (f.kind == "counter"), f.name
        assert not any(b in f.name for b in BANNED), f.name
        if f.name.endswith("_info"):
            assert f.kind == "gauge"
        assert f.help.endswith((".", ")")), f.name
    names = [f.name for f in c.families()]
    assert len(names) == len(set(names))


def test_pod_labels_on_every_per_gpu_value_family() -> None:
    for f in c.families():
        if f.subsystem in ("gpu", "gpm", "mig") and f.kind != "info" and "gpu" in f.labels and f.name not in (
                c.GPU_INFO.name, c.GPU_UP.name, c.MIG_MODE.name, c.MIG_INFO.name):
            assert set(c.POD) <= set(f.labels), f.name


def test_readme_table_is_generated_from_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text()
    assert docs.update(readme) == readme, "README metric table is stale: run `make readme`"
    for f in c.families():
        assert f"`{f.name}`" in readme


def _live_names(**sim) -> set[str]:
    """Family names a fully featured simulated node exposes: processes, XIDs, pods, DCGM names."""
    clock = Clock()
    nv = SimulatedNVML(count=2, clock=clock, **sim)
    nv.set_processes(0, [(1, 1024)])
    nv.nvmlInit()
    uuid = nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(0))
    pods = Pods({uuid: (Allocation("models", "llama-0", "kserve-container", "nvidia.com/gpu"),)})
    cfg = GpuExporterConfig(compat="dcgm", processes=True, xid_events=True, nvlink_per_link=True)
    exporter = GpuExporter(cfg, nv, "simulated", pods=pods, clock=clock)  # type: ignore[arg-type]
    exporter.sampler.cycle()
    assert exporter.events is not None and exporter.events.register()
    nv.inject_xid(0, 79)
    assert exporter.events.poll()
    for _ in range(3):
        clock.tick()
        exporter.sampler.cycle()
    return {f.name for f in text_string_to_metric_families(exporter.render(False).decode())}


def test_live_metrics_match_the_catalogue() -> None:
    live = _live_names(model="h100") | _live_names(model="h100", mig="7x1g.10gb")
    # prometheus_client's parser reports counter families without the _total suffix
    catalogued = {f.name.removesuffix("_total") for f in c.families()}
    live = {name for name in live if not name.startswith("process_")}  # prometheus_client's standard process_* families
    assert live - catalogued == set(), "exported but not in the catalogue"
    not_exported = catalogued - live
    # kubelet self-metrics are covered against a real gRPC kubelet in test_podresources;
    # retired pages need a pre-Ampere board, the fan an actively cooled one.
    assert not_exported == {f.name.removesuffix("_total") for f in (
        c.PODRES_UP, c.PODRES_LAST_SUCCESS, c.PODRES_DURATION, c.PODRES_ERRORS, c.PODRES_PODS,
        c.RETIRED_PAGES, c.FAN)}
