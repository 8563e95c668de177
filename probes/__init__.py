"""Probes: synthetic inference requests and the GPU canary."""
