"""The log shipper: ECS documents → Elasticsearch bulk `create` into `logs-gpulens-<namespace>`, losing nothing.

    gpulens_logship_shipped_total 120345

Callers `submit()` a document and return at once: it lands in a bounded in-memory queue (the oldest
is dropped and counted when full), so a slow or absent Elasticsearch never stalls the GPU sampler
or the probe. Two `Loop`s do the rest:
- `logship-spool` moves the queue into the spool (disk: survives restarts and SIGKILL);
- `logship-bulk` reads a batch from the spool, sends one bulk request and resolves every item:
  201 and 409 (its deterministic `_id` exists: a replay) are delivered; 429/5xx are retried with
  capped exponential backoff and jitter; 400/403/413 and mapping errors go to the dead-letter file.
  Only when every event of the batch is resolved is it acknowledged in the spool.
The client's own retries are off (`max_retries=0`): a transport retry after a timeout would index
twice under a random id; here a retry re-sends the same `_id`s and the server answers 409.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gpulens.config import ConfigError
from gpulens.exporters.logship.config import API_KEY_ENV, PASSWORD_ENV, LogshipConfig, redact
from gpulens.exporters.logship.spool import DiskSpool, MemorySpool, Record, Spool
from gpulens.logs import timestamp
from gpulens.loop import Backoff, Loop
from gpulens.metrics import logship as m

BulkFn = Callable[[bytes], Mapping[str, Any]]  # ndjson body -> the bulk response; raises on request failure
# What `filter_path` keeps of a bulk response: enough to resolve each item, a fraction of the bytes.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"


class RequestFailed(Exception):
    """A whole bulk request failed: `reason` is the retry label, `status` the HTTP status (0: none)."""

    def __init__(self, reason: str, message: str, status: int = 0):
        super().__init__(message)
        self.reason = reason
        self.status = status


class RetryLater(Exception):
    """Some events must be sent again after a backoff (the Loop waits, then the step resends them)."""


def event_id(source: str, sequence: int, document: bytes) -> str:
    """The deterministic `_id`: content hash + source + sequence, so a replay of the same event collides (409)."""
    return hashlib.blake2b(b"%s\0%d\0%s" % (source.encode(), sequence, document), digest_size=16).hexdigest()


def encode(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a document (sorted keys, no spaces): one line, the same bytes for the same event."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False).encode()


def _read_secret(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        raise ConfigError([f"{what}: cannot read {path}: {err.strerror}"]) from err


def client_kwargs(cfg: LogshipConfig, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `elasticsearch.Elasticsearch` from the config, the secret files and the environment."""
    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {
        "hosts": [u.strip() for u in cfg.elasticsearch_url.split(",")],
        "request_timeout": cfg.request_timeout_seconds,
        "max_retries": 0, "retry_on_timeout": False, "retry_on_status": (),  # retries are ours: see the module doc
    }
    api_key = _read_secret(cfg.api_key_file, "api_key_file") if cfg.api_key_file else env.get(API_KEY_ENV, "")
    if api_key:
        kwargs["api_key"] = api_key
    elif cfg.username:
        password = _read_secret(cfg.password_file, "password_file") if cfg.password_file else env.get(PASSWORD_ENV, "")
        kwargs["basic_auth"] = (cfg.username, password)
    if cfg.ca_file:
        if not Path(cfg.ca_file).is_file():
            raise ConfigError([f"ca_file: {cfg.ca_file} is not a file"])
        kwargs["ca_certs"] = cfg.ca_file
    return kwargs


