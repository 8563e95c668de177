"""The rule types every alert module returns: one `Alert` definition renders to Prometheus YAML,
a PrometheusRule (k8s/, from the YAML) and a Grafana-managed rule, so the three cannot disagree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")  # critical pages, warning tickets
_DURATION = re.compile(r"^(\d+[smhd])+$")


def seconds(duration: str) -> int:
    """A Prometheus duration ('1h30m', '0s') in seconds."""
    if duration in ("0", "0s"):
        return 0
    if not _DURATION.match(duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * unit[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


@dataclass(frozen=True)
class Alert:
    """One alert: `Gpulens<Thing><Condition>`, its PromQL, how long it must hold, who it goes to, what to read."""

    name: str
    expr: str
    for_: str
    severity: Severity
    summary: str
    description: str
    labels: tuple[tuple[str, str], ...] = ()  # extra static labels (e.g. the SLO name); severity is added
    runbook: str = ""  # runbook page name when several alerts share one (SLO burn rates); default: the alert name

    def __post_init__(self) -> None:
        if not re.fullmatch(r"Gpulens[A-Z][A-Za-z0-9]+", self.name):
            raise ValueError(f"alert name must be Gpulens<Thing><Condition>: {self.name!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity must be one of {SEVERITIES}, got {self.severity!r}")
        seconds(self.for_)

    def runbook_url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.runbook or self.name}.md"

    def render(self, runbook_base: str, for_: str | None = None) -> dict[str, Any]:
        """The Prometheus rule-file entry; `for_` overrides the duration (end-to-end tests use seconds)."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": for_ if for_ is not None else self.for_,
            "labels": {"severity": self.severity, **dict(self.labels)},
            "annotations": {"summary": self.summary, "description": self.description,
                            "runbook_url": self.runbook_url(runbook_base)},
        }


@dataclass(frozen=True)
class Record:
    """A recording rule: `level:metric:operation`, so dashboards and alerts share one expression."""

    record: str
    expr: str
    labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", self.record):
            raise ValueError(f"recording rule name must be level:metric:operation: {self.record!r}")

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class Group:
    """A rule group; `file` names the rule file under alerts/rules/ it is written to."""

    name: str
    file: str
    rules: tuple[Alert | Record, ...] = field(default_factory=tuple)
    interval: str = ""

    @property
    def alerts(self) -> list[Alert]:
        return [r for r in self.rules if isinstance(r, Alert)]

    @property
    def records(self) -> list[Record]:
        return [r for r in self.rules if isinstance(r, Record)]

    def render(self, runbook_base: str, for_: str | None = None) -> dict[str, Any]:
        rules = [r.render(runbook_base, for_) if isinstance(r, Alert) else r.render() for r in self.rules]
        out: dict[str, Any] = {"name": self.name, "rules": rules}
        if self.interval:
            out["interval"] = self.interval
        return out


def selector(metric: str, /, **matchers: str) -> str:
    """`name{a="x", b=~"y"}`: a value starting with `~` or `!` is a regex or negative matcher."""
    if not matchers:
        return metric
    parts = []
    for key, value in matchers.items():
        op = "="
        if value.startswith("~"):
            op, value = "=~", value[1:]
        elif value.startswith("!~"):
            op, value = "!~", value[2:]
        elif value.startswith("!"):
            op, value = "!=", value[1:]
        parts.append(f'{key}{op}"{value}"')
    return f"{metric}{{{', '.join(parts)}}}"
