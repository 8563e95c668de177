"""The Kibana saved objects gpulens ships: a data view, saved searches per event type, one dashboard.

`python -m gpulens.elk.kibana` writes elk/saved-objects.ndjson (sorted keys, one object a line);
a test regenerates it and fails on drift, and checks every reference resolves inside the file.
Saved searches query `event.action`, which gpulens.events sets on every event.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gpulens.elk import SAVED_OBJECTS

DATA_VIEW_ID = "gpulens-logs"
DASHBOARD_ID = "gpulens-events"
_INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"

# (id, title, KQL, columns)
SEARCHES = (
    ("gpulens-gpu-xid-errors", "GPU XID errors", 'event.action:"gpu.xid"',
     ["host.name", "gpu.index", "gpu.uuid", "gpu.xid", "workload.namespace", "workload.pod", "message"]),
    ("gpulens-probe-failures", "Probe failures", 'event.action:"probe.failed"',
     ["probe.target", "event.reason", "http.response.status_code", "trace.id", "message"]),
    ("gpulens-inferenceservice-readiness", "InferenceService readiness", 'event.action:"inferenceservice.ready_changed"',
     ["inferenceservice.namespace", "inferenceservice.name", "inferenceservice.ready", "event.reason", "message"]),
    ("gpulens-gpu-health", "GPU lost, recovered and throttling",
     'event.action:("gpu.lost" or "gpu.recovered" or "gpu.throttle.start" or "gpu.throttle.stop")',
     ["host.name", "event.action", "gpu.index", "gpu.uuid", "event.reason", "workload.pod", "message"]),
)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def data_view() -> dict[str, Any]:
    return {"id": DATA_VIEW_ID, "type": "index-pattern", "references": [],
            "attributes": {"title": "logs-gpulens-*", "name": "gpulens events and logs", "timeFieldName": "@timestamp"}}


def saved_search(sid: str, title: str, query: str, columns: list[str]) -> dict[str, Any]:
    source = {"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": _INDEX_REF}
    return {"id": sid, "type": "search",
            "references": [{"name": _INDEX_REF, "type": "index-pattern", "id": DATA_VIEW_ID}],
            "attributes": {"title": title, "description": f"gpulens events: {query}", "columns": columns,
                           "sort": [["@timestamp", "desc"]], "grid": {}, "hideChart": False,
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _json(source)}}}


def dashboard() -> dict[str, Any]:
    panels, references = [], []
    for i, (sid, title, _query, _columns) in enumerate(SEARCHES):
        ref = f"panel_{i}"
        panels.append({"type": "search", "panelIndex": str(i), "panelRefName": ref, "title": title,
                       "gridData": {"i": str(i), "x": 24 * (i % 2), "y": 15 * (i // 2), "w": 24, "h": 15},
                       "embeddableConfig": {}})
        references.append({"name": ref, "type": "search", "id": sid})
    return {"id": DASHBOARD_ID, "type": "dashboard", "references": references,
            "attributes": {"title": "gpulens: GPU and inference events",
                           "description": "XIDs, GPUs lost and throttling, InferenceService readiness and probe failures.",
                           "panelsJSON": _json(panels),
                           "optionsJSON": _json({"hidePanelTitles": False, "syncColors": False, "useMargins": True}),
                           "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
                           "refreshInterval": {"pause": False, "value": 60000},
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _json({"query": {"query": "", "language": "kuery"},
                                                                                 "filter": []})}}}


def objects() -> list[dict[str, Any]]:
    """Every saved object, referenced ones first (Kibana's import resolves references within the file)."""
    return [data_view(), *(saved_search(*s) for s in SEARCHES), dashboard()]


def render() -> str:
    return "".join(_json(o) + "\n" for o in objects())


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else SAVED_OBJECTS
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
