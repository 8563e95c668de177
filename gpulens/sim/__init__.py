"""Simulated NVML with pynvml's API: demos, dashboards, benchmarks and tests without a GPU."""

from gpulens.sim.models import MODELS, MigProfile, Model, parse_simulate
from gpulens.sim.nvml import NO_INSTANCE, SIMULATED_FUNCTIONS, EventData, SimHandle, SimulatedNVML

__all__ = [
    "MODELS",
    "NO_INSTANCE",
    "SIMULATED_FUNCTIONS",
    "EventData",
    "MigProfile",
    "Model",
    "SimHandle",
    "SimulatedNVML",
    "parse_simulate",
]
