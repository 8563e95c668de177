"""Finding the real tools integration tests run against."""

from __future__ import annotations

import os
import shutil

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
