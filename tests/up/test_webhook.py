"""The terminal pager: Alertmanager's webhook payload in, one line per alert out, a JSON journal beside it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from gpulens.up.webhook import PageReceiver, format_page

PAYLOAD = {
    "version": "4", "status": "firing", "receiver": "pager", "groupLabels": {"alertname": "GpulensGpuXidCritical"},
    "alerts": [{
        "status": "firing",
        "labels": {"alertname": "GpulensGpuXidCritical", "severity": "critical", "gpu": "3", "xid": "79", "node": "box"},
        "annotations": {"summary": "GPU XID 79 on node box", "runbook_url": "https://r/GpulensGpuXidCritical.md"},
        "startsAt": "2026-12-01T21:00:00Z",
    }],
}


def test_format_page_names_alert_severity_labels_and_runbook() -> None:
    line = format_page(PAYLOAD["alerts"][0], "firing")  # type: ignore[index]
    assert line == ("PAGE FIRING [critical] GpulensGpuXidCritical: GPU XID 79 on node box (gpu=3, node=box, xid=79) "
                    "runbook: https://r/GpulensGpuXidCritical.md")


def test_a_ticket_route_is_printed_as_a_ticket() -> None:
    assert format_page(PAYLOAD["alerts"][0], "firing", "ticket").startswith("TICKET FIRING [critical]")  # type: ignore[index]


def test_receiver_prints_records_and_serves_pages(tmp_path: Path) -> None:
    said: list[str] = []
    receiver = PageReceiver("127.0.0.1", 0, tmp_path / "pages.jsonl", say=said.append).start()
    try:
        req = urllib.request.Request(receiver.url, data=json.dumps(PAYLOAD).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(receiver.url + "pages", timeout=5) as resp:
            pages = json.load(resp)
    finally:
        receiver.stop()
    assert said == [format_page(PAYLOAD["alerts"][0], "firing")]  # type: ignore[index]
    assert pages[0]["labels"]["xid"] == "79"
    assert json.loads((tmp_path / "pages.jsonl").read_text())["annotations"]["summary"] == "GPU XID 79 on node box"


def test_receiver_rejects_non_json(tmp_path: Path) -> None:
    receiver = PageReceiver("127.0.0.1", 0).start()
    try:
        req = urllib.request.Request(receiver.url, data=b"nope", method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("expected HTTP 400")
        except urllib.error.HTTPError as err:
            assert err.code == 400
    finally:
        receiver.stop()
    assert receiver.pages == []
