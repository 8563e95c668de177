"""compose.yaml and its Grafana provisioning, checked without a Docker engine.

compose.yaml is validated against the compose-spec JSON schema (vendored by check-jsonschema, from
PyPI); the Grafana provisioning files against their documented shape (grafana.com, "Provision
Grafana": datasources, dashboard providers, alerting contact points and policies), written down as
JSON schemas here; every gpulens command line in it is parsed by the real CLI; every file it mounts
exists; its Prometheus and Alertmanager configs are generated and pass promtool and amtool.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gpulens.cli import COMMANDS, build_parser
from gpulens.up import compose
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
PROVISIONING = ROOT / "deploy" / "compose" / "grafana" / "provisioning"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return dict(json.loads((vendor / "compose-spec.json").read_text(encoding="utf-8")))


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = _compose_schema()
    cls = jsonschema.validators.validator_for(schema)  # the draft the schema declares (2020-12 today)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_typo() -> None:
    """The validation is not hollow: an unknown service key fails."""
    doc = _compose()
    doc["services"]["grafana"]["portz"] = ["3000:3000"]
    schema = _compose_schema()
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc))


def test_compose_has_the_whole_suite() -> None:
    services = _compose()["services"]
    assert {"modelserver", "gpu-exporter", "kserve-exporter", "probe", "canary", "load", "pager", "prometheus", "alertmanager",
            "grafana", "jaeger", "elasticsearch", "kibana", "elk-setup"} <= set(services)
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {"127.0.0.1:4317:4317", "127.0.0.1:4318:4318"} <= set(services["jaeger"]["ports"])


def _command_lines(service: dict[str, Any]) -> list[list[str]]:
    """The `gpulens …` command lines of a service (a `sh -c` pipeline may hold several)."""
    command = service.get("command") or []
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("|")]
    return [list(command)]


def test_every_gpulens_command_line_parses_with_the_real_cli() -> None:
    parser, _ = build_parser()
    seen = set()
    for name, service in _compose()["services"].items():
        for argv in _command_lines(service):
            if not argv or argv[0] != "gpulens":
                continue
            if argv[1] not in COMMANDS:
                pytest.fail(f"service {name}: gpulens {argv[1]} is not a command of this build")
            ns, extra = parser.parse_known_args(argv[1:])
            assert extra == [], f"service {name}: unknown flags {extra}"
            seen.add(argv[1])
    assert "gpu-exporter" in seen


def test_every_mounted_file_exists() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"service {name} mounts {source}, which is not in the repo"
    dockerfile = ROOT / _compose()["x-gpulens"]["build"]["dockerfile"]
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which is not in the repo"


def test_generated_configs_are_current() -> None:
    for path, text in compose.files().items():
        assert path.read_text() == text, f"{path} is stale: run python -m gpulens.up.compose"


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    config["rule_files"] = [str(p) for p in sorted((ROOT / "alerts" / "rules").glob("*.yaml"))]  # the mounted folder
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_alertmanager_config_passes_amtool() -> None:
    amtool = require_tool("amtool")
    result = subprocess.run([amtool, "check-config", str(ROOT / "deploy" / "compose" / "alertmanager.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana provisioning: the documented shape ------------------------------------------------------------------
_DATASOURCE = {
    "type": "object",
    "required": ["name", "type"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"}, "type": {"type": "string"}, "uid": {"type": "string", "maxLength": 40},
        "access": {"enum": ["proxy", "direct"]}, "url": {"type": "string"}, "orgId": {"type": "integer"},
        "user": {"type": "string"}, "database": {"type": "string"}, "basicAuth": {"type": "boolean"},
        "basicAuthUser": {"type": "string"}, "withCredentials": {"type": "boolean"}, "isDefault": {"type": "boolean"},
        "jsonData": {"type": "object"}, "secureJsonData": {"type": "object"}, "version": {"type": "integer"},
        "editable": {"type": "boolean"},
    },
}
DATASOURCES = {
    "type": "object", "required": ["apiVersion"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": 1},
        "datasources": {"type": "array", "items": _DATASOURCE},
        "deleteDatasources": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "prune": {"type": "boolean"},
    },
}
DASHBOARD_PROVIDERS = {
    "type": "object", "required": ["apiVersion", "providers"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": 1},
        "providers": {"type": "array", "items": {
            "type": "object", "required": ["name", "type", "options"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string"}, "orgId": {"type": "integer"}, "folder": {"type": "string"},
                "folderUid": {"type": "string"}, "type": {"const": "file"}, "disableDeletion": {"type": "boolean"},
                "updateIntervalSeconds": {"type": "integer"}, "allowUiUpdates": {"type": "boolean"},
                "options": {"type": "object", "required": ["path"], "additionalProperties": False, "properties": {
                    "path": {"type": "string"}, "foldersFromFilesStructure": {"type": "boolean"}}},
            }}},
    },
}
ALERTING = {
    "type": "object", "required": ["apiVersion"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": 1},
        "groups": {"type": "array"}, "deleteRules": {"type": "array"}, "muteTimes": {"type": "array"},
        "templates": {"type": "array"}, "deleteContactPoints": {"type": "array"}, "resetPolicies": {"type": "array"},
        "contactPoints": {"type": "array", "items": {
            "type": "object", "required": ["name", "receivers"], "additionalProperties": False,
            "properties": {"orgId": {"type": "integer"}, "name": {"type": "string"}, "receivers": {"type": "array", "items": {
                "type": "object", "required": ["uid", "type", "settings"], "additionalProperties": False,
                "properties": {"uid": {"type": "string"}, "type": {"type": "string"}, "settings": {"type": "object"},
                               "disableResolveMessage": {"type": "boolean"}}}}}}},
        "policies": {"type": "array", "items": {
            "type": "object", "required": ["receiver"],
            "properties": {"orgId": {"type": "integer"}, "receiver": {"type": "string"}, "group_by": {"type": "array"},
                           "group_wait": {"type": "string"}, "group_interval": {"type": "string"},
                           "repeat_interval": {"type": "string"}, "routes": {"type": "array"}}}},
    },
}
_SCHEMAS = {"datasources": DATASOURCES, "dashboards": DASHBOARD_PROVIDERS, "alerting": ALERTING}


def _provisioning_files() -> list[Path]:
    return sorted(PROVISIONING.glob("*/*.yaml"))


@pytest.mark.parametrize("path", _provisioning_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_grafana_provisioning_file_has_the_documented_shape(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    errors = list(jsonschema.Draft7Validator(_SCHEMAS[path.parent.name]).iter_errors(doc))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_provisioning_schema_catches_a_typo() -> None:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "gpulens.yaml").read_text())
    doc["datasources"][0]["isDefualt"] = True
    assert list(jsonschema.Draft7Validator(DATASOURCES).iter_errors(doc))


def test_grafana_rules_file_mounted_into_provisioning_is_alerting_shaped() -> None:
    rules = ROOT / "alerts" / "grafana" / "rules.yaml"
    doc = yaml.safe_load(rules.read_text())
    errors = list(jsonschema.Draft7Validator(ALERTING).iter_errors(doc))
    assert not errors and doc.get("groups"), errors
    uids = {ds["uid"] for ds in yaml.safe_load((PROVISIONING / "datasources" / "gpulens.yaml").read_text())["datasources"]}
    for group in doc["groups"]:
        for rule in group["rules"]:
            for query in rule["data"]:
                # "__expr__" (and its legacy alias "-100", which grafanalib writes) is Grafana's expression engine
                assert query["datasourceUid"] in uids | {"__expr__", "-100"}, (rule["title"], query["datasourceUid"])


def test_datasources_link_exemplars_traces_and_logs() -> None:
    sources = {ds["uid"]: ds for ds in yaml.safe_load((PROVISIONING / "datasources" / "gpulens.yaml").read_text())["datasources"]}
    assert {ds["type"] for ds in sources.values()} >= {"prometheus", "jaeger", "elasticsearch"}
    prometheus = sources["prometheus"]["jsonData"]
    assert prometheus["exemplarTraceIdDestinations"][0]["datasourceUid"] == "jaeger"
    assert sources["jaeger"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "elasticsearch"
    assert sources["elasticsearch"]["jsonData"]["dataLinks"][0]["datasourceUid"] == "jaeger"
    # Grafana expands $VAR / ${VAR} in provisioning files; its own ${__…} variables must be written $${__…}.
    text = (PROVISIONING / "datasources" / "gpulens.yaml").read_text()
    assert not re.search(r"(?<!\$)\$\{__", text)


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "gpulens.yaml").read_text())["providers"][0]
    mounts = _compose()["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts


def test_grafana_home_dashboard_is_one_we_ship() -> None:
    grafana = _compose()["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "gpulens.yaml").read_text())["providers"][0]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (ROOT / "dashboards" / "json" / home.rsplit("/", 1)[1]).is_file()
