"""Shared fixtures: the real tools the integration tests need, and the simulated NVML."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of a real binary; a skip on a laptop, a failure under CI=true (a missing tool is a bug there)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: `make test` installs it with apt-get when run as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_tool("prometheus")
