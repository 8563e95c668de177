"""Shared fixtures: the real tools the integration tests need, and the simulated NVML."""

from __future__ import annotations

import pytest

from tests.tools import require_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_tool("prometheus")
