"""Every alert's expr, run against the real Prometheus of the session stack under the fault it is for.

Where the shipped threshold cannot be reached by a simulated fault in test time (a 30 s stale
sample, 85 °C), the same definition is rendered with a lower threshold: the PromQL shape is what is
checked. Alerts on families whose exporters have not landed are listed in PENDING_EXPORTER and
must still parse and run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gpulens.alerts.build import all_alerts
from gpulens.alerts.config import AlertConfig
from tests.gpulens_stack import BROKEN_GPU, HOT_GPU, IDLE_GPU, JOB, LOST_GPU, Stack


@dataclass(frozen=True)
class Fault:
    labels: dict[str, str]  # every returned series carries these (with exact), or one of them does
    config: dict[str, object] = field(default_factory=dict)
    exact: bool = True


N1 = {"node": "gpu-node-1", "cluster": "test"}
FAULTS = {
    "GpulensGpuXidCritical": Fault({**N1, "gpu": str(BROKEN_GPU), "xid": "48"}),
    "GpulensGpuEccUncorrectable": Fault({**N1, "gpu": str(BROKEN_GPU), "type": "uncorrected"}),
    "GpulensGpuRowRemapFailed": Fault({**N1, "gpu": str(BROKEN_GPU)}),
    "GpulensGpuRowRemapPending": Fault({**N1, "gpu": str(BROKEN_GPU)}),
    "GpulensGpuLost": Fault({**N1, "gpu": str(LOST_GPU)}),
    "GpulensGpuThrottled": Fault({**N1, "gpu": str(HOT_GPU)}),  # thermal: sw_ and hw_thermal_slowdown
    # The sim's hottest (74 °C at full load) stays under 85 °C; others may cross 70 on their load curve.
    "GpulensGpuTemperatureHigh": Fault({**N1, "gpu": str(HOT_GPU)}, {"temperature_warning_celsius": 70.0}, exact=False),
    # Full load fills 82 % of a simulated GPU's memory; the CLI faults cannot allocate more.
    "GpulensGpuMemoryNearlyFull": Fault({**N1, "gpu": str(HOT_GPU), "namespace": "models"}, {"memory_full_ratio": 0.8}),
    "GpulensGpuAllocatedIdle": Fault({**N1, "gpu": str(IDLE_GPU), "namespace": "models"}),
    "GpulensGpuExporterDown": Fault({"node": "gpu-node-4", "job": JOB}),
    "GpulensGpuExporterAbsent": Fault({"job": "not-deployed"}, {"gpu_exporter_job": "not-deployed"}),
    "GpulensNvmlDown": Fault({"node": "gpu-node-2"}),
    "GpulensGpuSampleStale": Fault({"node": "gpu-node-3"}, {"sample_stale_seconds": 2.0}),
    # The stand-in's failed rollout (resnet); `for:` is checked by promtool, the expr here.
    "GpulensInferenceServiceNotReady": Fault({"namespace": "models", "inferenceservice": "resnet"}),
    # The stack's probe of the model that answers 500.
    "GpulensProbeFailing": Fault({"target": "broken", "model": "broken", "protocol": "v2"}),
}
# Checked by promtool only: the simulated NVML cannot make a GPU vanish from enumeration mid-run.
PROMTOOL_ONLY = {"GpulensNodeGpusMissing"}
PENDING_EXPORTER = {
    "GpulensInferenceErrorRatioHigh": "kserve",
    "GpulensGpuCanaryFailing": "canary", "GpulensGpuCanaryThroughputLow": "canary", "GpulensGpuCanarySlowerThanFleet": "canary",
    "GpulensSloAvailabilityBudgetBurn": "kserve", "GpulensSloLatencyBudgetBurn": "kserve", "GpulensSloTtftBudgetBurn": "kserve",
}


def test_every_alert_is_accounted_for() -> None:
    names = {a.name for a in all_alerts(AlertConfig())}
    assert names == set(FAULTS) | PROMTOOL_ONLY | set(PENDING_EXPORTER)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_alert_expr_fires_under_its_fault(gpulens_stack: Stack, name: str) -> None:
    fault = FAULTS[name]
    cfg = AlertConfig(**fault.config)  # type: ignore[arg-type]
    (alert,) = [a for a in all_alerts(cfg) if a.name == name]
    result = gpulens_stack.prometheus.query(alert.expr)
    assert result, f"{name}: no series for {alert.expr}"
    matching = [s["metric"] for s in result if {k: s["metric"].get(k) for k in fault.labels} == fault.labels]
    if fault.exact:
        assert len(matching) == len(result), f"{name}: fired for {[s['metric'] for s in result]}"
    else:
        assert matching, f"{name}: not firing for {fault.labels}: {[s['metric'] for s in result]}"


@pytest.mark.parametrize("name", sorted(PENDING_EXPORTER | dict.fromkeys(PROMTOOL_ONLY, "")))
def test_pending_alert_exprs_parse_and_run(gpulens_stack: Stack, name: str) -> None:
    for alert in [a for a in all_alerts(AlertConfig()) if a.name == name]:
        gpulens_stack.prometheus.query(alert.expr)  # raises unless Prometheus accepted it


def test_healthy_gpus_do_not_fire(gpulens_stack: Stack) -> None:
    """Per-GPU alerts stay quiet on gpu 2, the healthy one (until the paging test breaks it)."""
    healthy = gpulens_stack.uuid("gpu-node-1", 2)
    for alert in all_alerts(AlertConfig()):
        if alert.name in FAULTS and alert.name != "GpulensGpuXidCritical":
            fired = [r["metric"] for r in gpulens_stack.prometheus.query(alert.expr)
                     if r["metric"].get("uuid") == healthy and r["metric"].get("node") == "gpu-node-1"]
            assert not fired, f"{alert.name} fired on a healthy GPU: {fired}"
