# The gpulens image used by k8s/: entrypoint `gpulens`, subcommand in the pod's args.
# NVML (libnvidia-ml.so) is not in the image: the NVIDIA container runtime mounts the host driver's.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gpulens gpulens
COPY exporters exporters
COPY probes probes
COPY dashboards dashboards
COPY alerts alerts
RUN pip install --no-cache-dir . && rm -rf /src
ENTRYPOINT ["gpulens"]
CMD ["gpu-exporter"]
