"""Probe & SLO: the outside view of each model, SLO burn rates and budgets, and the GPU canary."""

from gpulens.alerts import slo
from gpulens.alerts.rule import selector as s
from gpulens.dashboards import panels as p
from gpulens.dashboards.uids import FLEET, INFERENCE, NODE, PROBE
from gpulens.metrics import canary, probe

T = {"target": "~$target", "model": "~$model"}
SLO = {"slo": "~$slo"}
RATE = "[$__rate_interval]"
LT = "{{model}} @ {{target}}"
TRACES = [p.JAEGER_TRACE]

variables = [
    p.query_variable("target", "Target", f"label_values({probe.SUCCESS.name}, target)"),
    p.query_variable("model", "Model", f'label_values({s(probe.SUCCESS.name, target="~$target")}, model)'),
    p.query_variable("slo", "SLO", f"label_values({slo.OBJECTIVE}, slo)"),
    p.query_variable("gpu", "Canary GPU", f"label_values({canary.SUCCESS.name}, gpu)"),
]


def quantile(qv: float, family: str, by: str = "target, model") -> str:
    return f"histogram_quantile({qv}, sum by ({by}, le) (rate({s(family + '_bucket', **T)}{RATE})))"


def burn(window: str) -> str:
    """Burn rate: the error ratio over `window` as a multiple of the error budget."""
    return f"{s(slo.ERRORS.format(window), **SLO)} / on(slo, objective) (1 - {s(slo.OBJECTIVE, **SLO)})"


rows = [
    ("Probe", [
        (p.state_timeline("Probe success", [p.q(s(probe.SUCCESS.name, **T), LT)], "1 if the last probe got a valid answer.",
                          steps=((None, "red"), (1, "green"))), 12),
        (p.timeseries("Failures by reason", [p.q(f"sum by (target, reason) (rate({s(probe.FAILURES.name, **T)}{RATE}))",
                                                 "{{target}} {{reason}}")], "ops", "Failed probes per second by reason.",
                      minimum=0), 6),
        (p.stat("HTTP status", [p.q(s(probe.HTTP_STATUS.name, **T), LT)], "none", "Status of the last probe.",
                steps=((None, "green"), (400, "orange"), (500, "red"))), 6),
        (p.timeseries("End-to-end latency (exemplars link to traces)", [
            p.q(quantile(0.5, probe.DURATION.name), LT + " p50", exemplar=True),
            p.q(quantile(0.95, probe.DURATION.name), LT + " p95", exemplar=True),
            p.q(quantile(0.99, probe.DURATION.name), LT + " p99", exemplar=True),
        ], "s", "Probe duration quantiles; each exemplar dot carries the probe's trace_id and opens it in Jaeger.",
            minimum=0, links=TRACES), 12),
        (p.timeseries("Latency by phase (p95)", [
            p.q(quantile(0.95, probe.PHASE_DURATION.name, "phase"), "{{phase}}", exemplar=True),
        ], "s", "Where the time goes: connect, tls, write, server, read, decode.", minimum=0, links=TRACES,
            stacking={"mode": "normal"}), 12),
        (p.timeseries("Time to first token (LLM, p95)", [p.q(quantile(0.95, probe.TTFT.name), LT, exemplar=True)], "s",
                      "Time from request start to the first streamed token.", minimum=0, links=TRACES), 8),
        (p.timeseries("Output tokens per second (LLM)", [p.q(s(probe.TOKENS_PER_SECOND.name, **T), LT)], "none",
                      "Streaming throughput of the last probe.", minimum=0), 8),
        (p.timeseries("Server-Timing", [p.q(s(probe.SERVER_TIMING.name, **T), LT + " {{metric}}")], "s",
                      "Durations the server reported in its Server-Timing header.", minimum=0), 8),
    ]),
    ("SLOs", [
        (p.table("Objectives", [p.q(s(slo.OBJECTIVE, **SLO), table=True)], "percentunit", "Each SLO's objective."), 8),
        (p.timeseries("Burn rate (1h and 6h)", [
            p.q(burn("1h"), "{{slo}} {{objective}} 1h"), p.q(burn("6h"), "{{slo}} {{objective}} 6h"),
        ], "none", "Error ratio as a multiple of the budget: 14.4 over 1h and 6 over 6h page.", minimum=0,
            steps=((None, "green"), (6, "orange"), (14.4, "red"))), 8),
        (p.stat("Error budget remaining (30d)", [
            p.q(f"1 - {s(slo.ERRORS.format('30d'), **SLO)} / on(slo, objective) (1 - {s(slo.OBJECTIVE, **SLO)})",
                "{{slo}} {{objective}}"),
        ], "percentunit", "Share of the 30-day error budget left.", steps=((None, "red"), (0.25, "orange"), (0.5, "green"))), 8),
    ]),
    ("GPU canary", [
        (p.timeseries("TFLOP/s against expected", [p.q(s(canary.MATMUL_RATIO.name, gpu="~$gpu"), "GPU {{gpu}}")], "percentunit",
                      "Achieved matmul FLOP/s over the figure expected for the GPU model.", minimum=0,
                      steps=((None, "red"), (0.7, "orange"), (0.9, "green")), links=[p.node_dashboard_link(NODE)]), 8),
        (p.timeseries("Matmul FLOP/s", [p.q(s(canary.MATMUL_FLOPS.name, gpu="~$gpu"), "GPU {{gpu}} {{dtype}}")], "flops",
                      "Achieved dense matmul throughput per dtype.", minimum=0), 8),
        (p.state_timeline("Canary success", [p.q(s(canary.SUCCESS.name, gpu="~$gpu"), "GPU {{gpu}}")],
                          "1 if the last canary run completed and verified its result.", steps=((None, "red"), (1, "green"))), 8),
        (p.timeseries("Canary phases", [p.q(s(canary.PHASE_DURATION.name, gpu="~$gpu"), "GPU {{gpu}} {{phase}}")], "s",
                      "Duration of each canary phase (h2d, matmul, conv, d2h).", minimum=0), 12),
        (p.timeseries("Copy bandwidth", [p.q(s(canary.COPY_BYTES.name, gpu="~$gpu"), "GPU {{gpu}} {{direction}}")], "Bps",
                      "Host↔device copy rate.", minimum=0), 12),
    ]),
]

dashboard = p.dashboard(PROBE, "gpulens / Probe & SLO", "The probe's outside view, SLO burn rates and budgets, and the GPU canary.",
                        variables, p.layout(rows),
                        [p.dashboard_link(INFERENCE, "Inference Services"), p.dashboard_link(FLEET, "GPU Fleet")])
