"""The conventions every gpulens dashboard follows, as small constructors over grafanalib.

- one `${datasource}` variable (type prometheus) on every panel and every target;
- chained variables (cluster → node → gpu, namespace → inferenceservice → model) with `.*` for All;
- a unit and thresholds on every panel; data links to Jaeger and Kibana built from the
  `jaeger_url` / `kibana_url` textbox variables, so one Grafana can point them elsewhere;
- metric names only from the catalogue (`gpulens.metrics`), never typed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attr
import grafanalib.core as G

from gpulens.elk.kibana import DATA_VIEW_ID

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JAEGER_URL = "http://jaeger-query.observability.svc:16686"
KIBANA_URL = "http://kibana.logging.svc:5601"
GRID_WIDTH = 24


@attr.s
class PromTarget(G.Target):  # type: ignore[misc]
    """A Prometheus query; grafanalib's Target has no `exemplar` field."""

    exemplar: bool = attr.ib(default=False)

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        data["exemplar"] = self.exemplar
        data["editorMode"] = "code"
        data["range"] = not self.instant
        return data


def q(expr: str, legend: str = "", instant: bool = False, exemplar: bool = False, table: bool = False) -> PromTarget:
    """One query; refIds are assigned by `panel()` in order."""
    fields: dict[str, Any] = dict(expr=expr, legendFormat=legend, instant=instant or table, exemplar=exemplar,
                                  format="table" if table else "time_series", datasource=DATASOURCE, intervalFactor=1)
    return PromTarget(**fields)  # grafanalib's attrs fields are invisible to mypy


# --- variables -----------------------------------------------------------------------------------

def datasource_variable() -> G.Template:
    return G.Template(name="datasource", label="Data source", type="datasource", query="prometheus", default="Prometheus",
                      hide=0)


def query_variable(name: str, label: str, query: str, multi: bool = True, include_all: bool = True,
                   all_value: str = ".*") -> G.Template:
    """`label_values(...)` over the datasource; All means `.*` so series without the label still match
    (`.+` where only labelled series belong, e.g. namespaces of attributed GPUs)."""
    return G.Template(name=name, label=label, query=query, dataSource=DATASOURCE, type="query", refresh=2, sort=1,
                      multi=multi, includeAll=include_all, allValue=all_value if include_all else None,
                      default="$__all" if include_all else "")


def textbox_variable(name: str, label: str, default: str) -> G.Template:
    """Hidden textbox holding a base URL for data links; set it per Grafana (or in the JSON's `query`)."""
    return G.Template(name=name, label=label, query=default, type="textbox", default=default, hide=2)


def link_variables() -> list[G.Template]:
    return [textbox_variable("jaeger_url", "Jaeger URL", JAEGER_URL), textbox_variable("kibana_url", "Kibana URL", KIBANA_URL)]


# --- links ---------------------------------------------------------------------------------------

def dashboard_link(uid: str, title: str) -> G.DashboardLink:
    """A link to another gpulens dashboard that keeps the time range and every variable."""
    return G.DashboardLink(title=title, uri=f"/d/{uid}", type="link", keepTime=True, includeVars=True, icon="dashboard")


