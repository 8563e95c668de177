"""Fixtures: the fault-injecting stand-in (per test) and a real noida-db Elasticsearch (once per session)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exporters.logship.standin import StandIn


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def noida_binary() -> str:
    """The server binary inside PyPI's noida-db wheel; a failure under CI=true, a skip elsewhere."""
    try:
        from importlib.resources import files

        path = files("noida_db").joinpath("noida-db")
        if not path.is_file():
            raise FileNotFoundError(str(path))
    except (ImportError, FileNotFoundError):
        message = "noida-db not installed: `make venv` installs it with the test extra"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    os.chmod(str(path), 0o755)  # the wheel's wrapper does the same before running it
    return str(path)


@pytest.fixture(scope="session")
def noida(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Elasticsearch-compatible server (noida-db) on 127.0.0.1, for the whole session."""
    binary = noida_binary()
    data = tmp_path_factory.mktemp("noida")
    for _attempt in range(3):  # the port is picked, then bound by the child: retry a lost race
        port = _free_port()
        log = open(data / "noida.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([binary, "start", "--only", "elasticsearch", "--host", "127.0.0.1",
                                 "--elasticsearch-port", str(port), "--data-dir", str(data / "db")],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if json.loads(response.read())["version"]["number"].startswith("8."):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
            log.close()
            continue
        try:
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        return
    pytest.fail(f"noida-db did not start: {Path(data / 'noida.log').read_text()[-2000:]}")
