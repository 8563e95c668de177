"""The same alerts as Grafana-managed rules, built with grafanalib, in Grafana's file-provisioning format.

The PromQL is the Prometheus rule's expr, unchanged: a series in its result is a firing instance.
Grafana needs a number to threshold, so query A maps each result series to 1, B reduces it and C
fires when B > 0. No data means nothing is firing (OK), as in Prometheus.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import grafanalib.core as gl
from grafanalib._gen import DashboardEncoder

from gpulens.alerts.config import AlertConfig
from gpulens.alerts.rule import Alert, Group


def uid(alert: Alert) -> str:
    """Stable and unique per alert definition (SLO burn alerts share a name, not labels); Grafana allows 40 chars."""
    key = alert.name + json.dumps(sorted(alert.labels)) + alert.severity
    return "gpulens-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def rule(alert: Alert, cfg: AlertConfig) -> gl.AlertRulev9:
    return gl.AlertRulev9(
        title=alert.name if not alert.labels else f"{alert.name} ({', '.join(v for _, v in alert.labels)})",
        uid=uid(alert),
        triggers=[
            gl.Target(expr=f"({alert.expr}) * 0 + 1", refId="A", datasource=cfg.grafana_datasource_uid, instant=True),
            gl.AlertExpression(refId="B", expression="A", expressionType=gl.EXP_TYPE_REDUCE, reduceFunction="last"),
            gl.AlertExpression(refId="C", expression="$B > 0", expressionType=gl.EXP_TYPE_MATH),
        ],
        condition="C",
        evaluateFor=alert.for_,
        labels={"severity": alert.severity, **dict(alert.labels)},
        annotations={"summary": alert.summary, "description": alert.description,
                     "runbook_url": alert.runbook_url(cfg.runbook_base_url)},
        noDataAlertState="OK",
        errorAlertState="Error",
    )


def _file_rule(api_rule: dict[str, Any]) -> dict[str, Any]:
    """grafanalib 0.7 writes the Ruler API shape (`grafana_alert: {...}`); provisioning files want it flat."""
    inner = api_rule.pop("grafana_alert")
    api_rule.update(title=inner["title"], condition=inner["condition"], data=inner["data"],
                    noDataState=inner["no_data_state"], execErrState=inner["exec_err_state"])
    return api_rule


def provisioning(groups: list[Group], cfg: AlertConfig) -> dict[str, Any]:
    """`apiVersion: 1, groups: [...]` for Grafana's provisioning/alerting/ directory."""
    out = []
    for grp in groups:
        if not grp.alerts:
            continue
        built = gl.AlertGroup(name=grp.name, rules=[rule(a, cfg) for a in grp.alerts], folder=cfg.grafana_folder,
                              evaluateInterval="1m")
        data = json.loads(json.dumps(built.to_json_data(), cls=DashboardEncoder))
        data["rules"] = [_file_rule(r) for r in data["rules"]]
        data["orgId"] = 1
        out.append(data)
    return {"apiVersion": 1, "groups": out}
