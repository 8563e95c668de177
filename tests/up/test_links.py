"""Dashboard rows → Prometheus graph links: rows grouped as Grafana shows them, variables made plain PromQL."""

from __future__ import annotations

import urllib.parse
from typing import Any

from gpulens.up.links import graph_url, panel_queries, row_links, substitute

DASHBOARD: dict[str, Any] = {
    "title": "GPU fleet",
    "templating": {"list": [
        {"name": "datasource", "type": "datasource"},
        {"name": "node", "type": "query", "includeAll": True, "multi": True, "current": {"value": ["$__all"]}},
        {"name": "quantile", "type": "custom", "current": {"value": "0.99"}},
    ]},
    "panels": [
        {"type": "stat", "title": "GPUs", "targets": [{"expr": 'count(gpulens_gpu_info{node=~"$node"})'}]},
        {"type": "row", "title": "Utilization", "collapsed": False, "panels": []},
        {"type": "timeseries", "title": "Util", "targets": [
            {"expr": 'avg by (gpu) (gpulens_gpu_utilization_ratio{node=~"$node"})'},
            {"expr": "hidden", "hide": True}]},
        {"type": "timeseries", "title": "Power", "targets": [{"expr": "rate(gpulens_gpu_energy_joules_total[$__rate_interval])"}]},
        {"type": "row", "title": "Latency", "collapsed": True, "panels": [
            {"type": "timeseries", "title": "p", "targets": [
                {"expr": "histogram_quantile($quantile, rate(x_bucket{node!=\"${node}\"}[$__interval]))"}]}]},
        {"type": "text", "title": "notes"},
    ],
}


def test_variables_become_plain_promql() -> None:
    variables = {"node": None, "quantile": "0.99"}
    assert substitute('up{node=~"$node", job="x"}', variables) == 'up{node=~".*", job="x"}'
    assert substitute('up{node="[[node]]"}', variables) == 'up{node=~".*"}'
    assert substitute('up{node!="${node}"}', variables) == 'up{node!~"^$"}'
    assert substitute("histogram_quantile($quantile, rate(x[$__rate_interval]))", variables) == \
        "histogram_quantile(0.99, rate(x[1m]))"


def test_panels_are_grouped_under_their_rows() -> None:
    queries = panel_queries(DASHBOARD)
    assert [(q.row, q.panel) for q in queries] == [("", "GPUs"), ("Utilization", "Util"), ("Utilization", "Power"),
                                                   ("Latency", "p")]
    assert queries[3].expr == 'histogram_quantile(0.99, rate(x_bucket{node!~"^$"}[1m]))'


def test_one_graph_link_per_row_with_each_query() -> None:
    links = row_links(DASHBOARD, "http://127.0.0.1:9090/")
    assert [link.row for link in links] == ["", "Utilization", "Latency"]
    url = urllib.parse.urlsplit(links[1].url)
    assert url.path == "/graph"
    params = urllib.parse.parse_qs(url.query)
    assert params["g0.expr"] == ['avg by (gpu) (gpulens_gpu_utilization_ratio{node=~".*"})']
    assert params["g1.expr"] == ["rate(gpulens_gpu_energy_joules_total[1m])"]
    assert params["g0.tab"] == ["0"]


def test_graph_url_escapes_the_query() -> None:
    assert graph_url("http://p:9090", ['a{b="c d"}']).startswith("http://p:9090/graph?g0.expr=a%7Bb%3D%22c+d%22%7D&")
