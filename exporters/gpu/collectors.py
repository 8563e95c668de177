"""Render a sampler snapshot into the per-GPU, MIG and GPM families, with pod labels.

    gpulens_gpu_power_usage_watts{gpu="0",uuid="GPU-…",namespace="models",pod="llama-…",container="kserve-container"} 312.5

Families are built fresh on every render, so series for a vanished GPU or pod never linger.
A GPU held by exactly one container carries its namespace/pod/container; a time-sliced GPU held by
several carries empty pod labels (no single owner) and `gpulens_gpu_allocation_info` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from gpulens.exporters.gpu.nvml import CLOCK_EVENT_REASONS, GpuReading
from gpulens.exporters.gpu.sampler import Snapshot
from gpulens.exposition import ExpositionFamily
from gpulens.metrics import gpu as c


class Holder(Protocol):
    """One container holding a device (exporters.podresources.Allocation)."""

    namespace: str
    pod: str
    container: str
    resource: str


Attribution = Mapping[str, tuple[Holder, ...]]
NO_POD = ("", "", "")

# family -> GpuReading attribute, for every plain one-value-per-GPU family.
SCALARS: tuple[tuple[c.Family, str], ...] = (
    (c.GPU_UTIL, "utilization"), (c.GPU_MEM_UTIL, "memory_utilization"),
    (c.GPU_ENC_UTIL, "encoder_utilization"), (c.GPU_DEC_UTIL, "decoder_utilization"),
    (c.MEM_TOTAL, "memory_total"), (c.MEM_USED, "memory_used"), (c.MEM_FREE, "memory_free"),
    (c.MEM_RESERVED, "memory_reserved"), (c.TEMP, "temperature"), (c.MEM_TEMP, "memory_temperature"),
    (c.POWER, "power"), (c.POWER_LIMIT, "power_limit"), (c.POWER_ENFORCED, "power_enforced_limit"),
    (c.ENERGY, "energy"), (c.FAN, "fan"), (c.PSTATE, "pstate"),
    (c.SM_CLOCK, "sm_clock"), (c.MEM_CLOCK, "memory_clock"), (c.SM_CLOCK_MAX, "sm_clock_max"),
    (c.MEM_CLOCK_MAX, "memory_clock_max"), (c.PCIE_GEN, "pcie_generation"), (c.PCIE_WIDTH, "pcie_width"),
    (c.PCIE_GEN_MAX, "pcie_max_generation"), (c.PCIE_WIDTH_MAX, "pcie_max_width"),
    (c.PCIE_REPLAY, "pcie_replays"), (c.PCIE_TX, "pcie_tx"), (c.PCIE_RX, "pcie_rx"),
)
GPM: tuple[tuple[c.Family, str], ...] = (
    (c.GPM_GRAPHICS, "graphics"), (c.GPM_SM, "sm"), (c.GPM_SM_OCC, "sm_occupancy"), (c.GPM_TENSOR, "tensor"),
    (c.GPM_FP16, "fp16"), (c.GPM_FP32, "fp32"), (c.GPM_FP64, "fp64"), (c.GPM_DRAM, "dram"),
    (c.GPM_PCIE_TX, "pcie_tx"), (c.GPM_PCIE_RX, "pcie_rx"),
    (c.GPM_NVLINK_TX, "nvlink_tx"), (c.GPM_NVLINK_RX, "nvlink_rx"),
)


def pod_labels(attribution: Attribution, uuid: str) -> tuple[str, str, str]:
    """The single owner's (namespace, pod, container), or empty labels when none or several."""
    holders = attribution.get(uuid, ())
    if len({(h.namespace, h.pod, h.container) for h in holders}) == 1:
        h = holders[0]
        return (h.namespace, h.pod, h.container)
    return NO_POD


def collect(snapshot: Snapshot, attribution: Attribution, nvlink_per_link: bool = False) -> Iterator[ExpositionFamily]:
    """Every per-GPU family of the snapshot; NotSupported values are absent, never 0.

    NVLink is summed per GPU (links, links up, bytes, errors by type) unless `nvlink_per_link`,
    which adds one series per link (18 links x 6 families per H100).
    """
    gpus = [g for g in snapshot.gpus if g.up]
    keyed = [(g, (str(g.identity.index), g.identity.uuid) + pod_labels(attribution, g.identity.uuid)) for g in gpus]

    info = c.GPU_INFO.new()
    up = c.GPU_UP.new()
    for g in snapshot.gpus:
        i = g.identity
        up.add_metric([str(i.index), i.uuid], 1.0 if g.up else 0.0)
        info.add_metric([str(i.index), i.uuid, i.name, i.pci_bus_id, i.serial, i.vbios_version,
                         snapshot.driver_version, snapshot.cuda_version], 1.0)
    yield info
    yield up

    for family, attr in SCALARS:
        metric = family.new()
        for g, labels in keyed:
            value = getattr(g, attr)
            if value is not None:
                metric.add_metric(labels, value)
        yield metric

    yield from _dict_families(keyed)
    yield from _nvlink(keyed, nvlink_per_link)
    yield from _mig(gpus, attribution)
    yield from _gpm(gpus, attribution)
    yield _allocations(snapshot.gpus, attribution)


