"""The inference probe's families: blackbox_exporter style, protocol-aware, with trace-id exemplars."""

from __future__ import annotations

from gpulens.metrics.family import Family

TARGET = ("target", "model", "protocol")

SUCCESS = Family("gpulens_probe_success", "gauge", "1 if the last probe of the target succeeded (status, decode and expectations).",
                 TARGET, "", "probe")
FAILURES = Family("gpulens_probe_failures_total", "counter",
                  "Failed probes by reason (timeout|connect|tls|http_4xx|http_5xx|decode|validation|stream_broken|"
                  "empty_output|finish_reason_error).", TARGET + ("reason",), "", "probe")
DURATION = Family("gpulens_probe_duration_seconds", "histogram",
                  "End-to-end probe duration; exemplars carry the probe's trace_id (OpenMetrics).", TARGET, "", "probe")
PHASE_DURATION = Family("gpulens_probe_phase_duration_seconds", "histogram",
                        "Probe duration per phase (connect|tls|write|server|read|decode); exemplars carry trace_id.",
                        TARGET + ("phase",), "", "probe")
SERVER_TIMING = Family("gpulens_probe_server_timing_seconds", "gauge",
                       "Last server-reported duration per Server-Timing metric name.", TARGET + ("metric",), "", "probe")
HTTP_STATUS = Family("gpulens_probe_http_status_code", "gauge", "HTTP status of the last probe (0 if none).", TARGET, "", "probe")
LAST_SUCCESS = Family("gpulens_probe_last_success_timestamp_seconds", "gauge", "When the target last probed successfully.",
                      TARGET, "", "probe")
TTFT = Family("gpulens_probe_time_to_first_token_seconds", "histogram",
              "LLM probes: time from request start to the first streamed token; exemplars carry trace_id.", TARGET, "", "probe")
ITL = Family("gpulens_probe_inter_token_latency_seconds", "histogram", "LLM probes: time between streamed tokens.",
             TARGET, "", "probe")
TOKENS_PER_SECOND = Family("gpulens_probe_output_tokens_per_second", "gauge", "LLM probes: output tokens per second of the last probe.",
                           TARGET, "", "probe")
TOKENS = Family("gpulens_probe_tokens_total", "counter", "LLM probes: tokens from the response's usage, by kind (prompt|completion).",
                TARGET + ("kind",), "", "probe")
SPAN_EXPORT_ERRORS = Family("gpulens_probe_span_export_errors_total", "counter",
                            "Spans the OTLP exporter failed to deliver (never blocks probing).", (), "", "probe")
