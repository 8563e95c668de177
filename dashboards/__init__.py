"""Grafana dashboards as code (grafanalib)."""
