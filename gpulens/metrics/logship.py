"""The Elasticsearch log shipper's families: every event is shipped, retried, dead-lettered or dropped, and counted."""

from __future__ import annotations

from gpulens.metrics.family import Family

SHIPPED = Family("gpulens_logship_shipped_total", "counter", "Events Elasticsearch accepted (201, or 409 = already delivered).",
                 (), "", "logship")
RETRIED = Family("gpulens_logship_retried_total", "counter",
                 "Event deliveries retried, by reason (429|5xx|connection|timeout|auth).", ("reason",), "", "logship")
DEAD_LETTERED = Family("gpulens_logship_dead_lettered_total", "counter",
                       "Events rejected for good and written to the dead-letter file, by reason (the HTTP status, "
                       "or retries_exhausted).", ("reason",), "", "logship")
DROPPED = Family("gpulens_logship_dropped_total", "counter", "Events dropped because the queue or the spool was full (drop-oldest).",
                 (), "", "logship")
SPOOL_BYTES = Family("gpulens_logship_spool_bytes", "gauge",
                     "Bytes of events waiting in the spool (on disk, or in memory without a spool directory).", (), "", "logship")
QUEUE_DEPTH = Family("gpulens_logship_queue_events", "gauge", "Events waiting in memory and spool.", (), "", "logship")
LAST_SUCCESS = Family("gpulens_logship_last_success_timestamp_seconds", "gauge", "When a bulk request last succeeded.", (), "",
                      "logship")
UP = Family("gpulens_logship_up", "gauge", "1 if the last bulk request reached Elasticsearch.", (), "", "logship")
