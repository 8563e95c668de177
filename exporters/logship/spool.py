"""Where events wait for Elasticsearch: a disk spool that survives SIGKILL, or a bounded memory ring.

Both keep records `(id, document JSON)` in arrival order behind a read pointer and an acknowledged
cursor. The sender `read()`s a batch, delivers or dead-letters every event of it, then `ack()`s;
after a crash, everything past the last ack is read again, and the deterministic `_id` turns the
re-sends of already delivered events into 409s (= delivered), so nothing is lost or doubled.

Disk layout: numbered segment files of lines `<id> <json>\\n`, plus `cursor` ("<segment> <offset>"),
replaced atomically on each ack. A line cut short by a kill mid-write is cut off on open. Past
`max_bytes` whole segments are dropped oldest first (the one being read excepted) and counted.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

Record = tuple[str, bytes]  # (_id, the document's JSON, without newlines)

_SUFFIX = ".seg"
_CHUNK = 1 << 20


class Spool(Protocol):
    def append(self, records: Iterable[Record]) -> int:
        """Store records; returns how many old ones were dropped to stay under the cap."""

    def read(self, max_events: int, max_bytes: int) -> list[Record]:
        """The next records after the read pointer (at least one if any), advancing it."""

    def ack(self) -> None:
        """Everything read so far is resolved (delivered or dead-lettered): never read again."""

    @property
    def events(self) -> int:
        """Records not yet acknowledged."""

    @property
    def bytes(self) -> int:
        """Bytes of records not yet acknowledged."""

    def close(self) -> None: ...


class MemorySpool:
    """The spool without a disk: at most `max_bytes` of records in memory; the oldest dropped past it."""

    def __init__(self, max_bytes: int):
        self._max = max_bytes
        self._records: deque[Record] = deque()
        self._in_flight = 0  # records at the head handed out by read() and not yet acknowledged
        self._bytes = 0
        self._lock = threading.Lock()

    def append(self, records: Iterable[Record]) -> int:
        dropped = 0
        with self._lock:
            for record in records:
                self._records.append(record)
                self._bytes += len(record[1])
            while self._bytes > self._max and len(self._records) > self._in_flight:
                # drop the oldest record that is not in flight (those are being delivered right now)
                victim = self._records[self._in_flight]
                del self._records[self._in_flight]
                self._bytes -= len(victim[1])
                dropped += 1
        return dropped

    def read(self, max_events: int, max_bytes: int) -> list[Record]:
        with self._lock:
            out: list[Record] = []
            size = 0
            for i in range(self._in_flight, len(self._records)):
                record = self._records[i]
                if out and (len(out) >= max_events or size + len(record[1]) > max_bytes):
                    break
                out.append(record)
                size += len(record[1])
            self._in_flight += len(out)
            return out

    def ack(self) -> None:
        with self._lock:
            for _ in range(self._in_flight):
                self._bytes -= len(self._records.popleft()[1])
            self._in_flight = 0

    @property
    def events(self) -> int:
        return len(self._records)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        pass


class DiskSpool:
    """Segment files in `directory`; append and read from different threads under one lock."""

    def __init__(self, directory: str | Path, max_bytes: int, segment_bytes: int | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        # at least 8 segments under the cap, so dropping one is a small part of the spool
        self.segment_bytes = segment_bytes or max(64 * 1024, min(64 * 1024 * 1024, max_bytes // 8))
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        for path in sorted(self.dir.glob("*" + _SUFFIX)):
            seg = int(path.stem)
            self._sizes[seg], self._counts[seg] = self._scan(path)
        self._cursor = self._load_cursor()
        for seg in [s for s in self._sizes if s < self._cursor[0]]:
            self._remove(seg)  # fully acknowledged before the crash, not yet deleted
        if not self._sizes:
            self._sizes[self._cursor[0]], self._counts[self._cursor[0]] = 0, 0
        self._write_seg = max(self._sizes)
        self._writer = open(self._path(self._write_seg), "ab")  # noqa: SIM115 - kept open for the spool's life
        self._read_seg, self._read_off = self._cursor
        self._read_count = 0  # records read past the cursor, not yet acknowledged
        self._acked_in_head = self._count_before(self._cursor[0], self._cursor[1])

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}{_SUFFIX}"

    @staticmethod
    def _scan(path: Path) -> tuple[int, int]:
        """(size, records) of a segment, first cutting off a line a kill left half-written."""
        size, count, last_newline = 0, 0, 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                count += chunk.count(b"\n")
                i = chunk.rfind(b"\n")
                if i >= 0:
                    last_newline = size + i + 1
                size += len(chunk)
        if last_newline != size:
            os.truncate(path, last_newline)
        return last_newline, count

    def _count_before(self, seg: int, offset: int) -> int:
        if offset == 0 or seg not in self._sizes:
            return 0
        with open(self._path(seg), "rb") as fh:
            return fh.read(offset).count(b"\n")

    def _load_cursor(self) -> tuple[int, int]:
        try:
            seg_text, off_text = (self.dir / "cursor").read_text().split()
            seg, off = int(seg_text), int(off_text)
        except (OSError, ValueError):
            return (min(self._sizes) if self._sizes else 1, 0)
        if seg not in self._sizes:  # its segment was dropped or finished: start at the next one
            later = [s for s in self._sizes if s > seg]
            return (min(later), 0) if later else (seg, 0)
        return seg, min(off, self._sizes[seg])

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{self._cursor[0]} {self._cursor[1]}\n")
        os.replace(tmp, self.dir / "cursor")

    def _remove(self, seg: int) -> None:
        try:
            self._path(seg).unlink()
        except FileNotFoundError:
            pass
        self._sizes.pop(seg, None)
        self._counts.pop(seg, None)

    def append(self, records: Iterable[Record]) -> int:
        parts = [b"%b %b\n" % (rid.encode(), doc) for rid, doc in records]
        count = len(parts)
        if not count:
            return 0
        with self._lock:
            if self._sizes[self._write_seg] >= self.segment_bytes:
                self._writer.close()
                self._write_seg += 1
                self._sizes[self._write_seg], self._counts[self._write_seg] = 0, 0
                self._writer = open(self._path(self._write_seg), "ab")  # noqa: SIM115
            data = b"".join(parts)
            self._writer.write(data)
            self._writer.flush()  # in the kernel now: a SIGKILL cannot lose it
            self._sizes[self._write_seg] += len(data)
            self._counts[self._write_seg] += count
            return self._trim()

    def _trim(self) -> int:
        dropped = 0
        while self._bytes_locked() > self.max_bytes:
            victims = [s for s in self._sizes if s != self._read_seg and s != self._write_seg]
            if not victims:
                break
            seg = min(victims)
            dropped += self._counts[seg]
            self._remove(seg)
        return dropped

    def read(self, max_events: int, max_bytes: int) -> list[Record]:
        """The next records of the current segment (a batch never spans two segments)."""
        with self._lock:
            while True:
                size = self._sizes.get(self._read_seg, 0)
                if self._read_off < size:
                    break
                later = [s for s in self._sizes if s > self._read_seg]
                if not later or self._read_count:
                    return []  # caught up, or the rest of this segment is in flight
                # this segment is finished and acknowledged: go on with the next one
                self._remove(self._read_seg)
                self._read_seg, self._read_off, self._acked_in_head = min(later), 0, 0
                self._cursor = (self._read_seg, 0)
                self._save_cursor()
            want = min(max_bytes, size - self._read_off)
            with open(self._path(self._read_seg), "rb") as fh:
                fh.seek(self._read_off)
                data = fh.read(want)
                end = data.rfind(b"\n")
                while end < 0:  # one record bigger than max_bytes: read it whole anyway
                    more = fh.read(_CHUNK)
                    if not more:
                        return []
                    data += more
                    end = data.rfind(b"\n")
            lines = data[:end].split(b"\n", max_events)[:max_events]
            out: list[Record] = [(line[:i].decode(), line[i + 1:]) for line in lines for i in (line.index(b" "),)]
            self._read_off += sum(map(len, lines)) + len(lines)
            self._read_count += len(out)
            return out

    def ack(self) -> None:
        with self._lock:
            if (self._read_seg, self._read_off) == self._cursor:
                return
            self._acked_in_head += self._read_count
            self._read_count = 0
            self._cursor = (self._read_seg, self._read_off)
            self._save_cursor()

    def _bytes_locked(self) -> int:
        return sum(self._sizes.values()) - (self._cursor[1] if self._cursor[0] in self._sizes else 0)

    @property
    def events(self) -> int:
        with self._lock:
            return sum(self._counts.values()) - self._acked_in_head

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes_locked()

    def close(self) -> None:
        with self._lock:
            self._writer.close()
