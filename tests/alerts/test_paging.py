"""End to end: XID 79 on one simulated GPU → Prometheus rule → Alertmanager → the pager receives the page
(webhook and PagerDuty Events v2), with the GPU's labels and runbook; that GPU's throttle alert is inhibited."""

from __future__ import annotations

from typing import Any

from gpulens.alerts.build import all_alerts
from gpulens.alerts.config import AlertConfig
from tests.gpulens_stack import HOT_GPU, PAGE_GPU, Stack, wait

RUNBOOK = {a.name: a.runbook_url(AlertConfig().runbook_base_url) for a in all_alerts(AlertConfig())}


def _xid79(alerts: list[dict[str, Any]], uuid: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("alertname") == "GpulensGpuXidCritical" and a["labels"].get("uuid") == uuid
            and a["labels"].get("xid") == "79" and a["status"] == "firing"]


def test_xid79_pages_and_inhibits_that_gpus_throttle_alert(gpulens_stack: Stack) -> None:
    stack = gpulens_stack
    node = stack.exporters["gpu-node-1"]
    uuid = stack.uuid("gpu-node-1", PAGE_GPU)
    node.fault(f"xid:79@gpu{PAGE_GPU}")  # POST /-/simulate/fault on the running exporter

    (page,) = wait("the XID 79 page on the pager webhook", lambda: _xid79(stack.webhook.alerts("/pager"), uuid))[:1]
    assert page["labels"] == {"alertname": "GpulensGpuXidCritical", "severity": "critical", "cluster": "test", "node": "gpu-node-1",
                              "gpu": str(PAGE_GPU), "uuid": uuid, "xid": "79", "instance": page["labels"]["instance"],
                              "job": "gpulens-gpu-exporter"}
    assert page["annotations"]["runbook_url"] == RUNBOOK["GpulensGpuXidCritical"]
    assert page["annotations"]["summary"] == "GPU XID 79 on node gpu-node-1"
    assert f"GPU {PAGE_GPU} ({uuid}) on node gpu-node-1 reported critical XID 79" in page["annotations"]["description"]

    # The same page through PagerDuty's Events API v2, as Alertmanager's pagerduty integration sends it.
    events = wait("the PagerDuty event", lambda: [e for e in stack.webhook.posts("/pagerduty")
                                                   if e["payload"]["custom_details"]["firing"].count(uuid)
                                                   and "xid = 79" in e["payload"]["custom_details"]["firing"]])
    event = events[0]
    assert event["routing_key"] == "R0UT1NGK3Y0000000000000000000000"
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "critical"
    assert {"href": RUNBOOK["GpulensGpuXidCritical"], "text": "runbook"} in event["links"]

    # Now that GPU throttles: Alertmanager holds the alert back (inhibited by the XID 79 page) ...
    node.fault(f"throttle:thermal@gpu{PAGE_GPU}")
    inhibited = wait("the inhibited throttle alert in Alertmanager", lambda: [
        a for a in stack.alertmanager.alerts(alertname="GpulensGpuThrottled", uuid=uuid) if a["status"]["inhibitedBy"]])
    assert inhibited[0]["status"]["state"] == "suppressed"
    # ... while the throttled GPU without an XID still reaches the ticket receiver.
    other = stack.uuid("gpu-node-1", HOT_GPU)
    ticket = wait("the other GPU's throttle ticket", lambda: [a for a in stack.webhook.alerts("/ticket")
                                                             if a["labels"]["alertname"] == "GpulensGpuThrottled"
                                                             and a["labels"].get("uuid") == other])
    assert ticket[0]["annotations"]["runbook_url"] == RUNBOOK["GpulensGpuThrottled"]
    # Alertmanager decided at arrival that it is inhibited, so no ticket ever carried it.
    assert not [a for a in stack.webhook.alerts("/ticket") if a["labels"].get("uuid") == uuid]
