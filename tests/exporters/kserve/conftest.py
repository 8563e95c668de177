"""Fixtures for the KServe exporter: the Kubernetes API stand-in and a client pointed at it by kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gpulens.sim.kubeapi import KubeAPI


@pytest.fixture
def kubeapi() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        yield api


@pytest.fixture
def kubeconfig(kubeapi: KubeAPI, tmp_path) -> str:
    return kubeapi.kubeconfig(str(tmp_path / "kubeconfig"))


@pytest.fixture
def client(kubeconfig: str) -> Iterator[Any]:
    """A real kubernetes.client.ApiClient loaded from the stand-in's kubeconfig."""
    from gpulens.exporters.kserve.discovery import api_client

    api = api_client(kubeconfig)
    yield api
    api.close()
