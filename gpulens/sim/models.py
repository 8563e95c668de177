"""The GPU boards the simulator can pose as, and the `--simulate COUNT[:MODEL]` flag syntax."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_MIB = 1 << 20


@dataclass(frozen=True)
class MigProfile:
    """One MIG GPU-instance profile; sizes as `nvidia-smi mig -lgip` reports them on real boards."""

    name: str
    compute_slices: int
    memory_slices: int
    memory_bytes: int


@dataclass(frozen=True)
class Model:
    """Static facts about one board; every simulated reading is derived from these plus the load curve."""

    key: str
    name: str
    architecture: str
    memory_bytes: int
    reserved_bytes: int
    tdp_w: int
    idle_w: int
    temp_idle_c: int
    temp_load_c: int
    max_sm_mhz: int
    idle_sm_mhz: int
    mem_mhz: int
    video_mhz: int
    pcie_gen: int
    pcie_width: int
    pcie_peak_bytes_per_s: float
    nvlinks: int
    nvlink_peak_bytes_per_s: float  # per link and direction
    gpm: bool
    retired_pages: bool  # pre-Ampere page retirement; Ampere+ remap rows instead
    remapped_rows: bool
    memory_temperature: bool  # HBM boards report it, GDDR ones do not
    pci_device_id: int
    vbios: str
    mig_profiles: Mapping[str, MigProfile] = field(default_factory=dict)

    @property
    def mig_capable(self) -> bool:
        return bool(self.mig_profiles)


def _profiles(*rows: tuple[str, int, int, int]) -> Mapping[str, MigProfile]:
    return MappingProxyType({n: MigProfile(n, c, m, mib * _MIB) for n, c, m, mib in rows})


MODELS: Mapping[str, Model] = MappingProxyType(
    {
        "h100": Model(
            key="h100",
            name="NVIDIA H100 80GB HBM3",
            architecture="Hopper",
            memory_bytes=81559 * _MIB,
            reserved_bytes=512 * _MIB,
            tdp_w=700,
            idle_w=70,
            temp_idle_c=30,
            temp_load_c=74,
            max_sm_mhz=1980,
            idle_sm_mhz=345,
            mem_mhz=2619,
            video_mhz=1755,
            pcie_gen=5,
            pcie_width=16,
            pcie_peak_bytes_per_s=8e9,
            nvlinks=18,
            nvlink_peak_bytes_per_s=5e9,
            gpm=True,
            retired_pages=False,
            remapped_rows=True,
            memory_temperature=True,
            pci_device_id=0x233010DE,
            vbios="96.00.99.00.01",
            mig_profiles=_profiles(
                ("1g.10gb", 1, 1, 9984),
                ("1g.20gb", 1, 2, 20096),
                ("2g.20gb", 2, 2, 20096),
                ("3g.40gb", 3, 4, 40448),
                ("4g.40gb", 4, 4, 40448),
                ("7g.80gb", 7, 8, 81152),
            ),
        ),
        "a100-40gb": Model(
            key="a100-40gb",
            name="NVIDIA A100-SXM4-40GB",
            architecture="Ampere",
            memory_bytes=40960 * _MIB,
            reserved_bytes=384 * _MIB,
            tdp_w=400,
            idle_w=55,
            temp_idle_c=31,
            temp_load_c=70,
            max_sm_mhz=1410,
            idle_sm_mhz=210,
            mem_mhz=1215,
            video_mhz=1290,
            pcie_gen=4,
            pcie_width=16,
            pcie_peak_bytes_per_s=4e9,
            nvlinks=12,
            nvlink_peak_bytes_per_s=5e9,
            gpm=False,
            retired_pages=False,
            remapped_rows=True,
            memory_temperature=True,
            pci_device_id=0x20B010DE,
            vbios="92.00.45.00.03",
            mig_profiles=_profiles(
                ("1g.5gb", 1, 1, 4864),
                ("2g.10gb", 2, 2, 9984),
                ("3g.20gb", 3, 4, 20096),
                ("4g.20gb", 4, 4, 20096),
                ("7g.40gb", 7, 8, 40192),
            ),
        ),
        "l4": Model(
            key="l4",
            name="NVIDIA L4",
            architecture="Ada Lovelace",
            memory_bytes=23034 * _MIB,
            reserved_bytes=256 * _MIB,
            tdp_w=72,
            idle_w=16,
            temp_idle_c=34,
            temp_load_c=78,
            max_sm_mhz=2040,
            idle_sm_mhz=210,
            mem_mhz=6251,
            video_mhz=1770,
            pcie_gen=4,
            pcie_width=16,
            pcie_peak_bytes_per_s=3e9,
            nvlinks=0,
            nvlink_peak_bytes_per_s=0.0,
            gpm=False,
            retired_pages=False,
            remapped_rows=True,
            memory_temperature=False,
            pci_device_id=0x27B810DE,
            vbios="95.04.5C.00.01",
        ),
        "v100": Model(
            key="v100",
            name="Tesla V100-SXM2-32GB",
            architecture="Volta",
            memory_bytes=32768 * _MIB,
            reserved_bytes=256 * _MIB,
            tdp_w=300,
            idle_w=40,
            temp_idle_c=33,
            temp_load_c=72,
            max_sm_mhz=1530,
            idle_sm_mhz=135,
            mem_mhz=877,
            video_mhz=1372,
            pcie_gen=3,
            pcie_width=16,
            pcie_peak_bytes_per_s=2e9,
            nvlinks=6,
            nvlink_peak_bytes_per_s=5e9,
            gpm=False,
            retired_pages=True,
            remapped_rows=False,
            memory_temperature=True,
            pci_device_id=0x1DB510DE,
            vbios="88.00.98.00.01",
        ),
    }
)


def parse_simulate(spec: str) -> tuple[int, str]:
    """Parse `--simulate COUNT[:MODEL]` ("8", "4:a100-40gb") into (count, model key); MODEL defaults to h100."""
    count_text, colon, model = spec.strip().partition(":")
    model = model if colon else "h100"
    if not count_text.isdigit() or int(count_text) < 1 or model not in MODELS:
        raise ValueError(
            f"invalid simulate spec {spec!r}: expected COUNT[:MODEL] with COUNT >= 1 and MODEL one of " + ", ".join(sorted(MODELS))
        )
    return int(count_text), model
