"""Every NVML name the exporter code uses exists in the installed pynvml, and the sim serves each call.

Scans the exporter sources, so a new call cannot slip in that only the simulated NVML knows.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pynvml

from gpulens.sim import SIMULATED_FUNCTIONS, SimulatedNVML

EXPORTERS = Path(__file__).resolve().parents[3] / "exporters"
NAME = re.compile(r"(?:call\(\"|nvml\.|pynvml\.)(nvml[A-Z]\w+|NVML_\w+)")
# Deliberately not simulated: the fallback for drivers older than 570 (the sim models a current driver).
FALLBACKS = {"nvmlDeviceGetTemperature"}


def _used() -> set[str]:
    return {m for path in EXPORTERS.rglob("*.py") for m in NAME.findall(path.read_text())}


def test_every_name_used_exists_in_real_pynvml() -> None:
    used = _used()
    assert len(used) > 60  # the scan found the code
    missing = sorted(n for n in used if not hasattr(pynvml, n))
    assert missing == []


def test_every_function_used_is_simulated_with_the_real_signature() -> None:
    functions = {n for n in _used() if n.startswith("nvml") and inspect.isfunction(getattr(pynvml, n))}
    assert functions - set(SIMULATED_FUNCTIONS) == FALLBACKS
    sim = SimulatedNVML(count=1)
    for name in functions - FALLBACKS:
        real = list(inspect.signature(getattr(pynvml, name)).parameters)
        assert list(inspect.signature(getattr(sim, name)).parameters) == real, name
