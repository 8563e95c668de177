"""Integration with a real Elasticsearch-compatible server (PyPI noida-db): events shipped, searchable, replay idempotent."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from elasticsearch import Elasticsearch

from gpulens import events
from gpulens.exporters.logship import app
from gpulens.exporters.logship.config import LogshipConfig
from gpulens.exporters.logship.shipper import Shipper

LOG = logging.getLogger("test.noida")


def _count(es: Elasticsearch, index: str, query: dict | None = None) -> int:
    es.indices.refresh(index=index)
    return int(es.search(index=index, query=query or {"match_all": {}}, size=0, track_total_hits=True)["hits"]["total"]["value"])


def test_events_are_shipped_searchable_and_a_replay_adds_nothing(noida: str, tmp_path: Path) -> None:
    cfg = LogshipConfig(elasticsearch_url=noida, namespace="itest", spool_dir=str(tmp_path / "spool"),
                        flush_interval_seconds=0.02, backoff_max_seconds=0.05)
    emitter = events.Emitter("gpulens-gpu-exporter", env={"NODE_NAME": "gpu-node-7", "POD_NAME": "gpulens-gpu-abc",
                                                          "POD_NAMESPACE": "gpulens"})
    shipper = Shipper(cfg, log=LOG, source="itest").start()
    emitter.attach(shipper)
    gpu = events.Gpu(3, "GPU-sim-0003", name="NVIDIA H100 80GB HBM3")
    pod = events.Pod("models", "llama-0", "kserve-container")
    sent = [emitter.emit(events.xid(gpu, 79, pod=pod)), emitter.emit(events.gpu_lost(gpu, "GpuIsLost", pod=pod)),
            emitter.emit(events.throttle_start(gpu, ("hw_thermal_slowdown",), pod=pod)),
            emitter.emit(events.inferenceservice_ready_changed("models", "llama", False, "PredictorNotReady")),
            emitter.emit(events.probe_failed("llama-v2", "http_503", status_code=503, trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))]
    assert shipper.flush(20)
    shipper.stop(0)
    assert shipper.shipped == 5 and not shipper.dead_lettered

    es = Elasticsearch(noida)
    index = cfg.data_stream
    assert _count(es, index) == 5
    hits = es.search(index=index, query={"term": {"event.action": "gpu.xid"}})["hits"]["hits"]
    assert [h["_source"] for h in hits] == [json.loads(json.dumps(sent[0]))]
    assert hits[0]["_source"]["gpu"]["uuid"] == "GPU-sim-0003" and hits[0]["_source"]["workload"]["pod"] == "llama-0"
    assert hits[0]["_source"]["kubernetes"]["pod"]["name"] == "gpulens-gpu-abc"
    probe = es.search(index=index, query={"term": {"trace.id": "4bf92f3577b34da6a3ce929d0e0e4736"}})["hits"]["hits"]
    assert [h["_source"]["event"]["action"] for h in probe] == ["probe.failed"]

    # Replay: a second shipper over the same source re-sends the same ids; the server keeps one copy each.
    again = Shipper(LogshipConfig(elasticsearch_url=noida, namespace="itest", flush_interval_seconds=0.02), log=LOG,
                    source="itest").start()
    for doc in sent:
        again.submit(doc)
    assert again.flush(20)
    again.stop(0)
    assert again.shipped == 5  # 409 = already delivered
    assert _count(es, index) == 5


def test_logship_command_over_a_file_is_idempotent_on_rerun(noida: str, tmp_path: Path) -> None:
    source = tmp_path / "lines.ndjson"
    source.write_text("".join(json.dumps({"@timestamp": f"2026-12-01T00:00:{i:02d}.000Z", "message": f"m{i}",
                                          "event": {"action": "probe.failed"}}) + "\n" for i in range(40)))
    for run in range(2):  # no spool dir: the second run re-reads the whole file
        cfg = LogshipConfig(elasticsearch_url=noida, namespace="rerun", input=str(source), port=0, listen_address="127.0.0.1",
                            flush_interval_seconds=0.02)
        assert app.run(cfg, LOG, stdin=io.BytesIO()) == 0, run
    assert _count(Elasticsearch(noida), "logs-gpulens-rerun") == 40
