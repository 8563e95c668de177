"""Every panel query of every generated dashboard, run against the real Prometheus of the session stack.

A panel whose query returns nothing fails, unless the panel reads a family whose exporter has not
landed yet: those are listed in PENDING_EXPORTER, must really depend on that exporter's families,
and must still parse in Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gpulens.metrics import families
from tests.gpulens_stack import Stack

JSON_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "json"
# (dashboard uid, panel title) → the component whose exporter is still being built.
PENDING_EXPORTER: dict[tuple[str, str], str] = {
    # The KServe exporter runs in the stack against the real KServe Python server, which has no
    # queue, in-flight or LLM figures (Triton, the queue-proxy and vLLM have them).
    **{("gpulens-inference", t): "kserve" for t in (
        "In flight and queued", "Queue vs compute time per request", "Time to first token p95 (LLM)", "KV cache usage (LLM)")},
    # The stack's probe targets the v2 classifier and the broken model, not an LLM.
    **{("gpulens-probe-slo", t): "probe" for t in ("Time to first token (LLM, p95)", "Output tokens per second (LLM)")},
    # The stack's canary runs on the CPU, which has no expected figure to compare with.
    ("gpulens-probe-slo", "TFLOP/s against expected"): "canary",
}
# What Grafana would put in for each variable on the test stack (All is `.*`).
VALUES = {"node": "gpu-node-1"}
MIG_NODE = {"MIG instances", "MIG memory"}  # single-node panels about MIG look at the MIG node
BUILTINS = {"$__rate_interval": "30s", "$__range_s": "300", "$__range": "5m", "$__interval": "15s"}


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))]


def _panels() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, p) for d in _dashboards() for p in d["panels"] if p["type"] != "row"]


def interpolate(expr: str, dashboard: dict[str, Any], values: dict[str, str] = VALUES) -> str:
    for key, value in BUILTINS.items():
        expr = expr.replace(key, value)
    for var in dashboard["templating"]["list"]:
        expr = expr.replace(f"${var['name']}", values.get(var["name"], var.get("allValue", ".*")))
    assert "$" not in expr.replace("$1", ""), f"uninterpolated variable in {expr}"
    return expr


_RECORDS: dict[str, str] = {}


def _rule_dependencies(stack: Stack) -> dict[str, str]:
    """Recording rule name → its expression, from the rules Prometheus loaded."""
    import yaml

    if _RECORDS:
        return _RECORDS
    out = _RECORDS
    for text in stack.rules.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    out[rule["record"]] = out.get(rule["record"], "") + "\n" + rule["expr"]
    return out


def _reads_component(expr: str, component: str, records: dict[str, str], depth: int = 0) -> bool:
    names = {f.name for f in families(component)}
    if any(re.search(rf"\b{re.escape(n)}(_bucket|_count|_sum)?\b", expr) for n in names):
        return True
    return depth < 3 and any(_reads_component(records[r], component, records, depth + 1)
                             for r in records if re.search(rf"(?<![\w:]){re.escape(r)}(?![\w:])", expr))


@pytest.mark.parametrize(("dashboard", "panel"), _panels(), ids=lambda x: x.get("uid") or x.get("title"))
def test_panel_queries_return_labelled_data(gpulens_stack: Stack, dashboard: dict[str, Any], panel: dict[str, Any]) -> None:
    pending = PENDING_EXPORTER.get((dashboard["uid"], panel["title"]))
    records = _rule_dependencies(gpulens_stack)
    for target in panel["targets"]:
        expr = interpolate(target["expr"], dashboard, {"node": "gpu-node-5"} if panel["title"] in MIG_NODE else VALUES)
        result = gpulens_stack.prometheus.query(expr)  # raises unless Prometheus parsed and ran it
        if pending:
            assert _reads_component(target["expr"], pending, records), f"{panel['title']}: listed as pending {pending} but reads none of it"
            continue
        assert result, f"{dashboard['uid']} / {panel['title']}: no data for {expr}"
        for label in re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")):
            missing = [r["metric"] for r in result if label not in r["metric"]]
            assert not missing, f"{panel['title']}: legend uses {label}, absent from {missing[:2]}"


def test_pending_list_names_real_panels() -> None:
    titles = {(d["uid"], p["title"]) for d, p in _panels()}
    assert set(PENDING_EXPORTER) <= titles, sorted(set(PENDING_EXPORTER) - titles)


@pytest.mark.parametrize("dashboard", _dashboards(), ids=lambda d: d["uid"])
def test_gpu_variables_have_values(gpulens_stack: Stack, dashboard: dict[str, Any]) -> None:
    """The GPU-side variable queries (label_values) find values; the exporters' ones wait for them."""
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
        assert m, var["query"]
        selector, label = interpolate(m.group(1), dashboard), m.group(2)
        values = gpulens_stack.prometheus.api(f"label/{label}/values", **{"match[]": selector})
        if _reads_component(m.group(1), "gpu", {}) or "gpulens:" in m.group(1):
            assert values, f"{dashboard['uid']}: variable {var['name']} has no values ({var['query']})"
