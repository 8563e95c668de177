"""`gpulens gpu-exporter --web-config-file`: TLS and basic auth wired end to end through the CLI."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from tests.prometheus_server import free_port


def test_tls_and_basic_auth_from_web_config(tmp_path: Path, certdir: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web-config.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certdir / 'cert.pem'}\n  key_file: {certdir / 'key.pem'}\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gpulens", "gpu-exporter", "--simulate", "2", "--port", str(port),
                             "--listen-address", "127.0.0.1", "--pod-attribution", "false",
                             "--web-config-file", str(web)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(certdir / "cert.pem"))
    url = f"https://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, context=ctx, timeout=5)
                raise AssertionError("served /metrics without credentials")
            except urllib.error.HTTPError as err:
                assert err.code == 401
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "exporter did not start"
                time.sleep(0.2)
        token = base64.b64encode(b"prometheus:s3cret").decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, context=ctx, timeout=5) as resp:
            assert resp.status == 200 and b"gpulens_gpu_up" in resp.read()
    finally:
        proc.terminate()
        proc.wait(10)
