"""Prometheus alert and recording rules as code."""
