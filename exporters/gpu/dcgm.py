"""`--compat dcgm`: the same readings under dcgm-exporter's names, units and labels.

    DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-…",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",…} 40960

So Grafana dashboard 12239, KEDA triggers and alert queries written for dcgm-exporter work
unchanged while users migrate. DCGM's units (MiB, MHz, %, mJ) are used here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gpulens.exporters.gpu.collectors import Attribution, pod_labels
from gpulens.exporters.gpu.sampler import Snapshot
from gpulens.exposition import ExpositionFamily
from gpulens.metrics import gpu as c

MIB = 1024 * 1024

# NVML integer percents, back as the integer NVML gave (a 0.07 ratio * 100 would print 7.000000000000001)
PERCENTS: tuple[tuple[c.Family, str], ...] = (
    (c.DCGM_GPU_UTIL, "utilization"), (c.DCGM_MEM_COPY_UTIL, "memory_utilization"),
    (c.DCGM_ENC_UTIL, "encoder_utilization"), (c.DCGM_DEC_UTIL, "decoder_utilization"),
)
# DCGM profiling family -> GPM reading key (the same quantity; DCGM's ratios are 0..1, rates bytes/s)
PROF: tuple[tuple[c.Family, str], ...] = (
    (c.DCGM_PROF_GR_ENGINE, "graphics"), (c.DCGM_PROF_SM_ACTIVE, "sm"), (c.DCGM_PROF_SM_OCCUPANCY, "sm_occupancy"),
    (c.DCGM_PROF_TENSOR, "tensor"), (c.DCGM_PROF_DRAM, "dram"), (c.DCGM_PROF_FP64, "fp64"), (c.DCGM_PROF_FP32, "fp32"),
    (c.DCGM_PROF_FP16, "fp16"), (c.DCGM_PROF_PCIE_TX, "pcie_tx"), (c.DCGM_PROF_PCIE_RX, "pcie_rx"),
    (c.DCGM_PROF_NVLINK_TX, "nvlink_tx"), (c.DCGM_PROF_NVLINK_RX, "nvlink_rx"),
)
# DCGM family -> (GpuReading attribute, factor from our base unit to DCGM's unit)
SCALARS: tuple[tuple[c.Family, str, float], ...] = (
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


def collect(snapshot: Snapshot, attribution: Attribution, hostname: str, last_xid: Mapping[str, int]) -> Iterator[ExpositionFamily]:
    metrics = {family.name: family.new() for family in c.families() if family.subsystem == "dcgm"}
    for g in snapshot.gpus:
        if not g.up:
            continue
        i = g.identity
        base = [str(i.index), i.uuid, f"nvidia{i.index}", i.name, hostname, i.pci_bus_id]
        labels = base + ["", "", *pod_labels(attribution, i.uuid)]
        for family, attr in PERCENTS:
            value = getattr(g, attr)
            if value is not None:  # absent under MIG (NVML has no utilization there), as in dcgm-exporter
                metrics[family.name].add_metric(labels, float(round(value * 100)))
        for family, attr, factor in SCALARS:
            value = getattr(g, attr)
            if value is not None:
                metrics[family.name].add_metric(labels, value * factor)
        mig_by_gi = {str(m.gpu_instance_id): m for m in g.mig}
        for target, values in g.gpm.items():  # GPM: the whole GPU (target "") and each MIG instance
            m = mig_by_gi.get(target)
            prof_labels = labels if m is None else base + [str(m.gpu_instance_id), m.profile, *pod_labels(attribution, m.uuid)]
            for family, key in PROF:
                if key in values:
                    metrics[family.name].add_metric(prof_labels, values[key])
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
