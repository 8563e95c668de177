"""Every gpulens exporter's own health: per-collector success and duration (node_exporter's shape).

The standard `process_*` families (RSS, CPU, open fds, start time) come from prometheus_client's
ProcessCollector and keep their upstream names, so they are not catalogued here.
"""

from __future__ import annotations

from gpulens.metrics.family import Family

COLLECTOR_SUCCESS = Family("gpulens_collector_success", "gauge", "1 if the collector rendered without raising at the last render.",
                           ("collector",), subsystem="self")
COLLECTOR_DURATION = Family("gpulens_collector_duration_seconds", "gauge", "Time the collector took at the last render.",
                            ("collector",), subsystem="self", unit="seconds")