def kibana_logs_link(title: str, filters: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A Discover URL on gpulens' event data view over the dashboard's time range, filtered on the
    events' ECS fields from the clicked series' labels."""
    kuery = " and ".join(f'{field}:"${{__field.labels.{label}}}"' for field, label in filters)
    url = ("${kibana_url}/app/discover#/?_g=(time:(from:'${__from:date:iso}',to:'${__to:date:iso}'))"
           f"&_a=(index:'{DATA_VIEW_ID}',query:(language:kuery,query:'{kuery}'))")
    return {"title": title, "url": url, "targetBlank": True}


# gpulens events name the node in host.name and the GPU's holder in workload.* (gpulens.events).
NODE_LOGS = kibana_logs_link("Node events in Kibana", [("host.name", "node")])
POD_LOGS = kibana_logs_link("Pod's GPU events in Kibana", [("workload.namespace", "namespace"), ("workload.pod", "pod")])
JAEGER_TRACE: dict[str, Any] = {"title": "Trace in Jaeger", "url": "${jaeger_url}/trace/${__data.fields.trace_id}", "targetBlank": True}


def node_dashboard_link(uid: str) -> dict[str, str]:
    return {"title": "GPU detail", "url": f"/d/{uid}?${{__url_time_range}}&${{datasource:queryparam}}"
                                          "&var-node=${__field.labels.node}&var-gpu=${__field.labels.gpu}"}


# --- panels --------------------------------------------------------------------------------------

def _thresholds(steps: Sequence[tuple[float | None, str]]) -> list[dict[str, Any]]:
    # Dicts, not grafanalib's Threshold: it writes `"value": "null"` as a string for the base step.
    return [{"color": color, "value": value} for value, color in steps]


GREEN = ((None, "green"),)
_LEGEND = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
_TOOLTIP = {"mode": "multi", "sort": "desc"}
_REDUCE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
# Complete options per panel plugin: @grafana/schema marks these required (Grafana fills them in on load).
OPTIONS: dict[str, dict[str, Any]] = {
    "timeseries": {"legend": _LEGEND, "tooltip": _TOOLTIP},
    "stat": {"colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
             "percentChangeColorMode": "standard", "reduceOptions": _REDUCE, "showPercentChange": False, "textMode": "auto",
             "wideLayout": True},
    "table": {"frameIndex": 0, "showHeader": True, "cellHeight": "sm"},
    "heatmap": {"calculate": False, "cellGap": 1, "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "reverse": False,
                                                             "scale": "exponential", "scheme": "Oranges", "steps": 64},
                "exemplars": {"color": "rgba(255,0,255,0.7)"}, "legend": {"show": True}, "rowsFrame": {"layout": "auto"},
                "showValue": "never", "tooltip": {"mode": "single", "yHistogram": False}, "yAxis": {"axisPlacement": "left"}},
    "state-timeline": {"alignValue": "left", "legend": _LEGEND, "mergeValues": True, "rowHeight": 0.9, "showValue": "never",
                       "tooltip": _TOOLTIP},
    "bargauge": {"displayMode": "gradient", "legend": {**_LEGEND, "showLegend": False}, "maxVizHeight": 300, "minVizHeight": 16,
                 "minVizWidth": 8, "namePlacement": "auto", "orientation": "horizontal", "reduceOptions": _REDUCE,
                 "showUnfilled": True, "sizing": "auto", "valueMode": "color"},
}


def panel(kind: str, title: str, targets: Sequence[PromTarget], unit: str, description: str,
          steps: Sequence[tuple[float | None, str]] = GREEN, links: Sequence[dict[str, Any]] = (),
          minimum: float | None = None, maximum: float | None = None, options: dict[str, Any] | None = None,
          **extra: Any) -> G.Panel:
    """A panel of `kind` (timeseries, stat, table, heatmap, state-timeline, bargauge) with the conventions applied."""
    refs = "ABCDEFGHIJ"
    for i, t in enumerate(targets):
        t.refId = refs[i]
    common: dict[str, Any] = dict(title=title, description=description, dataSource=DATASOURCE, targets=list(targets))
    field: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": _thresholds(steps)}, "links": list(links)}
    if minimum is not None:
        field["min"] = minimum
    if maximum is not None:
        field["max"] = maximum
    cls = {"timeseries": G.TimeSeries, "stat": G.Stat, "table": G.Table, "heatmap": G.Heatmap,
           "state-timeline": G.StateTimeline, "bargauge": G.BarGauge}[kind]
    built = cls(**common, **extra)
    built.extraJson = {"fieldConfig": {"defaults": field, "overrides": []}, "options": {**OPTIONS[kind], **(options or {})}}
    return built


def timeseries(title: str, targets: Sequence[PromTarget], unit: str, description: str, **kw: Any) -> G.Panel:
    return panel("timeseries", title, targets, unit, description, **kw)


def stat(title: str, targets: Sequence[PromTarget], unit: str, description: str, **kw: Any) -> G.Panel:
    return panel("stat", title, targets, unit, description, **kw)


def table(title: str, targets: Sequence[PromTarget], unit: str, description: str, **kw: Any) -> G.Panel:
    return panel("table", title, targets, unit, description, **kw)


def state_timeline(title: str, targets: Sequence[PromTarget], description: str, **kw: Any) -> G.Panel:
    return panel("state-timeline", title, targets, "none", description, **kw)


def heatmap(title: str, targets: Sequence[PromTarget], unit: str, description: str, **kw: Any) -> G.Panel:
    return panel("heatmap", title, targets, unit, description, **kw)


def bargauge(title: str, targets: Sequence[PromTarget], unit: str, description: str, **kw: Any) -> G.Panel:
    return panel("bargauge", title, targets, unit, description, **kw)


def row(title: str) -> G.RowPanel:
    return G.RowPanel(title=title)


def layout(rows: Sequence[tuple[str, Sequence[tuple[G.Panel, int]]]], height: int = 8) -> list[G.Panel]:
    """Rows of (panel, width) placed left to right; a row header before each; widths of a row sum to ≤ 24."""
    out: list[G.Panel] = []
    y = 0
    for title, panels in rows:
        header = row(title)
        header.gridPos = G.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)
        out.append(header)
        y += 1
        x = 0
        for p, w in panels:
            if x + w > GRID_WIDTH:
                x, y = 0, y + height
            p.gridPos = G.GridPos(h=height, w=w, x=x, y=y)
            x += w
            out.append(p)
        y += height
    return out


def dashboard(uid: str, title: str, description: str, variables: Sequence[G.Template], panels: list[G.Panel],
              links: Sequence[G.DashboardLink], tags: Sequence[str] = ("gpulens",)) -> G.Dashboard:
    return G.Dashboard(
        uid=uid, title=title, description=description, tags=list(tags), timezone="browser", refresh="30s",
        templating=G.Templating(list=[datasource_variable(), *variables, *link_variables()]),
        panels=panels, links=list(links), time=G.Time("now-6h", "now"), graphTooltip=1,
    ).auto_panel_ids()
