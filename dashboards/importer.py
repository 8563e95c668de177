"""`gpulens dashboards import`: push the generated dashboards to Grafana through its HTTP API.

Idempotent: the folder is found by title (created once, with a uid derived from the title) and
every dashboard is posted to /api/dashboards/db with its fixed uid and `overwrite: true`, so a
second run replaces the same dashboards instead of adding copies.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpulens.config import ConfigError, opt

JSON_DIR = Path(__file__).resolve().parent / "json"
LOG = logging.getLogger("gpulens.dashboards")


@dataclass(frozen=True)
class DashboardsImportConfig:
    """`gpulens dashboards import`: where Grafana is, how to authenticate, which folder to use."""

    grafana_url: str = opt("", "Grafana base URL, e.g. https://grafana.example.com (required).")
    token_file: str = opt("", "File holding a Grafana service-account token (sent as a Bearer token; required).")
    folder: str = opt("gpulens", "Grafana folder to put the dashboards in (created if missing).")
    jaeger_url: str = opt("", "Base URL of Jaeger for trace links; default: the one in the dashboards.")
    kibana_url: str = opt("", "Base URL of Kibana for log links; default: the one in the dashboards.")
    timeout_seconds: float = opt(10.0, "HTTP timeout per request.", minimum=0.1)


def folder_uid(title: str) -> str:
    """A stable uid for the folder, so repeated imports and several clusters agree (Grafana: ≤ 40 chars)."""
    return (re.sub(r"[^a-z0-9-]+", "-", title.lower()).strip("-") or "gpulens")[:40]


def load_dashboards(directory: Path = JSON_DIR, jaeger_url: str = "", kibana_url: str = "") -> list[dict[str, Any]]:
    """The generated dashboards, with the link base URLs replaced when given."""
    out = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        for var in data.get("templating", {}).get("list", []):
            url = {"jaeger_url": jaeger_url, "kibana_url": kibana_url}.get(var["name"])
            if url:
                var["query"] = url
                var["current"] = {"selected": True, "text": url, "value": url}
        out.append(data)
    return out


def run(cfg: DashboardsImportConfig, token: str, log: logging.Logger = LOG) -> int:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(cfg.grafana_url, credential=token, timeout=cfg.timeout_seconds)
    try:
        folders = api.folder.get_all_folders()
        match = [f for f in folders if f.get("title") == cfg.folder]
        if match:
            uid = match[0]["uid"]
        else:
            uid = api.folder.create_folder(cfg.folder, uid=folder_uid(cfg.folder))["uid"]
            log.info(f"created Grafana folder {cfg.folder!r} ({uid})")
        for dashboard in load_dashboards(JSON_DIR, cfg.jaeger_url, cfg.kibana_url):
            reply = api.dashboard.update_dashboard({"dashboard": dashboard, "folderUid": uid, "overwrite": True,
                                                    "message": "gpulens dashboards import"})
            print(f"{dashboard['uid']}: {reply.get('status', 'ok')} version {reply.get('version', '?')} {reply.get('url', '')}")
    except GrafanaException as err:
        print(f"gpulens dashboards import: Grafana answered {err.status_code}: {err.message}")
        return 1
    except OSError as err:  # connection refused, DNS, TLS
        print(f"gpulens dashboards import: cannot reach {cfg.grafana_url}: {err}")
        return 1
    return 0


def main(cfg: DashboardsImportConfig) -> int:
    problems = []
    if not re.match(r"^https?://[^/]+", cfg.grafana_url):
        problems.append(f"grafana_url: must be an http(s) URL, got {cfg.grafana_url!r}")
    token = ""
    if not cfg.token_file:
        problems.append("token_file: required (a file holding a Grafana service-account token)")
    else:
        try:
            token = Path(cfg.token_file).read_text().strip()
        except OSError as err:
            problems.append(f"token_file: cannot read {cfg.token_file}: {err.strerror}")
        else:
            if not token:
                problems.append(f"token_file: {cfg.token_file} is empty")
    if problems:
        raise ConfigError(problems)
    return run(cfg, token)
