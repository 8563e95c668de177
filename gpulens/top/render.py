"""Drawing a `View`: rich tables with bars and sparklines on a terminal, aligned plain text otherwise.

Both renderers print the same numbers in the same format (the `fmt_*` functions), so what a script
greps from the plain view is what a person reads on the rich one.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from gpulens.top.model import GpuRow, TraceRow, View

GIB = float(1 << 30)
SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-~=+*#"
BAR_WIDTH = 12
DASH = "-"


def fmt_pct(ratio: float | None) -> str:
    return DASH if ratio is None else f"{ratio * 100:.0f}%"


def fmt_mem(used: float | None, total: float | None) -> str:
    if used is None or total is None:
        return DASH
    return f"{used / GIB:.1f}/{total / GIB:.1f} GiB"


def fmt_power(power: float | None, limit: float | None) -> str:
    if power is None:
        return DASH
    return f"{power:.0f} W" + (f" / {limit:.0f} W" if limit is not None else "")


def fmt_temp(celsius: float | None) -> str:
    return DASH if celsius is None else f"{celsius:.0f} C"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_rate(rps: float | None) -> str:
    return DASH if rps is None else f"{rps:.2f}/s"


def sparkline(values: Sequence[float], chars: str = SPARK) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    top = len(chars) - 1
    return "".join(chars[0 if span <= 0 else round((v - low) / span * top)] for v in values)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def text_bar(ratio: float | None, width: int = BAR_WIDTH) -> str:
    """`[#####-------]` for the plain view."""
    if ratio is None:
        return " " * (width + 2)
    filled = round(max(0.0, min(1.0, ratio)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _gpu_cells(row: GpuRow) -> list[str]:
    state = "LOST" if not row.up else ",".join(row.flags)
    return [row.gpu, row.name, fmt_pct(row.utilization), fmt_mem(row.memory_used, row.memory_total),
            fmt_power(row.power, row.power_limit), fmt_temp(row.temperature), state]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = [line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def render_plain(view: View, when: str = "") -> str:
    """The whole view as plain text (no colour, no box drawing): for pipes, logs and SSH without a TTY."""
    lines = [f"gpulens top  source={view.source}" + (f"  {when}" if when else "")
             + ("  SIMULATED GPUs (not real data)" if view.simulated else "")]
    lines += ["", f"GPUs ({len(view.gpus)})"]
    gpu_rows = []
    for row in view.gpus:
        cells = _gpu_cells(row)
        cells.insert(3, text_bar(row.utilization))
        gpu_rows.append(cells)
    lines += _table(["GPU", "NAME", "UTIL", "", "MEMORY", "POWER", "TEMP", "FLAGS"], gpu_rows) if view.gpus else ["  (none)"]
    lines += ["", f"Inference services ({len(view.services)})"]
    lines += _table(["SERVICE", "MODEL", "RATE", "ERRORS", "P99"],
                    [[s.name, s.model, fmt_rate(s.rps), fmt_pct(s.error_ratio), fmt_seconds(s.p99)] for s in view.services]) \
        if view.services else ["  (none)"]
    lines += ["", f"Probes ({len(view.probes)})"]
    lines += _table(["TARGET", "MODEL", "PROTO", "OK", "LATENCY", "HISTORY"],
                    [[r.target, r.model, r.protocol, _ok(r.success), fmt_seconds(r.latency), sparkline(r.history, SPARK_ASCII)]
                     for r in view.probes]) if view.probes else ["  (none)"]
    lines.append("")
    if view.alerts is None:
        lines.append("Alerts: (need Prometheus)")
    else:
        lines.append(f"Alerts ({sum(a.state == 'firing' for a in view.alerts)} firing)")
        lines += _table(["STATE", "SEVERITY", "ALERT", "WHERE"], [[a.state, a.severity, a.name, a.where] for a in view.alerts]) \
            if view.alerts else ["  (none)"]
    if view.traces is not None:
        lines += ["", f"Recent probe traces ({len(view.traces)})"]
        lines += _table(["TIME", "TARGET", "DURATION", "OK", "TRACE"], [_trace_cells(t) for t in view.traces]) \
            if view.traces else ["  (none yet)"]
    for problem in view.problems:
        lines.append(f"! {problem}")
    return "\n".join(lines) + "\n"


def _trace_cells(t: TraceRow) -> list[str]:
    when = datetime.datetime.fromtimestamp(t.start_unix).strftime("%H:%M:%S") if t.start_unix else DASH
    return [when, t.target, fmt_seconds(t.duration), "ok" if t.ok else "FAIL", t.trace_id]


def _ok(success: bool | None) -> str:
    return DASH if success is None else ("ok" if success else "FAIL")


def _colour(ratio: float | None, warn: float = 0.7, crit: float = 0.9) -> str:
    if ratio is None:
        return "dim"
    return "red" if ratio >= crit else "yellow" if ratio >= warn else "green"


def _bar(ratio: float | None, label: str) -> Any:
    from rich.text import Text

    if ratio is None:
        return Text(label, style="dim")
    filled = round(max(0.0, min(1.0, ratio)) * BAR_WIDTH)
    text = Text("█" * filled, style=_colour(ratio))
    text.append("░" * (BAR_WIDTH - filled), style="dim")
    text.append(f" {label}")
    return text


def render_rich(view: View, when: str = "") -> Any:
    """The view as a rich renderable: GPU bars, service and probe tables, firing alerts."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(f"gpulens top  source={view.source}  {when}", style="bold")
    if view.simulated:
        title.append("  SIMULATED GPUs (not real data)", style="bold yellow")
    gpus = Table(title=f"GPUs ({len(view.gpus)})", expand=True, title_justify="left")
    for header in ("GPU", "NAME", "UTIL", "MEMORY", "POWER", "TEMP", "FLAGS"):
        gpus.add_column(header, no_wrap=True)
    for row in view.gpus:
        cells = _gpu_cells(row)
        temp_style = _colour(None if row.temperature is None else row.temperature / 100, 0.8, 0.87)
        flags = Text(cells[6], style="bold red" if not row.up or any(f.isupper() for f in row.flags) else "dim")
        gpus.add_row(cells[0], cells[1], _bar(row.utilization, cells[2]),
                     _bar(_ratio(row.memory_used, row.memory_total), cells[3]),
                     _bar(_ratio(row.power, row.power_limit), cells[4]), Text(cells[5], style=temp_style), flags)
    services = Table(title=f"Inference services ({len(view.services)})", expand=True, title_justify="left")
    for header in ("SERVICE", "MODEL", "RATE", "ERRORS", "P99"):
        services.add_column(header, no_wrap=True)
    for s in view.services:
        err_style = "red" if (s.error_ratio or 0) >= 0.05 else "green"
        services.add_row(s.name, s.model, fmt_rate(s.rps), Text(fmt_pct(s.error_ratio), style=err_style), fmt_seconds(s.p99))
    probes = Table(title=f"Probes ({len(view.probes)})", expand=True, title_justify="left")
    for header in ("TARGET", "MODEL", "PROTO", "OK", "LATENCY", "HISTORY"):
        probes.add_column(header, no_wrap=True)
    for r in view.probes:
        probes.add_row(r.target, r.model, r.protocol, Text(_ok(r.success), style="green" if r.success else "bold red"),
                       fmt_seconds(r.latency), Text(sparkline(r.history), style="cyan"))
    parts: list[Any] = [title, gpus, services, probes]
    if view.alerts is None:
        parts.append(Text("Alerts: (need Prometheus)", style="dim"))
    else:
        alerts = Table(title=f"Alerts ({sum(a.state == 'firing' for a in view.alerts)} firing)", expand=True, title_justify="left")
        for header in ("STATE", "SEVERITY", "ALERT", "SUMMARY"):
            alerts.add_column(header)
        for a in view.alerts:
            style = "bold red" if a.state == "firing" and a.severity == "critical" else "yellow" if a.state == "firing" else "dim"
            alerts.add_row(Text(a.state, style=style), a.severity, a.name, a.summary or a.where)
        parts.append(alerts)
    if view.traces is not None:
        traces = Table(title=f"Recent probe traces ({len(view.traces)})", expand=True, title_justify="left")
        for header in ("TIME", "TARGET", "DURATION", "OK", "TRACE"):
            traces.add_column(header, no_wrap=True)
        for t in view.traces:
            cells = _trace_cells(t)
            traces.add_row(*cells[:3], Text(cells[3], style="green" if t.ok else "bold red"), Text(cells[4], style="dim"))
        parts.append(traces)
    parts += [Text(f"! {p}", style="red") for p in view.problems]
    return Group(*parts)
