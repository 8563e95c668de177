"""ECS JSON logs on stdout (ecs-logging), so Filebeat/Elastic Agent ship them without parsing rules.

Every line carries who wrote it: `service.name`, `host.name` (the node), the pod it runs in from the
Kubernetes downward API (`orchestrator.*`, `kubernetes.*`), and `trace.id`/`span.id` when it was
written inside an OpenTelemetry span (ecs-logging does not map OTel ids itself).

    {"@timestamp":"2026-12-01T21:00:00.000Z","log.level":"error","message":"XID 79 on GPU 3 …",
     "host":{"name":"gpu-node-7"},"kubernetes":{"namespace":"gpulens","pod":{"name":"gpulens-gpu-x2k"}},…}
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import ecs_logging

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
ECS_VERSION = ecs_logging.ECS_VERSION  # what ecs-logging writes on every line: events say the same
# A LogRecord attribute holding a complete ECS document (an event): written as is, not rebuilt.
DOCUMENT_ATTR = "ecs_document"

# Downward-API variables (k8s manifests set them with fieldRef) → ECS / Beats-style Kubernetes fields.
_DOWNWARD = {
    "NODE_NAME": ("kubernetes", "node", "name"),
    "POD_NAME": ("kubernetes", "pod", "name"),
    "POD_NAMESPACE": ("kubernetes", "namespace"),
    "POD_UID": ("kubernetes", "pod", "uid"),
    "POD_IP": ("kubernetes", "pod", "ip"),
    "CONTAINER_NAME": ("kubernetes", "container", "name"),
}


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc.setdefault(key, {})
    doc[path[-1]] = value


def merge(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `other` into `into` (nested dicts merge, other values replace); returns `into`."""
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = merge({}, value)
        else:
            into[key] = value
    return into


def context(service: str = "gpulens", env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields every line of this process carries: service, host, and where it runs in Kubernetes."""
    env = os.environ if env is None else env
    doc: dict[str, Any] = {"service": {"name": service}, "host": {"name": env.get("NODE_NAME") or socket.gethostname()}}
    for var, path in _DOWNWARD.items():
        if env.get(var):
            _put(doc, path, env[var])
    if env.get("POD_NAME") or env.get("POD_NAMESPACE"):
        orchestrator: dict[str, Any] = {"type": "kubernetes"}
        if env.get("POD_NAMESPACE"):
            orchestrator["namespace"] = env["POD_NAMESPACE"]
        if env.get("POD_NAME"):
            orchestrator["resource"] = {"type": "pod", "name": env["POD_NAME"]}
        if env.get("CLUSTER_NAME"):
            orchestrator["cluster"] = {"name": env["CLUSTER_NAME"]}
        doc["orchestrator"] = orchestrator
    return doc


def trace_ids() -> dict[str, Any]:
    """`{"trace": {"id"}, "span": {"id"}}` of the current OpenTelemetry span; {} outside one or without OTel.

    opentelemetry is imported only if it is installed (the `probe` extra); components without it pay nothing.
    """
    trace_mod = sys.modules.get("opentelemetry.trace")
    if trace_mod is None:
        # Not imported by anyone yet: nothing can have started a span, so there is nothing to read.
        return {}
    span = trace_mod.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace": {"id": format(ctx.trace_id, "032x")}, "span": {"id": format(ctx.span_id, "016x")}}


def timestamp(seconds: float) -> str:
    """ECS `@timestamp`: UTC, millisecond precision, `Z` suffix."""
    whole, millis = divmod(round(seconds * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def dumps(doc: Mapping[str, Any]) -> str:
    """One ECS JSON line: `@timestamp`, `log.level`, `message` first (the ECS logging spec), then sorted keys."""
    rest = dict(doc)
    head: dict[str, Any] = {}
    if "@timestamp" in rest:
        head["@timestamp"] = rest.pop("@timestamp")
    log = rest.get("log")
    if isinstance(log, dict) and "level" in log:
        log = dict(log)
        head["log.level"] = log.pop("level")
        if log:
            rest["log"] = log
        else:
            rest.pop("log")
    if "message" in rest:
        head["message"] = rest.pop("message")
    body = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    if not head:
        return body
    first = json.dumps(head, separators=(",", ":"), default=str, ensure_ascii=False)
    return first[:-1] + ("," + body[1:] if body != "{}" else "}")


class Formatter(ecs_logging.StdlibFormatter):
    """ecs-logging's formatter plus the process context and the current span's ids."""

    def __init__(self, fields: Mapping[str, Any]):
        super().__init__()
        self.fields = dict(fields)

    def format(self, record: logging.LogRecord) -> str:
        document = getattr(record, DOCUMENT_ATTR, None)
        if isinstance(document, Mapping):  # an event: already a complete ECS document
            return dumps(document)
        return dumps(self.format_to_ecs(record))

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        result: dict[str, Any] = super().format_to_ecs(record)
        base = merge(merge({}, self.fields), trace_ids())
        return merge(base, result)  # what the call site passed wins over the process context


def setup(level: str = "info", service: str = "gpulens", stream: TextIO | None = None,
          env: Mapping[str, str] | None = None) -> logging.Logger:
    """Route the root logger to one ECS JSON handler (stdout by default) and return the service's logger."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(Formatter(context(service, env)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    from gpulens import events  # lazy: events imports this module

    events.configure(service, env)  # typed events name the same service and pod as the log lines
    return logging.getLogger(service)


class StateLog:
    """Logs a component's state only when it changes: an outage is one line, not one per retry."""

    def __init__(self, log: logging.Logger, component: str):
        self._log = log
        self._component = component
        self._state: str | None = None

    def ok(self, message: str, **fields: object) -> None:
        if self._state != "ok":
            was_down = self._state is not None
            self._state = "ok"
            self._log.info(message, extra={"event": {"action": f"{self._component}-up", "outcome": "success"},
                                           "labels": {"recovered": was_down}, **fields})

    def failed(self, reason: str, message: str, **fields: object) -> None:
        if self._state != reason:
            self._state = reason
            self._log.error(message, extra={"event": {"action": f"{self._component}-down", "outcome": "failure",
                                                      "reason": reason}, **fields})
