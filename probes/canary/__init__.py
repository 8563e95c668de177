"""The GPU canary (`gpulens canary`, or inside the GPU exporter): a small timed torch workload per GPU."""
