"""Grafana dashboards without a Grafana: each dashboard row's panel queries as one Prometheus graph link.

Reads the generated dashboard JSON (dashboards/json/*.json), groups panels under their rows (a
collapsed row holds its panels itself; otherwise a row owns the panels after it), and rewrites
Grafana's template variables into plain PromQL: a `label=~"$var"` matcher matches everything, a
variable with a fixed current value takes it, `$__rate_interval` and `$__interval` become a window
the local scrape interval can fill.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "__range_s": "3600", "__interval_ms": "60000"}
_VAR = r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]"
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    row: str
    panel: str
    expr: str  # with variables substituted: runnable as is


@dataclass(frozen=True)
class RowLink:
    dashboard: str
    row: str
    url: str
    queries: tuple[str, ...]


def _variables(dashboard: Mapping[str, Any]) -> dict[str, str | None]:
    """Template variable → its fixed value, or None when it stands for 'all' (or several, or unknown)."""
    out: dict[str, str | None] = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        name = var.get("name")
        if not name or var.get("type") == "datasource":
            continue
        current = (var.get("current") or {}).get("value")
        if var.get("type") in ("constant", "custom", "interval", "textbox") and isinstance(current, str) \
                and current not in ("$__all", "") and not var.get("includeAll") and not var.get("multi"):
            out[name] = current
        else:
            out[name] = None
    return out


def substitute(expr: str, variables: Mapping[str, str | None]) -> str:
    """Grafana's expression → plain PromQL (see the module docstring)."""

    def matcher(m: re.Match[str]) -> str:
        label, op, value = m.groups()
        names = [a or b or c for a, b, c in re.findall(_VAR, value)]
        if not names or any(variables.get(n) is not None or n in BUILTINS for n in names):
            return m.group(0)
        return f'{label}=~".*"' if op in ("=", "=~") else f'{label}!~"^$"'  # a negated 'all' matches everything set

    expr = _MATCHER.sub(matcher, expr)

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        fixed = variables.get(name)
        return fixed if fixed is not None else ".*"

    return re.sub(_VAR, value, expr)


def _panels(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(row title, panel) for every non-row panel, in order; panels before any row are in row ''."""
    row = ""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            row = panel.get("title") or ""
            for inner in panel.get("panels") or []:  # a collapsed row keeps its panels inside
                yield row, inner
        else:
            yield row, panel


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every Prometheus query of every panel, variables substituted."""
    variables = _variables(dashboard)
    title = dashboard.get("title") or dashboard.get("uid") or "?"
    out = []
    for row, panel in _panels(dashboard):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr and not target.get("hide"):
                out.append(PanelQuery(title, row, panel.get("title") or "", substitute(expr, variables)))
    return out


def graph_url(prometheus_url: str, queries: list[str], range_input: str = "30m") -> str:
    """Prometheus' own /graph page showing `queries`, one graph each."""
    params: list[tuple[str, str]] = []
    for i, expr in enumerate(queries):
        params += [(f"g{i}.expr", expr), (f"g{i}.tab", "0"), (f"g{i}.range_input", range_input)]
    return f"{prometheus_url.rstrip('/')}/graph?{urllib.parse.urlencode(params)}"


def row_links(dashboard: Mapping[str, Any], prometheus_url: str) -> list[RowLink]:
    """One link per dashboard row, with that row's panel queries."""
    rows: dict[str, list[str]] = {}
    for q in panel_queries(dashboard):
        rows.setdefault(q.row, []).append(q.expr)
    title = dashboard.get("title") or dashboard.get("uid") or "?"
    return [RowLink(title, row, graph_url(prometheus_url, exprs), tuple(exprs)) for row, exprs in rows.items()]


def load_dashboards(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every dashboard JSON in `folder`, by file name."""
    return [(path, json.loads(path.read_text(encoding="utf-8"))) for path in sorted(folder.glob("*.json"))]
