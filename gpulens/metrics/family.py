"""The `Family` type: a metric's name, type, help, labels and unit, as pure data.

No prometheus_client import here, so dashboards, alerts and docs can import the catalogue cheaply;
exporters turn a Family into a fresh exposition family per render with `Family.new()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gpulens.exposition import AnyFamily

Kind = Literal["gauge", "counter", "histogram", "summary", "info"]

GPU = ("gpu", "uuid")
POD = ("namespace", "pod", "container")
GPU_POD = GPU + POD
MIG = ("gpu", "uuid", "gpu_instance_id", "compute_instance_id", "mig_profile") + POD


@dataclass(frozen=True)
class Family:
    """One metric family: its full exposition name, type, help, label names and upstream source."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    source: str = ""  # the upstream call or field the value comes from (NVML function, server metric)
    subsystem: str = "gpu"

    @property
    def unit(self) -> str:
        """The base unit, read off the name (Prometheus convention: the unit is a suffix)."""
        base = self.name.removesuffix("_total")
        for unit in ("bytes", "seconds", "celsius", "watts", "joules", "hertz", "ratio"):
            if base.endswith("_" + unit) or "_" + unit + "_" in base:
                return unit
        return ""

    def new(self, extra_labels: tuple[str, ...] = ()) -> AnyFamily:
        """A fresh, empty family ready for `add_metric`; built per render so nothing lingers."""
        from gpulens.exposition import new_family  # lazy: keeps this module free of prometheus_client

        return new_family(self, extra_labels)
