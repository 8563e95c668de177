"""The shipper against the fault-injecting stand-in: every event delivered exactly once by `_id`,
rejected ones in the dead-letter file and nowhere else, retries and drops counted."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gpulens.exporters.logship.config import LogshipConfig
from gpulens.exporters.logship.shipper import DeadLetters, Shipper, client_kwargs, encode
from tests.exporters.logship.standin import StandIn


def _cfg(url: str, tmp_path: Path | None = None, **kw: Any) -> LogshipConfig:
    base: dict[str, Any] = {"elasticsearch_url": url, "namespace": "test", "request_timeout_seconds": 2.0,
                            "backoff_max_seconds": 0.05, "flush_interval_seconds": 0.02, "batch_events": 50}
    if tmp_path is not None:
        base["spool_dir"] = str(tmp_path / "spool")
    base.update(kw)
    return LogshipConfig(**base)


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {"@timestamp": f"2026-12-01T00:00:{i % 60:02d}.000Z", "message": f"event {i}",
            "event": {"action": "gpu.xid", "code": str(i)}, **extra}


def _dead_letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _assert_exactly_once(es: StandIn, ids: list[str]) -> None:
    assert set(es.state.docs) == set(ids)
    assert all(es.state.creates[i] == 1 for i in ids)
    assert set(es.state.index_of.values()) == {"logs-gpulens-test"}


def test_ships_every_event_once_with_compat_headers(standin: StandIn, tmp_path: Path) -> None:
    shipper = Shipper(_cfg(standin.url, tmp_path)).start()
    ids = [shipper.submit(_event(i)) for i in range(500)]
    assert shipper.flush(20)
    assert shipper.stop(1)
    _assert_exactly_once(standin, ids)
    assert json.loads(standin.state.docs[ids[7]]) == _event(7)
    bulk = [h for m, p, h in standin.state.requests if p.startswith("/logs-gpulens-test/_bulk")]
    assert bulk and all(h["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8" for h in bulk)
    assert all(h["accept"] == "application/vnd.elasticsearch+json; compatible-with=8" for h in bulk)
    assert shipper.shipped == 500 and not shipper.retried and not shipper.dead_lettered and shipper.dropped == 0
    assert len(set(ids)) == 500


def test_a_429_storm_and_503s_are_retried_until_delivered(standin: StandIn, tmp_path: Path) -> None:
    standin.state.fail_next = [429] * 6 + [503] * 3
    shipper = Shipper(_cfg(standin.url, tmp_path, batch_events=1000))
    ids = [shipper.submit(_event(i)) for i in range(100)]  # queued before start: one batch of 100
    shipper.start()
    assert shipper.flush(20)
    shipper.stop(0)
    _assert_exactly_once(standin, ids)
    assert shipper.shipped == 100
    # each failed request carried 100 events, all sent again: counted per event
    assert shipper.retried == {"429": 600, "5xx": 300}
    assert standin.state.bulk_requests == 10 and shipper.up


def test_partial_failures_mixing_201_409_429_400(standin: StandIn, tmp_path: Path) -> None:
    shipper = Shipper(_cfg(standin.url, tmp_path, batch_events=1000), source="partial")
    docs = [encode(_event(i)) for i in range(40)]
    # the ids the shipper will give them (source, sequence 1.., content) - to script per-item faults
    from gpulens.exporters.logship.shipper import event_id
    ids = [event_id("partial", i + 1, d) for i, d in enumerate(docs)]
    for rid in ids[:10]:  # already delivered by an earlier run: 409 means delivered
        standin.state.docs[rid] = b"{}"
    for rid in ids[10:20]:  # overloaded shard: 429 twice, then accepted
        standin.state.item_faults[rid] = [429, 429]
    for rid in ids[20:25]:  # a node restarting: 503 once
        standin.state.item_faults[rid] = [503]
    standin.state.reject = set(ids[25:30])  # mapping errors: dead letters, never retried
    shipper.start()
    for d in docs:
        shipper.submit(d)
    assert shipper.flush(20)
    shipper.stop(0)
    assert shipper.shipped == 35
    assert shipper.retried == {"429": 20, "5xx": 5}
    assert shipper.dead_lettered == {"400": 5}
    dead = _dead_letters(tmp_path / "spool" / "dead-letter.ndjson")
    assert sorted(d["_id"] for d in dead) == sorted(ids[25:30])
    assert all(d["status"] == 400 and d["error"]["type"] == "mapper_parsing_exception" for d in dead)
    assert [d["document"] for d in sorted(dead, key=lambda d: ids.index(d["_id"]))] == [_event(i) for i in range(25, 30)]
    for rid in ids[25:30]:
        assert standin.state.attempts[rid] == 1  # a 400 is final
    assert all(standin.state.creates[rid] == 1 for rid in ids[10:25] + ids[30:])
    families = {f.name: f for f in shipper.collect()}
    assert families["gpulens_logship_shipped"].rows == [((), 35.0)]
    assert families["gpulens_logship_dead_lettered"].rows == [(("400",), 5.0)]
    assert families["gpulens_logship_retried"].rows == [(("429",), 20.0), (("5xx",), 5.0)]
    assert families["gpulens_logship_queue_events"].rows == [((), 0.0)]


def test_a_timeout_after_the_server_indexed_is_a_409_on_retry_not_a_duplicate(standin: StandIn, tmp_path: Path) -> None:
    standin.state.timeout_after_index = 1
    standin.state.late_seconds = 1.0
    shipper = Shipper(_cfg(standin.url, tmp_path, request_timeout_seconds=0.3, batch_events=30))
    ids = [shipper.submit(_event(i)) for i in range(60)]
    shipper.start()
    assert shipper.flush(20)
    shipper.stop(0)
    _assert_exactly_once(standin, ids)
    assert shipper.shipped == 60
    assert shipper.retried == {"timeout": 30}
    assert [standin.state.attempts[i] for i in ids] == [2] * 30 + [1] * 30  # the first batch: sent twice, created once


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_an_outage_mid_run_loses_nothing(standin: StandIn, tmp_path: Path) -> None:
    shipper = Shipper(_cfg(standin.url, tmp_path, batch_events=20)).start()
    ids = [shipper.submit(_event(i)) for i in range(100)]
    assert shipper.flush(20)
    standin.state.down = True  # connections closed without an answer
    ids += [shipper.submit(_event(i)) for i in range(100, 200)]
    _wait(lambda: shipper.retried["connection"] >= 40, "the shipper did not retry through the outage")
    assert shipper.queued == 100 and not shipper.up  # waiting in the spool
    families = {f.name: f for f in shipper.collect()}
    assert families["gpulens_logship_up"].rows == [((), 0.0)]
    assert families["gpulens_logship_queue_events"].rows == [((), 100.0)]
    assert families["gpulens_logship_spool_bytes"].rows[0][1] > 0
    standin.state.down = False
    ids += [shipper.submit(_event(i)) for i in range(200, 300)]
    assert shipper.flush(30)
    shipper.stop(0)
    _assert_exactly_once(standin, ids)
    assert shipper.shipped == 300 and shipper.dropped == 0 and shipper.up


def test_a_hung_elasticsearch_never_blocks_submit_and_the_queue_drops_oldest(standin: StandIn) -> None:
    standin.state.gate = threading.Event()  # every bulk request hangs until released
    shipper = Shipper(_cfg(standin.url, queue_events=100, spool_max_bytes=64 * 1024, batch_events=10)).start()
    ids = [shipper.submit(_event(i, pad="x" * 200)) for i in range(3000)]  # returns although nothing is delivered
    shipper.spooler.run_once()
    assert shipper.dropped > 0
    standin.state.gate.set()
    assert shipper.flush(30)
    shipper.stop(0)
    delivered = set(standin.state.docs)
    assert shipper.shipped == len(delivered)
    assert shipper.shipped + shipper.dropped == 3000  # counters match: each event delivered or counted as dropped
    assert ids[-1] in delivered  # drop-oldest: the newest survive


def test_a_413_splits_the_batch_and_dead_letters_only_the_oversized_event(standin: StandIn, tmp_path: Path) -> None:
    standin.state.max_body = 4000
    shipper = Shipper(_cfg(standin.url, tmp_path, batch_events=100)).start()
    ids = [shipper.submit(_event(i)) for i in range(60)]
    big = shipper.submit(_event(60, pad="y" * 5000))
    assert shipper.flush(20)
    shipper.stop(0)
    _assert_exactly_once(standin, ids)
    assert shipper.dead_lettered == {"413": 1}
    assert [d["_id"] for d in _dead_letters(tmp_path / "spool" / "dead-letter.ndjson")] == [big]


def test_api_key_from_a_file_basic_auth_from_env_and_no_secret_in_logs(standin: StandIn, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "api-key"
    key.write_text("c2VjcmV0LWlkOnNlY3JldC1rZXk=\n")
    cfg = _cfg(standin.url, tmp_path, api_key_file=str(key))
    assert client_kwargs(cfg)["api_key"] == "c2VjcmV0LWlkOnNlY3JldC1rZXk="
    basic = client_kwargs(_cfg(standin.url, username="shipper"), env={"GPULENS_ELASTICSEARCH_PASSWORD": "hunter2"})
    assert basic["basic_auth"] == ("shipper", "hunter2") and "api_key" not in basic
    standin.state.fail_next = [401, 503]
    with caplog.at_level(logging.DEBUG):
        shipper = Shipper(cfg).start()
        shipper.submit(_event(1))
        assert shipper.flush(20)
        shipper.stop(0)
    bulk = [h for m, p, h in standin.state.requests if "_bulk" in p]
    assert all(h["authorization"] == "ApiKey c2VjcmV0LWlkOnNlY3JldC1rZXk=" for h in bulk)
    assert shipper.retried == {"auth": 1, "5xx": 1}
    text = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "scripted 401" in text  # the failure was logged …
    assert "c2VjcmV0" not in text and "hunter2" not in text  # … without the secret


def test_tls_with_a_ca_file(certdir: Path, tmp_path: Path) -> None:
    with StandIn(tls=(str(certdir / "cert.pem"), str(certdir / "key.pem"))) as es:
        shipper = Shipper(_cfg(es.url, tmp_path, ca_file=str(certdir / "cert.pem"))).start()
        rid = shipper.submit(_event(1))
        assert shipper.flush(20)
        shipper.stop(0)
        assert set(es.state.docs) == {rid}


def test_dead_letters_survive_a_cut_line_and_keep_each_id_once(tmp_path: Path) -> None:
    path = tmp_path / "dead.ndjson"
    log = logging.getLogger("test")
    first = DeadLetters(str(path), log)
    assert first.write("a", b'{"m":1}', 400, "400", {"type": "mapper_parsing_exception"})
    assert not first.write("a", b'{"m":1}', 400, "400", None)
    first.close()
    with open(path, "ab") as fh:
        fh.write(b'{"@timestamp":"2026-12-01T00:00:00.000Z","_id":"b","sta')  # killed mid-write
    again = DeadLetters(str(path), log)
    assert not again.write("a", b'{"m":1}', 400, "400", None)  # written before the restart
    assert again.write("b", b'{"m":2}', 400, "400", None)
    again.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["_id"], d["document"]) for d in lines] == [("a", {"m": 1}), ("b", {"m": 2})]
