"""`--compat dcgm`: the same readings under dcgm-exporter's names, units and labels.

    DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-…",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",…} 40960

So Grafana dashboard 12239, KEDA triggers and alert queries written for dcgm-exporter work
unchanged while users migrate. DCGM's units (MiB, MHz, %, mJ) are used here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import Metric

from gpulens.exporters.gpu.collectors import Attribution, pod_labels
from gpulens.exporters.gpu.sampler import Snapshot
from gpulens.metrics import gpu as c

MIB = 1024 * 1024

# DCGM family -> (GpuReading attribute, factor from our base unit to DCGM's unit)
SCALARS: tuple[tuple[c.Family, str, float], ...] = (
    (c.DCGM_GPU_UTIL, "utilization", 100.0),
    (c.DCGM_MEM_COPY_UTIL, "memory_utilization", 100.0),
    (c.DCGM_FB_USED, "memory_used", 1 / MIB),
    (c.DCGM_FB_FREE, "memory_free", 1 / MIB),
    (c.DCGM_GPU_TEMP, "temperature", 1.0),
    (c.DCGM_MEMORY_TEMP, "memory_temperature", 1.0),
    (c.DCGM_POWER_USAGE, "power", 1.0),
    (c.DCGM_ENERGY, "energy", 1000.0),
    (c.DCGM_SM_CLOCK, "sm_clock", 1e-6),
    (c.DCGM_MEM_CLOCK, "memory_clock", 1e-6),
    (c.DCGM_PCIE_REPLAY, "pcie_replays", 1.0),
)


def collect(snapshot: Snapshot, attribution: Attribution, hostname: str, last_xid: Mapping[str, int]) -> Iterator[Metric]:
    metrics = {family.name: family.new() for family in c.families() if family.subsystem == "dcgm"}
    for g in snapshot.gpus:
        if not g.up:
            continue
        i = g.identity
        base = [str(i.index), i.uuid, f"nvidia{i.index}", i.name, hostname, i.pci_bus_id]
        labels = base + ["", "", *pod_labels(attribution, i.uuid)]
        for family, attr, factor in SCALARS:
            value = getattr(g, attr)
            if value is not None:
                metrics[family.name].add_metric(labels, value * factor)
        if g.utilization is None and "graphics" in g.gpm.get("", {}):
            # Under MIG NVML has no utilization; DCGM reports graphics-engine activity there, and so do we.
            metrics[c.DCGM_GPU_UTIL.name].add_metric(labels, g.gpm[""]["graphics"] * 100.0)
        metrics[c.DCGM_XID.name].add_metric(labels, float(last_xid.get(i.uuid, 0)))
        if g.remapped_rows is not None:
            corr, unc, _, failure = g.remapped_rows
            metrics[c.DCGM_COR_REMAP.name].add_metric(labels, corr)
            metrics[c.DCGM_UNC_REMAP.name].add_metric(labels, unc)
            metrics[c.DCGM_REMAP_FAILURE.name].add_metric(labels, failure)
        for m in g.mig:  # dcgm-exporter reports framebuffer per MIG instance with GPU_I_ID/GPU_I_PROFILE
            mig_labels = base + [str(m.gpu_instance_id), m.profile, *pod_labels(attribution, m.uuid)]
            if m.memory_used is not None and m.memory_total is not None:
                metrics[c.DCGM_FB_USED.name].add_metric(mig_labels, m.memory_used / MIB)
                metrics[c.DCGM_FB_FREE.name].add_metric(mig_labels, (m.memory_total - m.memory_used) / MIB)
    yield from metrics.values()
