"""`python -m gpulens.dashboards.build [--check]`: render every `*.dashboard.py` to `dashboards/json/<name>.json`.

Each source defines `dashboard` (a grafanalib Dashboard). grafanalib 0.7 still writes fields from
Grafana's old JSON model (rows, style, span, nulls …); `normalise` removes them, so the output is
what Grafana's current schema describes (the tests validate that against @grafana/schema).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder

ROOT = Path(__file__).resolve().parent
JSON_DIR = ROOT / "json"
SCHEMA_VERSION = 42  # @grafana/schema 13.2's defaultDashboard.schemaVersion
# Legacy keys grafanalib writes that Grafana's current dashboard model no longer has.
_DASHBOARD_LEGACY = {"__inputs", "hideControls", "rows", "sharedCrosshair", "style"}
_PANEL_LEGACY = {"editable", "error", "height", "minSpan", "span", "alert", "dataSource", "thresholds", "timeFrom", "timeShift",
                 "cacheTimeout"}
_VARIABLE_LEGACY = {"useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count"}


def sources(directory: Path = ROOT) -> list[Path]:
    return sorted(directory.glob("*.dashboard.py"))


def load(path: Path) -> Any:
    """The `dashboard` object a source defines (sources have dots in their names, so no plain import)."""
    name = "gpulensdash_" + path.name.removesuffix(".dashboard.py").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dashboard


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _panel(panel: dict[str, Any]) -> dict[str, Any]:
    for key in _PANEL_LEGACY & panel.keys():
        del panel[key]
    if panel.get("type") == "row":
        for key in set(panel) - {"collapsed", "datasource", "gridPos", "id", "panels", "repeat", "title", "type"}:
            del panel[key]
        panel["panels"] = [_panel(p) for p in panel.get("panels", [])]
        return panel
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    if steps and "value" not in steps[0]:
        steps[0]["value"] = None  # the base step: Grafana's schema wants null there (meaning -Infinity)
    if panel.get("type") == "table":  # the Angular table's fields
        for key in ("color", "columns", "fontSize", "mappings", "showHeader", "sort", "styles"):
            panel.pop(key, None)
    panel.pop("maxDataPoints", None)  # grafanalib's 100 makes coarse graphs; Grafana derives it from the width
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    if defaults.get("noValue") == "none":  # grafanalib's default would print the word "none"
        del defaults["noValue"]
    options = panel.get("options", {})
    if panel.get("type") == "bargauge":
        for key in ("fieldOptions", "showThresholdLabels", "showThresholdMarkers"):
            options.pop(key, None)
    for target in panel.get("targets", []):
        for key in ("target", "metric", "step", "query"):  # graphite/old-editor fields
            target.pop(key, None)
    if panel.get("type") == "heatmap":  # grafanalib writes the Angular heatmap's options at the top level
        for key in ("cards", "color", "dataFormat", "heatmap", "hideZeroBuckets", "highlightCards", "legend", "reverseYBuckets",
                    "tooltip", "xAxis", "xBucketNumber", "xBucketSize", "yAxis", "yBucketBound", "yBucketNumber", "yBucketSize"):
            panel.pop(key, None)
    return panel


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """grafanalib's JSON → Grafana's current dashboard model (no nulls, no legacy fields, current schemaVersion)."""
    data = _drop_nulls(data)
    for key in _DASHBOARD_LEGACY & data.keys():
        del data[key]
    data["schemaVersion"] = SCHEMA_VERSION
    data.pop("id", None)  # a fixed uid identifies the dashboard; Grafana assigns ids
    data["panels"] = [_panel(p) for p in data.get("panels", [])]
    for variable in data.get("templating", {}).get("list", []):
        for key in _VARIABLE_LEGACY & variable.keys():
            del variable[key]
        current = variable.get("current", {})
        current.pop("tags", None)
        if current.get("value") == "$__all":  # how Grafana itself stores a selected "All"
            current.update(text=["All"], value=["$__all"]) if variable.get("multi") else current.update(text="All")
    for link in data.get("links", []):
        link.pop("dashUri", None)
        link.pop("dashboard", None)
    data.get("timepicker", {}).pop("nowDelay", None)
    data.get("timepicker", {}).pop("time_options", None)
    return data


def render(path: Path) -> dict[str, Any]:
    built = load(path)
    return normalise(json.loads(json.dumps(built.to_json_data(), cls=DashboardEncoder)))


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    return {JSON_DIR / (src.name.removesuffix(".dashboard.py") + ".json"): dump(render(src)) for src in sources()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file differs, write nothing")
    args = parser.parse_args(argv)
    stale = []
    expected = outputs()
    for path, text in expected.items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            JSON_DIR.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote dashboards/json/{path.name}")
    orphans = sorted(p.name for p in JSON_DIR.glob("*.json") if p not in expected) if JSON_DIR.exists() else []
    if orphans:
        stale += orphans
        if not args.check:
            for name in orphans:
                (JSON_DIR / name).unlink()
            stale = []
    if stale:
        print("out of date (run `make dashboards`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
