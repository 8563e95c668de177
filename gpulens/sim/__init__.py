"""Simulated NVML with pynvml's API: demos, dashboards, benchmarks and tests without a GPU."""
