"""The `Family` type: a metric's name, type, help, labels and unit, as pure data.

No prometheus_client import here, so dashboards, alerts and docs can import the catalogue cheaply;
exporters turn a Family into a fresh exposition family per render with `Family.new()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gpulens.exposition import ExpositionFamily

Kind = Literal["gauge", "counter", "histogram", "summary", "info"]

GPU = ("gpu", "uuid")
POD = ("namespace", "pod", "container")
GPU_POD = GPU + POD
MIG = ("gpu", "uuid", "gpu_instance_id", "compute_instance_id", "mig_profile") + POD


@dataclass(frozen=True)
class Family:
    """One metric family: its full exposition name, type, help, label names, upstream source and unit.

    `unit` is the OpenMetrics unit (`# UNIT` line): a base unit the name ends with (before `_total`),
    e.g. "bytes", "seconds", "bytes_per_second"; empty for dimensionless families.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    source: str = ""  # the upstream call or field the value comes from (NVML function, server metric)
    subsystem: str = "gpu"
    unit: str = ""

    def __post_init__(self) -> None:
        base = self.name.removesuffix("_total") if self.kind == "counter" else self.name
        if self.unit and not base.endswith("_" + self.unit):
            raise ValueError(f"{self.name}: OpenMetrics needs the name to end with its unit {self.unit!r}")

    def new(self, extra_labels: tuple[str, ...] = ()) -> ExpositionFamily:
        """A fresh, empty family ready for `add_metric`; built per render so nothing lingers."""
        from gpulens.exposition import new_family  # lazy: keeps this module free of prometheus_client

        return new_family(self, extra_labels)

    def new_library(self, extra_labels: tuple[str, ...] = ()) -> ExpositionFamily:
        """A prometheus_client family (add_metric accepts `timestamp=` and, where the library does, `exemplar=`)."""
        from gpulens.exposition import new_library_family

        return new_library_family(self, extra_labels)
