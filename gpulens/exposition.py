"""Render metric families to Prometheus text and OpenMetrics, fast, for a series set that rarely changes.

prometheus_client re-validates and re-escapes every label name and value on every render (about
10 µs a line, twice for two formats). An exporter re-rendering the same GPUs every second pays that
for labels that never change, so the escaped `name{labels} ` prefix of each series is cached and
only the value is formatted. HELP/TYPE headers are produced by prometheus_client itself (from an
empty family) and a test pins whole outputs to prometheus_client's byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

EOF = b"# EOF\n"


class _One:
    def __init__(self, family: Metric):
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Renderer:
    """Keeps header and series-prefix caches between renders; not thread-safe (one sampler calls it)."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def render(self, families: Iterable[Metric]) -> tuple[bytes, bytes]:
        """(text 0.0.4, OpenMetrics without the final `# EOF`) for the same families."""
        text: list[str] = []
        om: list[str] = []
        prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for family in families:
            text_header, om_header = self._header(family)
            lines = []
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                prefix = prefixes.get(key) or self._prefixes.get(key) or self._prefix(key)
                prefixes[key] = prefix
                lines.append(prefix + floatToGoString(sample.value) + "\n")
            body = "".join(lines)
            text.append(text_header + body)
            om.append(om_header + body)
        self._prefixes = prefixes  # keep only live series: vanished pods do not grow the cache
        return "".join(text).encode(), "".join(om).encode()

    def _header(self, family: Metric) -> tuple[str, str]:
        key = (family.name, family.type, family.documentation)
        header = self._headers.get(key)
        if header is None:
            empty = Metric(family.name, family.documentation, family.type)
            header = (generate_latest(_One(empty)).decode(),  # type: ignore[arg-type]
                      generate_openmetrics(_One(empty)).decode().removesuffix(EOF.decode()))  # type: ignore[arg-type]
            self._headers[key] = header
        return header

    @staticmethod
    def _prefix(key: tuple[str, tuple[tuple[str, str], ...]]) -> str:
        name, labels = key
        if not labels:
            return name + " "
        # sorted, as prometheus_client writes them
        return name + "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels)) + "} "
