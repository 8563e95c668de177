"""A stand-in Kubernetes API server: list + watch of InferenceServices and Pods over real HTTP, with faults.

No real API server runs on these machines, so tests, benchmarks and demos point the official
`kubernetes` Python client at this one (through a kubeconfig it writes, see `kubeconfig()`), exactly
as they would at a cluster. It speaks what that client uses:

- `GET /apis/serving.kserve.io/v1beta1[/namespaces/{ns}]/inferenceservices` (custom objects) and
  `GET /api/v1[/namespaces/{ns}]/pods` (core/v1): a `…List` with `metadata.resourceVersion`;
- `limit` / `continue` pagination (`metadata.continue`, `remainingItemCount`);
- `?watch=true` (`watch=1`): a chunked stream of `{"type": "ADDED|MODIFIED|DELETED", "object": …}`
  lines from `resourceVersion` on (unset or "0": synthetic ADDED events for the current state
  first, as the real server does), ending after `timeoutSeconds`; a resourceVersion older than the
  kept history gets the real server's `ERROR` event with a 410 `Expired` Status;
- `labelSelector` (`k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`) and
  `fieldSelector` (`metadata.name`, `metadata.namespace`, `spec.nodeName`, `status.phase`, with
  `=`/`==`/`!=`); a watch sends ADDED/DELETED when an object starts/stops matching, as the real one.
- errors as `Status` bodies (kind Status, reason, code), the way the client's ApiException reads them.

Objects change at run time through `add`/`modify`/`delete` (or `apply`); every change gets the next
resourceVersion and goes to open watches at once. Faults, for the exporters' fault tests:

| method | what the client sees |
| --- | --- |
| `fail(500, count=2)` | the next 2 requests answer 500 InternalError (any status: 429, 503, …) |
| `forbid("pods", verbs=("watch",))` | 403 Forbidden naming the verb/resource, like RBAC |
| `delay(10)` | every response (list and watch headers) waits 10 s first |
| `expire()` | history dropped: open watches get ERROR 410 and close; resuming from an old rv → 410 |
| `silence(True)` | open and new watches stop delivering anything and never close (a dead proxy) |
| `down()` / `up()` | the port stops answering (connections refused) / serves again on the same port |

`requests` records (verb, resource, namespace, query) of every request for assertions. The class is
thread-safe; a test that starts it stops it (`with KubeAPI() as api:` does both).

Use: `api = KubeAPI().start(); api.add(inference_service(...)); api.kubeconfig(path)`; then
`kubernetes.config.load_kube_config(path)` and the client's `CustomObjectsApi`/`CoreV1Api` work.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One API resource the stand-in serves: group ('' = core), version, plural, kind."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`inferenceservices.serving.kserve.io` or `pods`, as RBAC messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


INFERENCESERVICES = Resource("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")
PODS = Resource("", "v1", "pods", "Pod")
RESOURCES = (INFERENCESERVICES, PODS)
SERVICE_ACCOUNT = "system:serviceaccount:gpulens:gpulens-kserve-exporter"

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)/?$")


def status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A metav1.Status body, as the API server sends with every error."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 410: "Expired", 429: "TooManyRequests",
           500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


# ---- selectors -------------------------------------------------------------------------------------

_SET_TERM = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(text: str) -> list[str]:
    """Split a selector on commas outside parentheses (`a in (x,y),b` → two terms)."""
    terms, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def _requirements(selector: str) -> list[tuple[str, str, frozenset[str]]]:
    """A label selector → (op, key, values) with op in exists, absent, eq, ne, in, notin; ValueError if malformed."""
    out = []
    for term in _split_terms(selector):
        m = _SET_TERM.match(term)
        if m:
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            out.append((m.group(2), m.group(1), values))
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            out.append(("ne", key, frozenset((value,))))
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            out.append(("eq", key, frozenset((value,))))
        elif term.startswith("!") and re.fullmatch(r"[\w./-]+", term[1:].strip()):
            out.append(("absent", term[1:].strip(), frozenset()))
        elif re.fullmatch(r"[\w./-]+", term):
            out.append(("exists", term, frozenset()))
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
    return out


def _holds(op: str, value: str | None, values: frozenset[str]) -> bool:
    if op == "exists":
        return value is not None
    if op == "absent":
        return value is None
    if op in ("eq", "in"):
        return value in values
    return value not in values  # ne, notin


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over a labels dict for a Kubernetes label selector; ValueError if malformed."""
    reqs = _requirements(selector)
    return lambda labels: all(_holds(op, labels.get(key), values) for op, key, values in reqs)


_FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace"),
           "spec.nodeName": ("spec", "nodeName"), "status.phase": ("status", "phase")}


def field_matcher(selector: str) -> Callable[[Obj], bool]:
    """A predicate over an object for a field selector (metadata.name/namespace, spec.nodeName, status.phase)."""
    reqs = []
    for term in _split_terms(selector):
        op = "ne" if "!=" in term else "eq"
        key, value = (s.strip() for s in re.split(r"!=|==|=", term, maxsplit=1))
        if key not in _FIELDS:
            raise ValueError(f"field label not supported: {key}")
        reqs.append((op, _FIELDS[key], frozenset((value,))))

    def match(obj: Obj) -> bool:
        return all(_holds(op, str((obj.get(a) or {}).get(b) or ""), values) for op, (a, b), values in reqs)

    return match


# ---- the server ------------------------------------------------------------------------------------

@dataclass
class _Event:
    rv: int
    type: str
    resource: Resource
    old: Obj | None  # the object before the change (None for ADDED)
    new: Obj | None  # after (None for DELETED)


@dataclass(frozen=True)
class Request:
    """One request the stand-in answered (or refused): for tests to assert what the client did."""

    verb: str  # list | watch
    resource: str  # plural
    namespace: str  # "" = all namespaces
    query: dict[str, str]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: KubeAPI

    def server_bind(self) -> None:  # no reverse DNS lookup (HTTPServer.server_bind calls getfqdn)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-watch is normal


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    server_version = "kube-apiserver-standin"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.api._serve(self)

    def _send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class KubeAPI:
    """The stand-in API server (see the module docstring): objects, watches and injected faults."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, history: int = 10_000):
        self.host = host
        self.port = port
        self.requests: list[Request] = []
        self._history_limit = history
        self._lock = threading.Condition()
        self._objects: dict[Resource, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCES}
        self._events: list[_Event] = []
        self._rv = 1000  # resourceVersions are opaque strings to clients; ours count up
        self._oldest = self._rv  # watches from before this rv get 410 Gone
        self._expired_generation = 0
        self._silent_generation = 0  # watches started before a silence() stay dead for good
        self._silent = False
        self._delay = 0.0
        self._fail: list[tuple[int, str]] = []  # queued (status, message) for the next requests
        self._forbidden: dict[tuple[str, str], str] = {}  # (plural, verb) -> message
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self) -> KubeAPI:
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.api = self
        self.port = int(httpd.server_address[1])  # keep the port: down()/up() come back on it
        self._closing = False
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="kubeapi-standin", daemon=True)
        self._thread.start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        """Stop listening and end every open watch; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def down(self) -> None:
        """The API server goes away: connections are refused until `up()`."""
        self.stop()

    def up(self) -> None:
        """Serve again on the same port after `down()`."""
        if self._httpd is None:
            self.start()

    def __enter__(self) -> KubeAPI:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kubeconfig(self, path: str, token: str = "standin-token", namespace: str = "default") -> str:
        """Write a kubeconfig for this server (plain HTTP, a bearer token) and return its path."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "standin", "preferences": {},
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": token}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin", "namespace": namespace}}],
        }
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)
        return path

    # ---- objects ----------------------------------------------------------------------------------

    @staticmethod
    def _resource_of(obj: Obj) -> Resource:
        for r in RESOURCES:
            if obj.get("kind") == r.kind:
                return r
        raise ValueError(f"the stand-in serves {', '.join(r.kind for r in RESOURCES)}, not {obj.get('kind')!r}")

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return meta.get("namespace") or "default", meta["name"]

    def _record(self, type_: str, resource: Resource, old: Obj | None, new: Obj | None) -> int:
        self._rv += 1
        if new is not None:
            new["metadata"]["resourceVersion"] = str(self._rv)
        self._events.append(_Event(self._rv, type_, resource, old, new))
        if len(self._events) > self._history_limit:
            drop = len(self._events) - self._history_limit
            self._oldest = self._events[drop - 1].rv
            del self._events[:drop]
        self._lock.notify_all()
        return self._rv

    def add(self, obj: Obj) -> Obj:
        """Create an object (InferenceService or Pod dict); returns the stored copy with uid/resourceVersion."""
        resource = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", resource.api_version)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        with self._lock:
            key = self._key(obj)
            if key in self._objects[resource]:
                raise KeyError(f"{resource.plural} {key[0]}/{key[1]} already exists")
            meta.setdefault("uid", f"{self._rv + 1:08x}-0000-4000-8000-{abs(hash(key)) % 10**12:012d}")
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
            self._objects[resource][key] = obj
            self._record("ADDED", resource, None, obj)
            return copy.deepcopy(obj)

    def modify(self, obj: Obj) -> Obj:
        """Replace an existing object (matched by kind, namespace and name)."""
        resource = self._resource_of(obj)
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("metadata", {}).setdefault("namespace", "default")
        with self._lock:
            key = self._key(obj)
            old = self._objects[resource].get(key)
            if old is None:
                raise KeyError(f"{resource.plural} {key[0]}/{key[1]} not found")
            for field in ("uid", "creationTimestamp"):
                obj["metadata"].setdefault(field, old["metadata"].get(field))
            self._objects[resource][key] = obj
            self._record("MODIFIED", resource, old, obj)
            return copy.deepcopy(obj)

    def apply(self, obj: Obj) -> Obj:
        """Add, or modify if it exists."""
        resource = self._resource_of(obj)
        with self._lock:
            exists = self._key({**obj, "metadata": {"namespace": "default", **obj.get("metadata", {})}}) in self._objects[resource]
        return self.modify(obj) if exists else self.add(obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete by kind ('InferenceService' or 'Pod'), namespace and name."""
        resource = self._resource_of({"kind": kind})
        with self._lock:
            old = self._objects[resource].pop((namespace, name))
            self._record("DELETED", resource, old, None)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        resource = self._resource_of({"kind": kind})
        with self._lock:
            return copy.deepcopy(self._objects[resource][(namespace, name)])

    def objects(self, kind: str) -> list[Obj]:
        resource = self._resource_of({"kind": kind})
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects[resource].values()]

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    # ---- faults -----------------------------------------------------------------------------------

    def fail(self, code: int = 500, count: int = 1, message: str = "") -> None:
        """The next `count` requests (list or watch, any resource) answer `code` with a Status body."""
        with self._lock:
            self._fail.extend([(code, message or f"stand-in: injected {code}")] * count)

    def clear_failures(self) -> None:
        with self._lock:
            self._fail.clear()
            self._forbidden.clear()

    def forbid(self, plural: str, verbs: Iterable[str] = ("list", "watch")) -> None:
        """RBAC missing: those verbs on `plural` answer 403 with the API server's message."""
        resource = next(r for r in RESOURCES if r.plural == plural)
        with self._lock:
            for verb in verbs:
                self._forbidden[(plural, verb)] = (
                    f'{resource.qualified} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
                    f'"{plural}" in API group "{resource.group}" at the cluster scope')

    def allow(self, plural: str) -> None:
        with self._lock:
            for key in [k for k in self._forbidden if k[0] == plural]:
                del self._forbidden[key]

    def delay(self, seconds: float) -> None:
        """Wait this long before answering each request (0 = off)."""
        self._delay = seconds

    def expire(self) -> None:
        """Drop the event history (etcd compaction): open watches get ERROR 410; every rv handed out before → 410."""
        with self._lock:
            self._events.clear()
            self._rv += 1  # every resourceVersion handed out before this call is now too old
            self._oldest = self._rv
            self._expired_generation += 1
            self._lock.notify_all()

    def silence(self, on: bool = True) -> None:
        """Watches stop delivering without closing (on); off: new watches work, the dead ones stay dead."""
        with self._lock:
            self._silent = on
            if on:
                self._silent_generation += 1
            self._lock.notify_all()

    # ---- serving ----------------------------------------------------------------------------------

    def _serve(self, h: _Handler) -> None:
        url = urlsplit(h.path)
        if url.path == "/version":
            h._send_json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-gpulens-standin"})
            return
        m = _PATH.match(url.path)
        resource = None
        if m:
            group, version = ("", m["core"]) if m["core"] else (m["group"], m["version"])
            resource = next((r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, m["plural"])), None)
        if m is None or resource is None:
            h._send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        namespace = m["ns"] or ""
        verb = "watch" if query.get("watch") in ("true", "1") else "list"
        with self._lock:
            self.requests.append(Request(verb, resource.plural, namespace, query))
            failure = self._fail.pop(0) if self._fail else None
            forbidden = self._forbidden.get((resource.plural, verb))
        if self._delay:
            time.sleep(self._delay)
        if failure is not None:
            code, message = failure
            h._send_json(code, status(code, REASONS.get(code, "InternalError"), message))
            return
        if forbidden is not None:
            if namespace:
                forbidden = forbidden.replace("at the cluster scope", f'in the namespace "{namespace}"')
            h._send_json(403, status(403, "Forbidden", forbidden, {"group": resource.group, "kind": resource.plural}))
            return
        try:
            labels = label_matcher(query.get("labelSelector", ""))
            fields = field_matcher(query.get("fieldSelector", ""))
        except ValueError as err:
            h._send_json(400, status(400, "BadRequest", str(err)))
            return

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj.get("metadata") or {}
            if namespace and meta.get("namespace") != namespace:
                return False
            return bool(labels(meta.get("labels") or {})) and bool(fields(obj))

        if verb == "list":
            self._list(h, resource, query, matches)
        else:
            self._watch(h, resource, query, matches)

    def _list(self, h: _Handler, resource: Resource, query: dict[str, str], matches: Any) -> None:
        """A list, paginated when asked (`limit`, `continue`): pages in (namespace, name) order.

        Later pages show the objects as they are then (the real server reads them at the first
        page's revision); a continue token older than the kept history is 410 Expired, as etcd
        compaction makes it.
        """
        limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else 0
        start, token_rv = 0, None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start, token_rv = int(token["start"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                h._send_json(400, status(400, "BadRequest", "continue key is not valid"))
                return
        with self._lock:
            if token_rv is not None and token_rv < self._oldest:
                gone = status(410, "Expired", "The provided continue parameter is too old to display a consistent list result.")
                h._send_json(410, gone)
                return
            keys = sorted(k for k, o in self._objects[resource].items() if matches(o))
            rv = str(token_rv if token_rv is not None else self._rv)
            page = keys[start:start + limit] if limit else keys[start:]
            items = [copy.deepcopy(self._objects[resource][k]) for k in page]
        meta: Obj = {"resourceVersion": rv}
        end = start + len(page)
        if limit and end < len(keys):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"rv": int(rv), "start": end}).encode()).decode()
            meta["remainingItemCount"] = len(keys) - end
        h._send_json(200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta,
                           "items": items})

    def _watch(self, h: _Handler, resource: Resource, query: dict[str, str], matches: Any) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        since_text = query.get("resourceVersion", "")
        h._start_stream()
        try:
            for line in self._stream(resource, since_text, deadline, matches):
                h._chunk(line)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            pass  # the client went away
        h.close_connection = True

    def _stream(self, resource: Resource, since_text: str, deadline: float, matches: Any) -> Iterator[bytes]:
        def line(type_: str, obj: Obj) -> bytes:
            return json.dumps({"type": type_, "object": obj}).encode() + b"\n"

        with self._lock:
            expired_gen, silent_gen = self._expired_generation, self._silent_generation
            if self._silent:
                silent_gen = -1  # born dead
            if since_text in ("", "0"):
                initial = [copy.deepcopy(o) for o in self._objects[resource].values() if matches(o)]
                since = self._rv
            else:
                initial = []
                since = int(since_text) if since_text.isdigit() else 0
                if since < self._oldest:
                    oldest = self._oldest
                    gone = status(410, "Expired", f"too old resource version: {since} ({oldest})")
                    initial = None  # type: ignore[assignment]
        if initial is None:
            yield line("ERROR", gone)
            return
        for obj in initial:
            yield line("ADDED", obj)
        while True:
            out: list[bytes] = []
            with self._lock:
                while True:
                    if self._closing:
                        return
                    dead = silent_gen != self._silent_generation or silent_gen == -1
                    if not dead and self._expired_generation != expired_gen:
                        out.append(line("ERROR", status(410, "Expired", "too old resource version: watch expired (compacted)")))
                        break
                    if not dead and time.monotonic() >= deadline:
                        return  # timeoutSeconds: the real server ends the stream cleanly
                    fresh = [e for e in self._events if e.rv > since and e.resource == resource] if not dead else []
                    if fresh:
                        break
                    self._lock.wait(0.2 if dead else max(0.01, min(0.2, deadline - time.monotonic())))
                for e in fresh if not out else []:
                    since = e.rv
                    was, now = matches(e.old), matches(e.new)
                    if now and was:
                        out.append(line("MODIFIED", copy.deepcopy(e.new)))  # type: ignore[arg-type]
                    elif now:
                        out.append(line("ADDED", copy.deepcopy(e.new)))  # type: ignore[arg-type]
                    elif was:
                        gone_obj = copy.deepcopy(e.old)
                        gone_obj["metadata"]["resourceVersion"] = str(e.rv)  # type: ignore[index]
                        out.append(line("DELETED", gone_obj))  # type: ignore[arg-type]
            yield from out
            if out and out[-1].startswith(b'{"type": "ERROR"'):
                return
