"""Shared fixtures: the real tools the integration tests need, and the simulated NVML."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpulens.sim.modelserver import ModelServerProcess
from tests.tools import require_tool

pytest_plugins = ["tests.gpulens_stack"]  # the Prometheus + Alertmanager stack of tests/dashboards and tests/alerts


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_tool("prometheus")


@pytest.fixture(scope="session")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a real self-signed cert.pem/key.pem for 127.0.0.1."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServerProcess]:
    """The real KServe ModelServer with the demo torch models, once per session (startup costs ~10 s).

    Models: classifier, slow (sleeps `delay_seconds`), broken (500), wrong-shape. Tests that count
    requests read the server's /metrics before and after, since other tests share it.
    """
    log = tmp_path_factory.mktemp("modelserver") / "modelserver.log"
    server = ModelServerProcess(delay_seconds=0.05, log_path=str(log)).start()
    yield server
    server.stop()
