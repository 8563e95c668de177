"""What an operator tunes in the rules: thresholds, job names, the runbook base, the GPU price.

Like kubernetes-mixin's `_config`: one object feeds every rule, so a changed threshold changes the
Prometheus rule, the PrometheusRule and the Grafana-managed rule together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# XIDs that mean the GPU or its memory is broken until reset or replaced (NVIDIA's XID catalogue):
# 48 DBE ECC, 62/63/64 remap/retirement events, 74 NVLink, 79 fell off the bus, 92 high SBE rate,
# 94/95 contained/uncontained ECC, 119/120 GSP errors.
CRITICAL_XIDS = (48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120)

# Board power below which an idle GPU is really idle (no context keeping clocks up), by NVML name.
IDLE_POWER_WATTS = {
    "NVIDIA H100 80GB HBM3": 100.0,
    "NVIDIA A100-SXM4-40GB": 80.0,
    "NVIDIA L4": 25.0,
}


@dataclass(frozen=True)
class AlertConfig:
    """Every tunable the rules read."""

    runbook_base_url: str = "https://github.com/gpulens/gpulens/blob/main/docs/runbooks"
    gpu_exporter_job: str = "gpulens-gpu-exporter"
    critical_xids: tuple[int, ...] = CRITICAL_XIDS
    xid_alert_seconds: int = 900  # an XID keeps its alert this long after it was last seen
    temperature_warning_celsius: float = 85.0
    memory_full_ratio: float = 0.95
    sample_stale_seconds: float = 30.0
    idle_power_watts: dict[str, float] = field(default_factory=lambda: dict(IDLE_POWER_WATTS))
    idle_power_default_ratio: float = 0.2  # of the power limit, for models not in idle_power_watts
    idle_for: str = "2h"
    gpu_hourly_price: float = 2.5  # currency units per whole-GPU hour, for cost per 1000 inferences
    error_ratio_warning: float = 0.05
    error_ratio_min_rps: float = 0.1  # below this request rate the error ratio is noise
    canary_ratio_warning: float = 0.7
    canary_fleet_ratio_warning: float = 0.9  # a 5% spread between GPUs of one model is normal
    grafana_datasource_uid: str = "prometheus"  # Grafana-managed rules name a concrete datasource
    grafana_folder: str = "gpulens"

    def __post_init__(self) -> None:
        if not 0 < self.memory_full_ratio <= 1:
            raise ValueError("memory_full_ratio must be in (0, 1]")
