"""`gpulens logship`: lines in, events out; SIGKILLed mid-flight and restarted from the spool, nothing lost or doubled."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gpulens import cli
from gpulens.exporters.logship import app
from gpulens.exporters.logship.config import LogshipConfig
from gpulens.exporters.logship.shipper import event_id
from tests.exporters.logship.standin import StandIn

LOG = logging.getLogger("test.logship")


def _lines(n: int, reject_every: int = 0) -> list[bytes]:
    out = []
    for i in range(n):
        doc = {"@timestamp": "2026-12-01T00:00:00.000Z", "message": f"line {i}", "event": {"action": "probe.failed"}}
        if reject_every and i % reject_every == 7:
            doc["labels"] = {"bad": "reject_me"}  # the stand-in refuses these with a 400 mapping error
        out.append(json.dumps(doc).encode())
    return out


def _ids(path: Path, lines: list[bytes]) -> list[str]:
    return [event_id(f"file:{path.resolve()}", i + 1, raw) for i, raw in enumerate(lines)]


def test_sigkill_mid_flight_then_restart_delivers_every_event_exactly_once(standin: StandIn, tmp_path: Path) -> None:
    lines = _lines(3000, reject_every=100)
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    ids = _ids(source, lines)
    rejected = {rid for rid, raw in zip(ids, lines, strict=True) if b"reject_me" in raw}
    spool = tmp_path / "spool"
    argv = [sys.executable, "-m", "gpulens", "logship", "--input", str(source), "--spool-dir", str(spool),
            "--elasticsearch-url", standin.url, "--namespace", "test", "--port", "0", "--listen-address", "127.0.0.1",
            "--batch-events", "100", "--backoff-max-seconds", "0.05", "--flush-interval-seconds", "0.02"]
    standin.state.hold_at = 5  # the 5th bulk is indexed, and its answer never reaches the killed shipper
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert standin.state.held.wait(30), first.stderr.read().decode() if first.poll() is not None else "no 5th bulk"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stderr.close()
    standin.state.release.set()
    before = dict(standin.state.creates)
    assert 0 < len(before) < 3000  # killed mid-flight: some delivered, most not

    second = subprocess.run(argv, capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    assert set(standin.state.docs) == set(ids) - rejected
    assert all(standin.state.creates[rid] == 1 for rid in standin.state.docs)  # exactly once by _id
    assert max(standin.state.attempts[rid] for rid in ids) == 2  # the in-flight batch was re-sent: 409s
    dead = [json.loads(line) for line in (spool / "dead-letter.ndjson").read_text().splitlines()]
    assert sorted(d["_id"] for d in dead) == sorted(rejected)  # exactly the rejected ones, each once
    assert {d["status"] for d in dead} == {400}
    stopped = [json.loads(line) for line in second.stderr.decode().splitlines() if line.startswith("{")]
    done = [r for r in stopped if r.get("event", {}).get("action") == "logship-stop"]
    assert done and "dead-lettered" in done[-1]["message"]


def test_stdin_lines_are_shipped_and_non_json_is_wrapped_not_lost(standin: StandIn, tmp_path: Path) -> None:
    cfg = LogshipConfig(elasticsearch_url=standin.url, namespace="test", port=0, listen_address="127.0.0.1",
                        flush_interval_seconds=0.02, backoff_max_seconds=0.05)
    stdin = io.BytesIO(b'{"@timestamp":"2026-12-01T00:00:00.000Z","message":"a"}\nplain text line\n{"message":"no time"}\n\n'
                       b'{"@timestamp":"2026-12-01T00:00:01.000Z","message":"last, no newline"}')
    assert app.run(cfg, LOG, stdin=stdin) == 0
    docs = sorted((json.loads(d) for d in standin.state.docs.values()), key=lambda d: d["message"])
    assert [d["message"] for d in docs] == ["a", "last, no newline", "no time", "plain text line"]
    assert docs[3]["tags"] == ["gpulens_unparsed"] and docs[3]["event"]["original"] == "plain text line"
    assert all("@timestamp" in d for d in docs)


def test_a_rerun_over_the_same_file_resumes_and_a_fresh_replay_is_all_409s(standin: StandIn, tmp_path: Path) -> None:
    lines = _lines(50)
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    kw = {"elasticsearch_url": standin.url, "namespace": "test", "port": 0, "listen_address": "127.0.0.1",
          "flush_interval_seconds": 0.02, "input": str(source)}
    assert app.run(LogshipConfig(spool_dir=str(tmp_path / "a"), **kw), LOG) == 0
    assert app.run(LogshipConfig(spool_dir=str(tmp_path / "a"), **kw), LOG) == 0  # resumes at the end: sends nothing
    assert max(standin.state.attempts.values()) == 1
    assert app.run(LogshipConfig(spool_dir=str(tmp_path / "b"), **kw), LOG) == 0  # a new spool: replays every line
    assert set(standin.state.docs) == set(_ids(source, lines))
    assert set(standin.state.attempts.values()) == {2} and set(standin.state.creates.values()) == {1}


def test_bad_flags_exit_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["logship", "--namespace", "Bad-NS"]) == 2
    assert "namespace: 'Bad-NS' is not a data stream namespace" in capsys.readouterr().err
    assert cli.main(["logship", "--elasticsearch-url", "es:9200", "--batch-events", "0"]) == 2
    err = capsys.readouterr().err
    assert "flag --batch-events: 0 is below the minimum 1" in err


def test_a_missing_secret_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["logship", "--api-key-file", str(tmp_path / "nope"), "--input", os.devnull, "--port", "0"])
    assert code == 2
    assert f"api_key_file: cannot read {tmp_path / 'nope'}" in capsys.readouterr().err


def test_metrics_while_running_then_sigterm_drains_and_exits_0(standin: StandIn, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "gpulens", "logship", "--elasticsearch-url", standin.url, "--namespace", "test",
            "--port", "0", "--listen-address", "127.0.0.1", "--flush-interval-seconds", "0.02"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(b"\n".join(_lines(20)) + b"\n")
        proc.stdin.flush()
        port = None
        while port is None:
            line = proc.stderr.readline()
            assert line, "logship exited before serving metrics"
            match = re.search(r"metrics on port (\d+)", json.loads(line)["message"])
            port = int(match.group(1)) if match else None
        deadline = time.monotonic() + 20
        text = ""
        while "gpulens_logship_shipped_total 20.0" not in text and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            time.sleep(0.02)
        assert "gpulens_logship_shipped_total 20.0" in text and "gpulens_logship_up 1.0" in text
        assert "gpulens_logship_queue_events 0.0" in text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert len(standin.state.docs) == 20
