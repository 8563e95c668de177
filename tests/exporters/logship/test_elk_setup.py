"""`gpulens elk-setup`: ILM + template into Elasticsearch, saved objects through Kibana's import API; the ndjson is sound."""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from gpulens import cli, elk, events
from gpulens.elk import install, kibana
from tests.exporters.logship.standin import StandIn

LOG = logging.getLogger("test.elk")


class KibanaStandIn(ThreadingHTTPServer):
    """POST /api/saved_objects/_import as Kibana answers it: kbn-xsrf required, multipart `file`, overwrite."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KibanaHandler)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.imports: list[dict[str, Any]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _KibanaHandler(BaseHTTPRequestHandler):
    server: KibanaStandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        path, _, query = self.path.partition("?")
        if not path.endswith("/api/saved_objects/_import"):
            return self._reply(404, {"statusCode": 404, "error": "Not Found"})
        space = path.split("/s/")[1].split("/")[0] if "/s/" in path else "default"
        if space not in ("default", "gpu"):
            return self._reply(404, {"statusCode": 404, "error": "Not Found", "message": f"space {space} not found"})
        if "kbn-xsrf" not in self.headers:
            return self._reply(400, {"statusCode": 400, "error": "Bad Request", "message": "Request must contain a kbn-xsrf header."})
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data; boundary="):
            return self._reply(415, {"statusCode": 415, "error": "Unsupported Media Type"})
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        parts = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
        if len(parts) != 1 or not str(parts[0].get_filename()).endswith(".ndjson"):
            return self._reply(400, {"statusCode": 400, "error": "Bad Request", "message": "[file]: expected an .ndjson file"})
        objects = [json.loads(line) for line in parts[0].get_payload(decode=True).splitlines() if line.strip()]
        overwrite = "overwrite=true" in query
        errors = [{"id": o["id"], "type": o["type"], "error": {"type": "conflict"}} for o in objects
                  if (o["type"], o["id"]) in self.server.objects and not overwrite]
        if not errors:
            for o in objects:
                self.server.objects[(o["type"], o["id"])] = o
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.imports.append({"path": path, "query": query, "headers": headers, "count": len(objects)})
        self._reply(200, {"success": not errors, "successCount": 0 if errors else len(objects), "errors": errors,
                          "successResults": [{"type": o["type"], "id": o["id"]} for o in objects] if not errors else []})


@pytest.fixture
def kibana_standin() -> Iterator[KibanaStandIn]:
    server = KibanaStandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_setup_installs_policy_template_and_saved_objects_idempotently(standin: StandIn, kibana_standin: KibanaStandIn,
                                                                       tmp_path) -> None:
    key = tmp_path / "key"
    key.write_text("a2V5OnNlY3JldA==")
    argv = ["elk-setup", "--elasticsearch-url", standin.url, "--kibana-url", kibana_standin.url + "/kibana",
            "--api-key-file", str(key), "--retention-days", "14", "--kibana-space", "gpu"]
    assert cli.main(argv) == 0
    first = dict(kibana_standin.objects)
    assert cli.main(argv) == 0  # a re-run converges: same PUTs, overwriting import
    assert kibana_standin.objects == first

    policy = standin.state.bodies["/_ilm/policy/gpulens-logs"]
    assert policy["policy"]["phases"]["delete"]["min_age"] == "14d"
    assert policy["policy"]["phases"]["hot"]["actions"]["rollover"]
    template = standin.state.bodies["/_index_template/gpulens-logs"]
    assert template["index_patterns"] == ["logs-gpulens-*"] and template["data_stream"] == {}
    assert template["priority"] > 500  # above the built-in logs-*-* templates
    assert template["template"]["settings"]["index.lifecycle.name"] == "gpulens-logs"

    assert len(kibana_standin.imports) == 2
    for call in kibana_standin.imports:
        assert call["path"] == "/kibana/s/gpu/api/saved_objects/_import" and call["query"] == "overwrite=true"
        assert call["headers"]["kbn-xsrf"] == "true"
        assert call["headers"]["authorization"] == "ApiKey a2V5OnNlY3JldA=="
        assert call["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    titles = {o["attributes"]["title"] for o in first.values()}
    assert {"GPU XID errors", "Probe failures", "InferenceService readiness", "gpulens: GPU and inference events"} <= titles


def test_setup_fails_with_exit_1_when_kibana_refuses(standin: StandIn, kibana_standin: KibanaStandIn,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cfg = install.ElkSetupConfig(elasticsearch_url=standin.url, kibana_url=kibana_standin.url, kibana_space="nope")
    assert install.run(cfg, LOG) == 1
    assert "Kibana import answered 404" in caplog.text


def test_a_kibana_without_the_xsrf_header_refuses_the_import(kibana_standin: KibanaStandIn) -> None:
    import urllib.error
    import urllib.request

    boundary = "b"
    body = install.multipart("file", "x.ndjson", elk.SAVED_OBJECTS.read_bytes(), boundary)
    request = urllib.request.Request(kibana_standin.url + "/api/saved_objects/_import", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 400  # so the stand-in's check is real: the setup passing above used the header


def test_template_installs_into_noida_and_a_shipped_event_lands_in_it(noida: str) -> None:
    # noida has no ILM: --ilm false is the switch for such clusters
    assert cli.main(["elk-setup", "--elasticsearch-url", noida, "--ilm", "false"]) == 0
    es = Elasticsearch(noida)
    assert es.indices.get_index_template(name="gpulens-logs")["index_templates"][0]["name"] == "gpulens-logs"


def test_saved_objects_file_is_generated_and_every_reference_resolves() -> None:
    text = elk.SAVED_OBJECTS.read_text()
    assert text == kibana.render(), "elk/saved-objects.ndjson is stale: run `python -m gpulens.elk.kibana`"
    objects = [json.loads(line) for line in text.splitlines()]
    ids = {(o["type"], o["id"]) for o in objects}
    assert len(ids) == len(objects)
    for o in objects:
        assert set(o) >= {"id", "type", "attributes", "references"}
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in ids, (o["id"], ref)
        source = json.loads(o["attributes"].get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", "{}"))
        if "indexRefName" in source:
            assert source["indexRefName"] in {r["name"] for r in o["references"]}
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            assert {p["panelRefName"] for p in panels} == {r["name"] for r in o["references"]}
    [view] = [o for o in objects if o["type"] == "index-pattern"]
    assert view["attributes"]["title"] == "logs-gpulens-*" and view["attributes"]["timeFieldName"] == "@timestamp"


def test_saved_searches_query_actions_the_event_api_emits() -> None:
    covered = set()
    for _sid, _title, query, _columns in kibana.SEARCHES:
        quoted = re.findall(r'"([^"]+)"', query)
        assert query.startswith("event.action:") and quoted and set(quoted) <= set(events.ACTIONS), query
        covered |= set(quoted)
    assert covered == set(events.ACTIONS)  # every event type has a saved search showing it


def test_index_template_maps_every_field_an_event_carries() -> None:
    props = elk.index_template()["template"]["mappings"]["properties"]

    def mapped(path: list[str]) -> bool:
        node: dict[str, Any] = {"properties": props}
        for key in path:
            if "properties" not in node or key not in node["properties"]:
                return False
            node = node["properties"][key]
        return "type" in node

    def leaves(doc: dict[str, Any], prefix: list[str]) -> Iterator[list[str]]:
        for k, v in doc.items():
            if isinstance(v, dict):
                yield from leaves(v, prefix + [k])
            else:
                yield prefix + [k]

    gpu = events.Gpu(0, "GPU-sim-0", "H100", "00000000:01:00.0", 1, 0, "1g.10gb")
    pod = events.Pod("ns", "p", "c")
    emitter = events.Emitter("svc", env={"NODE_NAME": "n", "POD_NAME": "p", "POD_NAMESPACE": "ns", "POD_UID": "u",
                                         "POD_IP": "10.0.0.1", "CONTAINER_NAME": "c", "CLUSTER_NAME": "k"})
    docs = [events.xid(gpu, 79, pod), events.gpu_lost(gpu, "GpuIsLost", pod), events.gpu_recovered(gpu, 3.5, pod),
            events.throttle_start(gpu, ("sw_power_cap",), pod), events.throttle_stop(gpu, ("sw_power_cap",), 2.0, pod),
            events.inferenceservice_ready_changed("ns", "m", True, "", "http://m"),
            events.probe_failed("t", "timeout", "http://m/v2", "v2", 504, 1.0, "ab" * 16, "m", "ns")]
    for event in docs:
        for path in leaves(event.document(emitter.context), []):
            if path[0] in ("@timestamp", "message", "log", "ecs") or path == ["labels"]:
                continue
            assert mapped(path), (event.action, ".".join(path))
