# The gpulens image used by k8s/: entrypoint `gpulens`, the subcommand in the pod's args
# (gpu-exporter, kserve-exporter, probe, logship, elk-setup, ...).
#
#   docker build -t ghcr.io/gpulens/gpulens:0.1.0 .                          # exporters, probe, shipper
#   docker build --build-arg EXTRAS=kserve,probe,elk,canary -t …-canary .    # + torch for the GPU canary
#
# NVML (libnvidia-ml.so) is not in the image: the NVIDIA container runtime mounts the host driver's.
# Two stages: wheels are installed into a virtualenv in the build stage, and only that virtualenv is copied
# into the final one, so pip's caches and any build tooling stay behind. No compiler is installed in either
# stage: every dependency ships manylinux wheels.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7:the base image is the ARG above, pinned to a version tag (checkov cannot resolve ARGs)

FROM ${PYTHON_IMAGE} AS build
# Optional extras from pyproject.toml: kserve (Kubernetes client), probe (OpenTelemetry), elk (Elasticsearch
# client), canary (torch). The default covers every Deployment in k8s/base.
ARG EXTRAS=kserve,probe,elk
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/gpulens
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gpulens gpulens
COPY exporters exporters
COPY probes probes
COPY dashboards dashboards
COPY alerts alerts
COPY elk elk
RUN /opt/gpulens/bin/pip install ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gpulens" \
      org.opencontainers.image.description="Observability for GPU model serving on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/gpulens /opt/gpulens
ENV PATH=/opt/gpulens/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root by default (distroless' nonroot UID). The GPU exporter's pod runs it as UID 0 with every
# capability dropped, only to connect to the kubelet's root-owned pod-resources socket (k8s/base/gpu-exporter).
USER 65532:65532
# Kubernetes ignores HEALTHCHECK (the manifests use liveness/readiness probes on /healthz and /readyz), and
# the port depends on the subcommand; this one serves `docker run` of the default gpu-exporter.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9445/healthz', timeout=4)"]
EXPOSE 9445 9446 9447
ENTRYPOINT ["gpulens"]
CMD ["gpu-exporter"]
