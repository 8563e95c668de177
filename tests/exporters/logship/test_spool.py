"""The spool: records survive reopening, a torn last line is cut, the cap drops the oldest and says how many."""

from __future__ import annotations

from pathlib import Path

from gpulens.exporters.logship.spool import DiskSpool, MemorySpool


def _records(start: int, n: int, size: int = 10) -> list[tuple[str, bytes]]:
    return [(f"id{i}", b'{"n":%d,"pad":"%s"}' % (i, b"x" * size)) for i in range(start, start + n)]


def test_read_ack_and_reopen_resume_after_the_last_ack(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    spool.append(_records(0, 10))
    first = spool.read(4, 1 << 20)
    assert [r[0] for r in first] == ["id0", "id1", "id2", "id3"]
    spool.ack()
    assert [r[0] for r in spool.read(3, 1 << 20)] == ["id4", "id5", "id6"]  # read, never acknowledged
    assert spool.events == 6
    spool.close()

    again = DiskSpool(tmp_path, max_bytes=1 << 20)  # a restart (or a SIGKILL) re-reads from the ack
    assert again.events == 6
    assert [r for r in again.read(100, 1 << 20)] == _records(4, 6)
    again.ack()
    assert again.events == 0 and again.bytes == 0
    again.close()


def test_a_line_cut_by_a_kill_is_dropped_on_open(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    spool.append(_records(0, 3))
    spool.close()
    [segment] = tmp_path.glob("*.seg")
    with open(segment, "ab") as fh:
        fh.write(b'id3 {"n":3,"pa')  # the writer was killed mid-record: never acknowledged to anyone
    again = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert again.events == 3
    assert again.read(10, 1 << 20) == _records(0, 3)
    again.append(_records(3, 1))
    assert again.read(10, 1 << 20) == _records(3, 1)


def test_segments_roll_and_batches_stay_inside_one(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    for i in range(0, 20, 2):
        spool.append(_records(i, 2))
    assert len(list(tmp_path.glob("*.seg"))) > 3
    seen = []
    while batch := spool.read(100, 1 << 20):
        seen += batch
        spool.ack()
    assert seen == _records(0, 20)
    assert len(list(tmp_path.glob("*.seg"))) == 1  # finished segments are deleted


def test_cap_drops_whole_oldest_segments_and_counts_them(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=600, segment_bytes=100)
    dropped = 0
    for i in range(0, 40, 2):
        dropped += spool.append(_records(i, 2))
    assert dropped > 0
    assert spool.bytes <= 600 + 100  # under the cap, give or take the segment being written
    remaining = []
    while batch := spool.read(100, 1 << 20):
        remaining += batch
        spool.ack()
    assert len(remaining) + dropped == 40
    ids = [int(r[0][2:]) for r in remaining]
    # the oldest are gone (segment 1 is kept: it was being read), the newest all kept, in order
    assert ids == sorted(ids) and ids[-1] == 39 and 39 - ids[2] < 39


def test_memory_spool_drops_oldest_but_never_the_batch_in_flight() -> None:
    spool = MemorySpool(max_bytes=sum(len(r[1]) for r in _records(0, 5)))
    spool.append(_records(0, 5))
    in_flight = spool.read(2, 1 << 20)
    assert spool.append(_records(5, 3)) == 3
    spool.ack()
    assert in_flight == _records(0, 2)
    assert [r[0] for r in spool.read(10, 1 << 20)] == ["id5", "id6", "id7"]
