"""ECS JSON logs on stdout (ecs-logging), so Filebeat/Elastic Agent ship them without parsing rules."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import ecs_logging

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup(level: str = "info", service: str = "gpulens", stream: TextIO | None = None) -> logging.Logger:
    """Route the root logger to one ECS JSON handler (stdout by default) and return the service's logger."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(ecs_logging.StdlibFormatter(extra={"service": {"name": service}}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
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