def _nvlink(keyed: Sequence[tuple[GpuReading, tuple[str, ...]]], per_link: bool) -> Iterator[ExpositionFamily]:
    links, links_up, tx, rx = c.NVLINK_LINKS.new(), c.NVLINK_LINKS_UP.new(), c.NVLINK_TX.new(), c.NVLINK_RX.new()
    errors = c.NVLINK_ERRORS.new()
    for g, labels in keyed:
        if g.nvlink_links:
            links.add_metric(labels, g.nvlink_links)
        if g.nvlink_up:
            links_up.add_metric(labels, sum(g.nvlink_up.values()))
        if g.nvlink_tx:
            tx.add_metric(labels, sum(g.nvlink_tx.values()))
        if g.nvlink_rx:
            rx.add_metric(labels, sum(g.nvlink_rx.values()))
        by_type: dict[str, float] = {}
        for (_, etype), value in g.nvlink_errors.items():
            by_type[etype] = by_type.get(etype, 0.0) + value
        for etype, value in by_type.items():
            errors.add_metric([*labels, etype], value)
    yield from (links, links_up, tx, rx, errors)
    if not per_link:
        return
    link_up, link_tx, link_rx, link_errors = c.NVLINK_UP.new(), c.NVLINK_LINK_TX.new(), c.NVLINK_LINK_RX.new(), c.NVLINK_LINK_ERRORS.new()
    for g, labels in keyed:
        for link, value in g.nvlink_up.items():
            link_up.add_metric([*labels, str(link)], value)
        for link, value in g.nvlink_tx.items():
            link_tx.add_metric([*labels, str(link)], value)
        for link, value in g.nvlink_rx.items():
            link_rx.add_metric([*labels, str(link)], value)
        for (link, etype), value in g.nvlink_errors.items():
            link_errors.add_metric([*labels, str(link), etype], value)
    yield from (link_up, link_tx, link_rx, link_errors)


def _dict_families(keyed: Sequence[tuple[GpuReading, tuple[str, ...]]]) -> Iterator[ExpositionFamily]:
    """Families with an extra label: clock reasons, ECC, pages, remaps, processes."""
    reasons, ecc, pages = c.CLOCK_EVENT.new(), c.ECC.new(), c.RETIRED_PAGES.new()
    remapped, pending, failure = c.REMAPPED_ROWS.new(), c.ROW_REMAP_PENDING.new(), c.ROW_REMAP_FAILURE.new()
    procs = c.PROCESS_MEMORY.new()
    for g, labels in keyed:
        if g.clock_events is not None:
            for reason, bit in CLOCK_EVENT_REASONS.items():
                reasons.add_metric([*labels, reason], 1.0 if g.clock_events & bit else 0.0)
        for (etype, scope), value in g.ecc.items():
            ecc.add_metric([*labels, etype, scope], value)
        for cause, value in g.retired_pages.items():
            pages.add_metric([*labels, cause], value)
        if g.remapped_rows is not None:
            corr, unc, is_pending, is_failure = g.remapped_rows
            remapped.add_metric([*labels, "correctable"], corr)
            remapped.add_metric([*labels, "uncorrectable"], unc)
            pending.add_metric(list(labels), is_pending)
            failure.add_metric(list(labels), is_failure)
        for pid, used in g.processes:
            procs.add_metric([*labels, str(pid)], used)
    yield from (reasons, ecc, pages, remapped, pending, failure, procs)


def _mig(gpus: list[GpuReading], attribution: Attribution) -> Iterator[ExpositionFamily]:
    mode, info, total, used = c.MIG_MODE.new(), c.MIG_INFO.new(), c.MIG_MEM_TOTAL.new(), c.MIG_MEM_USED.new()
    for g in gpus:
        gpu = str(g.identity.index)
        if g.mig_mode is not None:
            mode.add_metric([gpu, g.identity.uuid], g.mig_mode)
        for m in g.mig:
            ids = [gpu, m.uuid, str(m.gpu_instance_id), str(m.compute_instance_id), m.profile]
            info.add_metric([gpu, m.uuid, g.identity.uuid, *ids[2:]], 1.0)
            labels = [*ids, *pod_labels(attribution, m.uuid)]
            if m.memory_total is not None:
                total.add_metric(labels, m.memory_total)
            if m.memory_used is not None:
                used.add_metric(labels, m.memory_used)
    yield from (mode, info, total, used)


def _gpm(gpus: list[GpuReading], attribution: Attribution) -> Iterator[ExpositionFamily]:
    metrics = [(family.new(), key) for family, key in GPM]
    for g in gpus:
        mig_uuid = {str(m.gpu_instance_id): m.uuid for m in g.mig}
        for target, values in g.gpm.items():
            uuid = mig_uuid.get(target, g.identity.uuid) if target else g.identity.uuid
            labels = [str(g.identity.index), uuid, target, *pod_labels(attribution, uuid)]
            for metric, key in metrics:
                if key in values:
                    metric.add_metric(labels, values[key])
    yield from (m for m, _ in metrics)


def _allocations(gpus: tuple[GpuReading, ...], attribution: Attribution) -> ExpositionFamily:
    """One series per (device, container): the join table for time-sliced and MIG devices."""
    metric = c.GPU_ALLOCATION.new()
    for g in gpus:
        for uuid in (g.identity.uuid, *(m.uuid for m in g.mig)):
            for h in attribution.get(uuid, ()):
                metric.add_metric([str(g.identity.index), uuid, h.resource, h.namespace, h.pod, h.container], 1.0)
    return metric
