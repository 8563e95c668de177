"""`gpulens up`: the whole suite on one machine (model server, exporters, probe, Prometheus, Alertmanager, load)."""
