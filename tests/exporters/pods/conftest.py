"""Fixtures for per-pod GPU usage: the Kubernetes API stand-in and a real client pointed at it."""

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
def client(kubeapi: KubeAPI, tmp_path) -> Iterator[Any]:
    """A real kubernetes.client.ApiClient loaded from the stand-in's kubeconfig."""
    from gpulens.exporters.kserve.discovery import api_client

    api = api_client(kubeapi.kubeconfig(str(tmp_path / "kubeconfig")))
    yield api
    api.close()