def elasticsearch_bulk(cfg: LogshipConfig, client: Any = None) -> BulkFn:
    """A BulkFn over the official client (8.x), mapping its exceptions onto `RequestFailed`."""
    try:
        import elastic_transport
        import elasticsearch
    except ImportError as err:
        raise ConfigError(["elasticsearch client not installed: pip install 'gpulens[elk]'"]) from err
    es = client or elasticsearch.Elasticsearch(**client_kwargs(cfg))
    # The transport logs every request at INFO and every failure of the node at WARNING: during an
    # outage that is a line per retry. The Loop logs each state change once instead.
    logging.getLogger("elastic_transport.transport").setLevel(logging.WARNING)
    logging.getLogger("elastic_transport.node_pool").setLevel(logging.ERROR)

    def bulk(body: bytes) -> Mapping[str, Any]:
        try:
            # bytes pass through the client's ndjson serializer untouched (typed as a sequence of dicts only)
            response = es.bulk(index=cfg.data_stream, operations=body, filter_path=FILTER_PATH)  # type: ignore[arg-type]
        except elasticsearch.ApiError as err:
            status = int(err.meta.status)
            raise RequestFailed(_status_reason(status), f"bulk answered {status}: {str(err)[:300]}", status) from err
        except elastic_transport.ConnectionTimeout as err:
            raise RequestFailed("timeout", f"bulk timed out after {cfg.request_timeout_seconds}s") from err
        except (elastic_transport.TransportError, elasticsearch.UnsupportedProductError) as err:
            # connection refused/reset, TLS errors, a proxy answering instead of Elasticsearch
            raise RequestFailed("connection", f"bulk failed: {type(err).__name__}: {str(err)[:300]}") from err
        return response.body

    return bulk


def _status_reason(status: int) -> str:
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status in (401, 403):
        return "auth"
    return str(status)


