"""Finding the real tools integration tests run against."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest


def require_tool(name: str) -> str:
    """Path of a real binary; a skip on a laptop, a failure under CI=true (a missing tool is a bug there)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: `make test` installs prometheus/alertmanager with apt-get when run as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `pred` until it returns something truthy and return that; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")
