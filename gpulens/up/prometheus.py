"""The Prometheus and Alertmanager configs `gpulens up` generates: pure functions, config in, YAML-ready dicts out.

Job names are the ones the alert rules select on (`up{job="gpulens-gpu-exporter"}`), and every
target gets the `node` and `cluster` labels the rules and dashboards group by, as Kubernetes
service-discovery relabelling would give them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

JOBS = {  # component → Prometheus job name (the rules' and dashboards' `job` selectors)
    "gpu-exporter": "gpulens-gpu-exporter",
    "kserve-exporter": "gpulens-kserve-exporter",
    "probe": "gpulens-probe",
    "canary": "gpulens-canary",
    "modelserver": "kserve-modelserver",
}


def _duration(seconds: float) -> str:
    """Prometheus duration text: 5 → '5s', 0.5 → '500ms'."""
    return f"{seconds:g}s" if seconds == int(seconds) else f"{int(seconds * 1000)}ms"


def render_prometheus(targets: Mapping[str, str], rule_files: Sequence[str | Path], alertmanager: str,
                      interval_seconds: float, node: str, cluster: str = "local") -> dict[str, Any]:
    """prometheus.yml: one job per component (`targets`: component → host:port), our rules, our Alertmanager."""
    interval = _duration(interval_seconds)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": _duration(min(interval_seconds, 10.0))},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": JOBS.get(name, name),
             "static_configs": [{"targets": [target], "labels": {"node": node, "cluster": cluster}}]}
            for name, target in targets.items()
        ],
    }


def render_alertmanager(webhook_url: str, group_wait_seconds: float = 1.0) -> dict[str, Any]:
    """alertmanager.yml: every alert to the local webhook that prints pages; critical resent sooner."""
    wait = _duration(group_wait_seconds)
    return {
        "route": {
            "receiver": "terminal",
            "group_by": ["alertname", "node"],
            "group_wait": wait,
            "group_interval": _duration(max(group_wait_seconds, 5.0)),
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "terminal", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }


def local_alertmanager(base: Mapping[str, Any], webhook_url: str, group_wait_seconds: float = 1.0) -> dict[str, Any]:
    """Our alertmanager.yml (alerts/alertmanager.yml) for one machine: the same routes and inhibitions, every
    receiver that notifies anyone replaced by the local webhook (which tells pager from ticket by the
    payload's `receiver`), and short group waits so a page arrives seconds after the alert fires."""
    config: dict[str, Any] = {"route": copy.deepcopy(base["route"])}
    if "resolve_timeout" in (base.get("global") or {}):
        config["global"] = {"resolve_timeout": base["global"]["resolve_timeout"]}
    if base.get("inhibit_rules"):
        config["inhibit_rules"] = copy.deepcopy(base["inhibit_rules"])
    wait, interval = _duration(group_wait_seconds), _duration(max(group_wait_seconds, 5.0))

    def shorten(route: dict[str, Any], top: bool) -> None:
        for key, value in (("group_wait", wait), ("group_interval", interval)):
            if top or key in route:
                route[key] = value
        for child in route.get("routes") or []:
            shorten(child, False)

    shorten(config["route"], True)
    config["receivers"] = [
        {"name": r["name"], **({"webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
                               if any(k.endswith("_configs") for k in r) else {})}
        for r in base.get("receivers") or []
    ]
    return config