class DeadLetters:
    """JSON lines of rejected events, each with its status and error; an `_id` is written once, even across restarts."""

    def __init__(self, path: str, log: logging.Logger):
        self.path = path
        self._log = log
        self._seen: set[str] = set()
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if os.path.exists(path):
                good = 0
                with open(path, "rb") as fh:
                    for line in fh:
                        if not line.endswith(b"\n"):
                            break  # cut by a kill mid-write: its event was not acknowledged, so it comes again
                        good += len(line)
                        try:
                            self._seen.add(json.loads(line)["_id"])
                        except (ValueError, KeyError, TypeError):
                            continue
                os.truncate(path, good)
            self._fh = open(path, "ab")  # noqa: SIM115 - kept open for the shipper's life

    def write(self, rid: str, document: bytes, status: int, reason: str, error: Mapping[str, Any] | None) -> bool:
        """Record one rejected event; False if this `_id` was already dead-lettered."""
        if rid in self._seen:
            return False
        self._seen.add(rid)
        head = {"@timestamp": timestamp(time.time()), "_id": rid, "status": status, "reason": reason, "error": error or {}}
        if not self.path:  # memory-only without a file: still never silent
            self._log.error(f"event {rid} rejected by Elasticsearch ({status} {reason}); no dead-letter file configured",
                            extra={"event": {"action": "logship-dead-letter", "outcome": "failure"}, "error": dict(error or {})})
            return True
        self._fh.write(json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"document":' + document + b"}\n")
        self._fh.flush()
        return True

    def close(self) -> None:
        if self.path:
            self._fh.close()


class Shipper:
    """Queue, spool and bulk sender for one data stream; `submit()` never blocks.

    `bulk` is injectable (tests, the benchmark); by default the official client built from `cfg`.
    """

    def __init__(self, cfg: LogshipConfig, bulk: BulkFn | None = None, log: logging.Logger | None = None,
                 source: str = ""):
        self.cfg = cfg
        self.log = log or logging.getLogger("gpulens.logship")
        self._bulk = bulk or elasticsearch_bulk(cfg)
        self.source = source or f"{os.uname().nodename}:{os.getpid()}"
        self.spool: Spool = DiskSpool(cfg.spool_dir, cfg.spool_max_bytes) if cfg.spool_dir else MemorySpool(cfg.spool_max_bytes)
        dead_path = cfg.dead_letter_file or (os.path.join(cfg.spool_dir, "dead-letter.ndjson") if cfg.spool_dir else "")
        self.dead_letters = DeadLetters(dead_path, self.log)
        self._seq = itertools.count(1)
        self._inbox: deque[Record] = deque()
        self._inbox_lock = threading.Lock()
        self._in_transit = 0  # taken from the inbox, not yet in the spool
        self._stats_lock = threading.Lock()
        self.shipped = 0
        self.dropped = 0
        self.retried: Counter[str] = Counter()
        self.dead_lettered: Counter[str] = Counter()
        self.up = False
        self.last_success: float | None = None
        self._pending: dict[str, bytes] = {}  # the batch being delivered: resolved items leave it
        self._attempts: Counter[str] = Counter()
        self._closing = False
        backoff = Backoff(base=min(0.5, cfg.backoff_max_seconds), cap=cfg.backoff_max_seconds, jitter=0.5)
        self.sender = Loop("logship-bulk", self._send_step, cfg.flush_interval_seconds, self.log, backoff=backoff)
        self.spooler = Loop("logship-spool", self._spool_step, min(0.05, cfg.flush_interval_seconds), self.log,
                            backoff=Backoff(base=0.1, cap=5.0))

    # --- the callers' side -------------------------------------------------------------------
    def submit(self, document: Mapping[str, Any] | bytes) -> str:
        """Queue one ECS document (a dict, or its JSON) for shipping; returns its `_id`. Never blocks on I/O."""
        body = document if isinstance(document, bytes) else encode(document)
        rid = event_id(self.source, next(self._seq), body)
        with self._inbox_lock:
            full = len(self._inbox) >= self.cfg.queue_events
            if full:
                self._inbox.popleft()
            self._inbox.append((rid, body))
            if len(self._inbox) * 2 >= self.cfg.queue_events:
                self.spooler.trigger()  # half full: move it to the spool now rather than at the next tick
        if full:
            with self._stats_lock:
                self.dropped += 1
        return rid

    def put(self, records: Iterable[Record]) -> None:
        """Store already identified records in the spool now (blocks on its I/O): for readers that may wait."""
        dropped = self.spool.append(records)
        if dropped:
            with self._stats_lock:
                self.dropped += dropped
        self.sender.trigger()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Shipper:
        self.spooler.start()
        self.sender.start()
        return self

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event is delivered or dead-lettered; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._inbox and not self._in_transit and self.spool.events == 0 and not self._pending:
                return True
            if time.monotonic() >= deadline:
                return False
            self.spooler.trigger()
            self.sender.trigger()
            time.sleep(0.01)

    def stop(self, drain_timeout: float = 5.0) -> bool:
        """Drain for up to `drain_timeout`, then stop; what is left stays in the disk spool for the next start."""
        self.spooler.run_once()
        drained = self.flush(max(drain_timeout, 0.0))
        self._closing = True
        self.spooler.stop()
        self.sender.stop()
        self._spool_step()  # anything submitted during the drain goes to disk, not away
        left = self.spool.events + len(self._inbox)
        if left:
            where = f"kept in the spool {self.cfg.spool_dir}" if self.cfg.spool_dir else "LOST (no spool_dir)"
            self.log.warning(f"logship stopped with {left} events undelivered: {where}",
                             extra={"event": {"action": "logship-stop", "outcome": "failure" if not self.cfg.spool_dir else "unknown"}})
        self.spool.close()
        self.dead_letters.close()
        return drained

    # --- the background steps ----------------------------------------------------------------
    def _spool_step(self) -> None:
        with self._inbox_lock:
            records, self._inbox = list(self._inbox), deque()
            self._in_transit += len(records)
        if not records:
            return
        try:
            dropped = self.spool.append(records)
        except OSError:
            overflow = 0
            with self._inbox_lock:  # keep them (still bounded): the Loop logs and backs off
                self._inbox.extendleft(reversed(records))
                self._in_transit -= len(records)
                while len(self._inbox) > self.cfg.queue_events:
                    self._inbox.popleft()
                    overflow += 1
            with self._stats_lock:
                self.dropped += overflow
            raise
        with self._inbox_lock:
            self._in_transit -= len(records)
        if dropped:
            with self._stats_lock:
                self.dropped += dropped
        self.sender.trigger()

    def _send_step(self) -> None:
        while not self._closing:
            if not self._pending:
                batch = self.spool.read(self.cfg.batch_events, self.cfg.batch_bytes)
                if not batch:
                    return
                self._pending = dict(batch)
            retry = self._deliver(list(self._pending.items()))
            if retry:
                raise RetryLater(f"{len(retry)} events answered {', '.join(sorted(retry))}; retrying")
            self.spool.ack()
            self._attempts.clear()

    def _deliver(self, records: list[Record]) -> set[str]:
        """Send records once; resolve what can be resolved; returns the retry reasons of those left pending."""
        body = b"".join([b'{"create":{"_id":"%b"}}\n%b\n' % (rid.encode(), doc) for rid, doc in records])
        try:
            response = self._bulk(body)
        except RequestFailed as err:
            if err.reason in ("429", "5xx", "auth", "timeout", "connection"):
                self.up = err.status != 0 and err.reason != "auth"
                with self._stats_lock:
                    self.retried[err.reason] += len(records)
                raise  # the whole request again, after the Loop's backoff
            if len(records) > 1:  # 413 or a 4xx for the whole body: split to find the culprits
                half = len(records) // 2
                return self._deliver(records[:half]) | self._deliver(records[half:])
            rid, doc = records[0]
            self._dead_letter(rid, doc, err.status, str(err.status), {"type": "request_rejected", "reason": str(err)[:500]})
            return set()
        self.up = True
        self.last_success = time.time()
        items = response.get("items") or []
        if not response.get("errors"):
            self._resolved(records, len(records))
            return set()
        if len(items) != len(records):
            raise RequestFailed("5xx", f"bulk answered {len(items)} items for {len(records)} events")
        delivered = 0
        reasons: set[str] = set()
        retries: Counter[str] = Counter()
        for (rid, doc), item in zip(records, items, strict=True):
            result = next(iter(item.values())) if item else {}
            status = int(result.get("status", 0))
            if 200 <= status < 300 or status == 409:
                delivered += 1
                self._pending.pop(rid, None)
            elif status == 429 or status >= 500:
                reason = _status_reason(status)
                self._attempts[rid] += 1
                if self._attempts[rid] >= self.cfg.max_item_attempts:
                    self._dead_letter(rid, doc, status, "retries_exhausted", result.get("error"))
                else:
                    retries[reason] += 1
                    reasons.add(reason)
            else:
                self._dead_letter(rid, doc, status, str(status), result.get("error"))
        with self._stats_lock:
            self.shipped += delivered
            self.retried.update(retries)
        return reasons

    def _resolved(self, records: list[Record], delivered: int) -> None:
        if len(records) == len(self._pending):  # the whole batch (the common case): no per-event work
            self._pending.clear()
        else:
            for rid, _ in records:
                self._pending.pop(rid, None)
        with self._stats_lock:
            self.shipped += delivered

    def _dead_letter(self, rid: str, doc: bytes, status: int, reason: str, error: Mapping[str, Any] | None) -> None:
        self.dead_letters.write(rid, doc, status, reason, error)
        self._pending.pop(rid, None)
        with self._stats_lock:
            self.dead_lettered[reason] += 1

    # --- metrics -----------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Events not yet resolved: in memory and in the spool."""
        return len(self._inbox) + self._in_transit + self.spool.events

    def collect(self) -> Iterator[Any]:
        """The shipper's families, fresh each call: `gpulens_logship_shipped_total 120345`."""
        with self._stats_lock:
            shipped, dropped = self.shipped, self.dropped
            retried, dead = dict(self.retried), dict(self.dead_lettered)
        families = {f: f.new() for f in (m.SHIPPED, m.RETRIED, m.DEAD_LETTERED, m.DROPPED, m.SPOOL_BYTES, m.QUEUE_DEPTH,
                                         m.LAST_SUCCESS, m.UP)}
        families[m.SHIPPED].add_metric([], shipped)
        for reason in sorted(retried):
            families[m.RETRIED].add_metric([reason], retried[reason])
        for reason in sorted(dead):
            families[m.DEAD_LETTERED].add_metric([reason], dead[reason])
        families[m.DROPPED].add_metric([], dropped)
        families[m.SPOOL_BYTES].add_metric([], self.spool.bytes)
        families[m.QUEUE_DEPTH].add_metric([], self.queued)
        if self.last_success is not None:
            families[m.LAST_SUCCESS].add_metric([], self.last_success)
        families[m.UP].add_metric([], 1.0 if self.up else 0.0)
        yield from families.values()

    def describe_target(self) -> str:
        return f"{redact(self.cfg.elasticsearch_url)} → {self.cfg.data_stream}"
