"""The generated rule files: in sync, accepted by promtool, unit-tested on both sides of `for:`,
named by convention, reading only catalogue names, each with a runbook, and the same alerts as
Grafana-managed rules."""

from __future__ import annotations

import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest
import yaml

from gpulens.alerts import build, grafana
from gpulens.alerts.config import AlertConfig
from gpulens.alerts.rule import SEVERITIES, seconds
from gpulens.metrics import families

ROOT = Path(__file__).resolve().parents[2]
CFG = AlertConfig()
ALERTS = build.all_alerts(CFG)
CATALOGUE = {f.name for f in families()}


def test_generated_rule_files_are_in_sync() -> None:
    assert build.main(["--check"]) == 0, "run `make alerts`"


def test_promtool_check_rules(promtool: str) -> None:
    files = sorted(str(p) for p in (ROOT / "alerts" / "rules").glob("*.yaml"))
    out = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests(promtool: str) -> None:
    tests = sorted(p.name for p in (ROOT / "alerts" / "tests").glob("*.yaml"))
    out = subprocess.run([promtool, "test", "rules", *tests], cwd=ROOT / "alerts" / "tests", capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(tests)


def _unit_cases() -> dict[str, list[tuple[int, list[dict[str, object]]]]]:
    """alertname → [(eval seconds, expected alerts)] over every promtool test file."""
    out: dict[str, list[tuple[int, list[dict[str, object]]]]] = {}
    for path in (ROOT / "alerts" / "tests").glob("*.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                out.setdefault(case["alertname"], []).append((seconds(case["eval_time"]), case.get("exp_alerts") or []))
    return out


@pytest.mark.parametrize("name", sorted({a.name for a in ALERTS}))
def test_each_alert_unit_tested_on_both_sides_of_for(name: str) -> None:
    cases = _unit_cases().get(name, [])
    quiet = [t for t, exp in cases if not exp]
    firing = [(t, exp) for t, exp in cases if exp]
    assert quiet and firing, f"{name}: needs a not-firing and a firing promtool case"
    assert min(quiet) < min(t for t, _ in firing), f"{name}: the not-firing case must come before it fires"
    definitions = {a.severity: a for a in ALERTS if a.name == name}
    for _, expected in firing:
        for alert in expected:
            labels, annotations = alert["exp_labels"], alert["exp_annotations"]  # type: ignore[index]
            assert labels["severity"] in definitions, f"{name}: unexpected severity {labels['severity']}"
            assert annotations["runbook_url"] == definitions[labels["severity"]].runbook_url(CFG.runbook_base_url)
            assert set(annotations) == {"summary", "description", "runbook_url"}


def test_alert_conventions() -> None:
    seen = set()
    for alert in ALERTS:
        assert re.fullmatch(r"Gpulens[A-Z]\w+", alert.name)
        assert alert.severity in SEVERITIES
        assert alert.summary and alert.description
        key = (alert.name, alert.severity, alert.labels)
        assert key not in seen, f"duplicate alert definition {key}"
        seen.add(key)


@pytest.mark.parametrize("runbook", sorted({a.runbook or a.name for a in ALERTS}))
def test_every_alert_has_a_runbook(runbook: str) -> None:
    page = ROOT / "docs" / "runbooks" / f"{runbook}.md"
    assert page.exists(), f"write {page.relative_to(ROOT)}"
    text = page.read_text()
    assert text.startswith(f"# {runbook}\n")
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
        assert section in text, f"{page.name}: missing {section}"


def test_rules_read_only_catalogue_names() -> None:
    used = set()
    for grp in build.groups(CFG):
        for rule in grp.rules:
            used |= set(re.findall(r"(?<![\w:])(gpulens_[a-z0-9_]+)", rule.expr))
    strip = {re.sub(r"_(bucket|count|sum)$", "", n) if n not in CATALOGUE else n for n in used}
    assert strip <= CATALOGUE, sorted(strip - CATALOGUE)


@pytest.mark.parametrize("path", sorted((ROOT / "alerts").glob("*.py")) + sorted((ROOT / "dashboards").glob("*.py")),
                         ids=lambda p: p.name)
def test_no_metric_name_spelled_in_source(path: Path) -> None:
    """Metric names come from gpulens.metrics: a literal here would survive a rename and query nothing."""
    strings = [t.string for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline) if t.type == tokenize.STRING]
    spelled = [s for s in strings if re.search(r"(?<![\w:])gpulens_[a-z]", s)]
    assert not spelled, spelled


def test_grafana_managed_rules_mirror_the_prometheus_rules() -> None:
    provisioned = yaml.safe_load((ROOT / "alerts" / "grafana" / "rules.yaml").read_text())
    assert provisioned["apiVersion"] == 1
    rules = {r["uid"]: r for g in provisioned["groups"] for r in g["rules"]}
    assert len(rules) == len(ALERTS)
    for alert in ALERTS:
        rule = rules[grafana.uid(alert)]
        query = rule["data"][0]
        assert query["datasourceUid"] == CFG.grafana_datasource_uid
        assert query["model"]["expr"] == f"({alert.expr}) * 0 + 1"
        assert rule["condition"] == "C" and [d["refId"] for d in rule["data"]] == ["A", "B", "C"]
        assert rule["for"] == alert.for_ and rule["noDataState"] == "OK"
        assert rule["labels"] == {"severity": alert.severity, **dict(alert.labels)}
        assert rule["annotations"]["runbook_url"] == alert.runbook_url(CFG.runbook_base_url)
        assert len(rule["uid"]) <= 40
    assert {g["folder"] for g in provisioned["groups"]} == {CFG.grafana_folder}
