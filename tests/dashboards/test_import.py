"""`gpulens dashboards import` against a stand-in of Grafana's folder and dashboard API.

The stand-in checks what real Grafana would reject: the Bearer token, the /api/dashboards/db body
(`dashboard` with a uid and no numeric id, `folderUid`, `overwrite`), unknown folders.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gpulens.cli import main
from gpulens.dashboards.importer import JSON_DIR

TOKEN = "glsa_test_0123456789abcdef"


class FakeGrafana:
    def __init__(self) -> None:
        self.folders: dict[str, str] = {"general-uid": "General"}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        self.rejected: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    outer.rejected.append(self.headers.get("Authorization", ""))
                    self._reply(401, {"message": "invalid API key"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(("GET", self.path))
                if not self._authorised():
                    return
                if self.path.startswith("/api/folders"):
                    self._reply(200, [{"id": i, "uid": u, "title": t} for i, (u, t) in enumerate(outer.folders.items())])
                else:
                    self._reply(404, {"message": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                outer.requests.append(("POST", self.path))
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/folders":
                    assert set(body) <= {"title", "uid", "parentUid"} and body["title"]
                    if body.get("uid") in outer.folders:
                        return self._reply(409, {"message": "a folder with the same uid already exists"})
                    outer.folders[body["uid"]] = body["title"]
                    return self._reply(200, {"id": len(outer.folders), "uid": body["uid"], "title": body["title"]})
                if self.path == "/api/dashboards/db":
                    dash = body["dashboard"]
                    if body.get("folderUid") not in outer.folders:
                        return self._reply(400, {"message": "folder not found"})
                    if not dash.get("uid") or dash.get("id") not in (None,) or body.get("overwrite") is not True:
                        return self._reply(412, {"message": "dashboard with the same uid already exists", "status": "name-exists"})
                    outer.dashboards[dash["uid"]] = {"dashboard": dash, "folderUid": body["folderUid"]}
                    outer.versions[dash["uid"]] = outer.versions.get(dash["uid"], 0) + 1
                    return self._reply(200, {"id": 1, "uid": dash["uid"], "url": f"/d/{dash['uid']}", "status": "success",
                                             "version": outer.versions[dash["uid"]]})
                self._reply(404, {"message": "not found"})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_import_twice_overwrites_by_uid(grafana: FakeGrafana, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["dashboards", "import", "--grafana-url", grafana.url, "--token-file", str(token_file), "--folder", "GPU observability",
            "--jaeger-url", "https://jaeger.example.com"]
    assert main(args) == 0
    assert main(args) == 0
    expected = {json.loads(p.read_text())["uid"] for p in JSON_DIR.glob("*.json")}
    assert set(grafana.dashboards) == expected and len(expected) == 4
    assert all(v == 2 for v in grafana.versions.values())  # the second run replaced, not added
    assert list(grafana.folders.values()).count("GPU observability") == 1  # found, not created again
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"gpu-observability"}
    fleet = grafana.dashboards["gpulens-gpu-fleet"]["dashboard"]
    jaeger = next(v for v in fleet["templating"]["list"] if v["name"] == "jaeger_url")
    assert jaeger["query"] == jaeger["current"]["value"] == "https://jaeger.example.com"
    assert not grafana.rejected
    assert "gpulens-gpu-fleet: success version 2" in capsys.readouterr().out


def test_wrong_token_is_reported_not_a_traceback(grafana: FakeGrafana, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.write_text("nope")
    assert main(["dashboards", "import", "--grafana-url", grafana.url, "--token-file", str(bad)]) == 1
    assert grafana.rejected == ["Bearer nope"]
    assert "Grafana answered 401" in capsys.readouterr().out
    assert not grafana.dashboards


@pytest.mark.parametrize(("args", "message"), [
    (["--token-file", "/nonexistent/token"], "grafana_url: must be an http(s) URL, got ''"),
    (["--grafana-url", "http://g"], "token_file: required (a file holding a Grafana service-account token)"),
    (["--grafana-url", "http://g", "--token-file", "/nonexistent/token"],
     "token_file: cannot read /nonexistent/token: No such file or directory"),
])
def test_bad_config_exits_2_with_the_key(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "import", *args]) == 2
    assert f"gpulens dashboards import: {message}" in capsys.readouterr().err


def test_unreachable_grafana_exits_1(token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.prometheus_server import free_port

    assert main(["dashboards", "import", "--grafana-url", f"http://127.0.0.1:{free_port()}", "--token-file", str(token_file)]) == 1
    assert "cannot reach" in capsys.readouterr().out


def test_readme_documents_every_flag() -> None:
    import dataclasses

    from gpulens.dashboards.importer import DashboardsImportConfig

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for f in dataclasses.fields(DashboardsImportConfig):
        assert f"`--{f.name.replace('_', '-')}`" in readme, f.name
