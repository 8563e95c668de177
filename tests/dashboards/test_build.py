"""The generated dashboards: in sync with their sources, valid against Grafana's published schema
(@grafana/schema, via `make grafana-schema`), and following the conventions: datasource variable
everywhere, every referenced variable defined, fixed unique uids, links that resolve, units set,
no stray nulls."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gpulens.dashboards import build, uids
from gpulens.dashboards.panels import DATASOURCE

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / ".cache" / "grafana-schema"
DASHBOARDS = {p.name: json.loads(p.read_text()) for p in sorted(build.JSON_DIR.glob("*.json"))}
BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__range_s", "__from", "__to", "__field", "__data", "__url_time_range",
                "__all"}
EXPECTED_UIDS = {"gpu-fleet.json": uids.FLEET, "gpu-node.json": uids.NODE, "inference.json": uids.INFERENCE,
                 "probe-slo.json": uids.PROBE}


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def _schema(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / name
    if not path.exists():
        message = f"{path} missing: run `make grafana-schema` (npm @grafana/schema → JSON Schema)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(path.read_text())


def test_generated_json_is_in_sync() -> None:
    assert build.main(["--check"]) == 0, "run `make dashboards`"


def test_one_json_per_source_with_a_fixed_uid() -> None:
    assert {src.name.removesuffix(".dashboard.py") + ".json" for src in build.sources()} == set(DASHBOARDS)
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == EXPECTED_UIDS
    assert len({d["uid"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_validates_against_grafanas_dashboard_schema(name: str) -> None:
    schema = _schema("dashboard.schema.json")
    d = DASHBOARDS[name]
    assert d["schemaVersion"] == build.SCHEMA_VERSION
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in jsonschema.Draft7Validator(schema).iter_errors(d)]
    # A panel is Panel | RowPanel (anyOf): validate each against its own definition for a precise message.
    for panel in d["panels"]:
        kind = "RowPanel" if panel["type"] == "row" else "Panel"
        sub = {"$ref": f"#/definitions/{kind}", "definitions": schema["definitions"]}
        errors += [f"{panel['title']}: {e.message[:200]}" for e in jsonschema.Draft7Validator(sub).iter_errors(panel)]
    assert not errors, errors[:10]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panel_options_validate_against_the_panel_plugin_schema(name: str) -> None:
    errors = []
    for panel in _panels(DASHBOARDS[name]):
        schema = _schema(f"panel-{panel['type']}.schema.json")
        errors += [f"{panel['title']}: {e.message[:200]}" for e in jsonschema.Draft7Validator(schema).iter_errors(panel["options"])]
    assert not errors, errors[:10]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_panel_and_target_uses_the_datasource_variable(name: str) -> None:
    d = DASHBOARDS[name]
    (ds,) = [v for v in d["templating"]["list"] if v["name"] == "datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for panel in _panels(d):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"], panel["title"]
    for var in d["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_referenced_variable_exists(name: str) -> None:
    d = DASHBOARDS[name]
    defined = {v["name"] for v in d["templating"]["list"]} | BUILTIN_VARS
    text = json.dumps(d["panels"]) + json.dumps(d["templating"]) + json.dumps(d["links"])
    used = set(re.findall(r"\$\{?(\w+)", text)) - {"1"}  # $1: label_replace's capture group
    assert used <= defined, sorted(used - defined)


def test_variables_are_chained() -> None:
    node = {v["name"]: v["query"] for v in DASHBOARDS["gpu-node.json"]["templating"]["list"] if v["type"] == "query"}
    assert "$cluster" in node["node"] and "$node" in node["gpu"]
    inf = {v["name"]: v["query"] for v in DASHBOARDS["inference.json"]["templating"]["list"] if v["type"] == "query"}
    assert "$namespace" in inf["inferenceservice"] and "$inferenceservice" in inf["model"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_links_resolve_to_generated_dashboards_and_carry_variables(name: str) -> None:
    d = DASHBOARDS[name]
    known = {x["uid"] for x in DASHBOARDS.values()}
    assert d["links"], "each dashboard links to the others"
    for link in d["links"]:
        target = re.fullmatch(r"/d/([\w-]+)", link["url"])
        assert target and target.group(1) in known and target.group(1) != d["uid"], link
        assert link["includeVars"] and link["keepTime"]
    for panel in _panels(d):
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            if link["url"].startswith("/d/"):
                assert link["url"].split("?")[0][3:] in known, link
                assert "var-" in link["url"], link
            else:
                assert link["url"].startswith(("${kibana_url}", "${jaeger_url}")), link


def test_data_links_reach_jaeger_and_kibana() -> None:
    links = [lk["url"] for d in DASHBOARDS.values() for p in _panels(d) for lk in p["fieldConfig"]["defaults"].get("links", [])]
    assert any(u.startswith("${jaeger_url}/trace/") for u in links)
    assert any("${kibana_url}/app/discover" in u and "host.name:\"${__field.labels.node}\"" in u for u in links)
    assert all("index:'gpulens-logs'" in u for u in links if "/app/discover" in u)  # the data view elk/ ships
    assert any("${__field.labels.pod}" in u for u in links)
    exemplar_panels = [p for d in DASHBOARDS.values() for p in _panels(d) if any(t.get("exemplar") for t in p["targets"])]
    assert exemplar_panels and all(any("${jaeger_url}" in lk["url"] for lk in p["fieldConfig"]["defaults"]["links"])
                                   for p in exemplar_panels)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_units_thresholds_and_layout(name: str) -> None:
    d = DASHBOARDS[name]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(d):
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{panel['title']}: no unit"
        assert defaults["thresholds"]["steps"], f"{panel['title']}: no thresholds"
        assert panel.get("description"), f"{panel['title']}: no description"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
    cells = set()
    for panel in d["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def _nulls(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _nulls(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _nulls(v, f"{path}/{i}")]
    return []


@pytest.mark.parametrize("name", DASHBOARDS)
def test_no_null_except_the_base_threshold(name: str) -> None:
    stray = [n for n in _nulls(DASHBOARDS[name]) if not re.search(r"/thresholds/steps/0/value$", n)]
    assert not stray, stray[:10]
