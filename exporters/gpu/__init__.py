"""The GPU exporter: NVML sampler, MIG/GPM readers, event watcher and collectors (DaemonSet)."""
