"""alerts/alertmanager.yml with the real tools: amtool's config check and routing cases, and every
inhibition rule exercised in the session's real Alertmanager."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gpulens_stack import Stack, wait
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "alerts" / "alertmanager.yml"
ROUTES = yaml.safe_load((ROOT / "alerts" / "alertmanager-routes.yaml").read_text())


def test_amtool_check_config() -> None:
    out = subprocess.run([require_tool("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("case", ROUTES, ids=lambda c: c["labels"].get("alertname", "?") + "-" + c["labels"].get("severity", "none"))
def test_route(case: dict[str, Any]) -> None:
    labels = [f"{k}={v}" for k, v in case["labels"].items()]
    out = subprocess.run([require_tool("amtool"), "config", "routes", "test", f"--config.file={CONFIG}",
                          f"--verify.receivers={','.join(case['receivers'])}", *labels], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_severity_has_a_route_case() -> None:
    assert {c["labels"].get("severity") for c in ROUTES} >= {"critical", "warning", "info", None}


# (source labels, inhibited target labels, not-inhibited control labels): one case per inhibit rule.
INHIBITIONS = [
    ({"alertname": "GpulensGpuExporterDown", "severity": "critical", "node": "n1"},
     {"alertname": "GpulensGpuTemperatureHigh", "severity": "warning", "node": "n1", "uuid": "GPU-a"},
     {"alertname": "GpulensGpuTemperatureHigh", "severity": "warning", "node": "n2", "uuid": "GPU-b"}),
    ({"alertname": "GpulensNvmlDown", "severity": "critical", "node": "n1"},
     {"alertname": "GpulensGpuLost", "severity": "critical", "node": "n1", "uuid": "GPU-a"},
     {"alertname": "GpulensGpuLost", "severity": "critical", "node": "n2", "uuid": "GPU-b"}),
    ({"alertname": "GpulensGpuLost", "severity": "critical", "node": "n1", "uuid": "GPU-a"},
     {"alertname": "GpulensGpuThrottled", "severity": "warning", "node": "n1", "uuid": "GPU-a", "reason": "hw_slowdown"},
     {"alertname": "GpulensGpuThrottled", "severity": "warning", "node": "n1", "uuid": "GPU-b", "reason": "hw_slowdown"}),
    ({"alertname": "GpulensGpuXidCritical", "severity": "critical", "node": "n1", "uuid": "GPU-a", "xid": "79"},
     {"alertname": "GpulensGpuTemperatureHigh", "severity": "warning", "node": "n1", "uuid": "GPU-a"},
     {"alertname": "GpulensGpuTemperatureHigh", "severity": "warning", "node": "n1", "uuid": "GPU-c"}),
    ({"alertname": "GpulensSloAvailabilityBudgetBurn", "severity": "critical", "slo": "llama", "objective": "availability"},
     {"alertname": "GpulensSloAvailabilityBudgetBurn", "severity": "warning", "slo": "llama", "objective": "availability"},
     {"alertname": "GpulensSloAvailabilityBudgetBurn", "severity": "warning", "slo": "chat", "objective": "availability"}),
]


@pytest.mark.parametrize(("index", "case"), list(enumerate(INHIBITIONS)), ids=[c[0]["alertname"] for c in INHIBITIONS])
def test_inhibition(gpulens_stack: Stack, index: int, case: tuple[dict[str, str], ...]) -> None:
    am = gpulens_stack.alertmanager
    cluster = f"inhibit-{index}"  # its own cluster label: apart from the stack's live alerts
    source, target, control = ({**labels, "cluster": cluster} for labels in case)
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    am.post([{"labels": a, "annotations": {"summary": "test"}, "endsAt": ends} for a in (source, target, control)])

    def status(labels: dict[str, str]) -> dict[str, Any] | None:
        found = am.alerts(**labels)
        return found[0]["status"] if found else None

    wait("the target to be inhibited", lambda: (status(target) or {}).get("inhibitedBy"))
    assert status(target)["state"] == "suppressed"
    assert status(control) == {"inhibitedBy": [], "silencedBy": [], "state": "active"}
    assert status(source)["state"] == "active"


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    import re

    for m in matchers:
        name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', m).groups()  # type: ignore[union-attr]
        have = labels.get(name, "")
        ok = {"=": have == value, "!=": have != value, "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def test_inhibition_cases_cover_every_rule() -> None:
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    for i, rule in enumerate(rules):
        assert any(_matches(rule["source_matchers"], s) and _matches(rule["target_matchers"], t) for s, t, _ in INHIBITIONS), \
            f"inhibit rule {i} has no test case"
