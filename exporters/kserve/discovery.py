"""Finding InferenceServices, their pods and their model servers: the Kubernetes API or a static list.

Kubernetes mode lists and watches `serving.kserve.io/v1beta1` inferenceservices and the pods
labelled `serving.kserve.io/inferenceservice` with the official `kubernetes` client. Each resource
is one `Reflector`: a `gpulens.loop.Loop` whose step lists (a fresh resourceVersion), then watches
from it until the resync deadline, keeping a dict of parsed objects. A watch that ends in 410 Gone,
errors, or stays silent past the deadline (a dead proxy keeps the connection open) ends the step,
and the next step relists; API errors back off. The last listed state stays in the store
throughout, so the exporter keeps exporting it (and says how stale it is).

Static mode reads a YAML list of targets for model servers outside Kubernetes (`load_targets`).

For other components (the inference probe): `probe_targets(...)` turns InferenceServices into
`ProbeTarget`s, and `list_probe_targets(...)` lists them once from the API, without any thread:

    from gpulens.exporters.kserve.discovery import list_probe_targets
    for t in list_probe_targets(kubeconfig="", namespaces=("models",)):
        print(t.namespace, t.inferenceservice, t.model, t.url, t.protocol)
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from gpulens.config import ConfigError
from gpulens.loop import Backoff, Loop

ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
SERVER_ANNOTATION = "gpulens.io/server"  # on an InferenceService: override the detected server kind
SERVERS = ("kserve", "triton", "torchserve", "vllm")  # model-server kinds a target may name
PROTOCOLS = ("v1", "v2")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
WATCH_GRACE_SECONDS = 5.0  # a watch silent this long past its timeoutSeconds is dead (the server would have closed it)


# ---- parsed objects ------------------------------------------------------------------------------

def parse_time(text: Any) -> float | None:
    """RFC 3339 (`2026-12-01T10:00:00Z`, optional fraction) → epoch seconds; None if absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        base = text.rstrip("Z").split(".")[0].split("+")[0]
        return float(calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # True | False | Unknown
    last_transition: float | None
    reason: str = ""


@dataclass(frozen=True)
class Traffic:
    component: str
    revision: str
    tag: str
    latest: bool
    percent: float


@dataclass(frozen=True)
class InferenceService:
    """What the exporter needs of one InferenceService (missing status fields → None / empty)."""

    namespace: str
    name: str
    url: str = ""
    address_url: str = ""
    predictor_url: str = ""
    deployment_mode: str = ""
    model_format: str = ""
    runtime: str = ""
    protocol: str = "v1"
    server: str = "kserve"
    conditions: tuple[Condition, ...] = ()
    traffic: tuple[Traffic, ...] = ()
    revisions: tuple[tuple[str, str, str], ...] = ()  # (component, latestCreatedRevision, latestReadyRevision)
    transition_status: str = ""
    active_model_state: str = ""
    failed_copies: int | None = None

    @property
    def ready(self) -> bool | None:
        for c in self.conditions:
            if c.type == "Ready":
                return c.status == "True"
        return None


def detect_server(runtime: str, model_format: str, annotation: str = "") -> str:
    """The model-server kind behind a predictor: the annotation, else the runtime/format name."""
    if annotation in SERVERS:
        return annotation
    words = set(re.split(r"[^a-z0-9]+", f"{runtime} {model_format}".lower()))  # kserve-pytorchserver is not torchserve
    for kind, names in (("triton", ("triton", "tritonserver")), ("torchserve", ("torchserve",)),
                        ("vllm", ("vllm", "huggingface", "huggingfaceserver"))):
        if words & set(names):
            return kind
    return "kserve"


def parse_inference_service(obj: Mapping[str, Any]) -> InferenceService:
    """One InferenceService dict (as the API returns it) → InferenceService; tolerates missing status."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    model = _get(obj, "spec", "predictor", "model") or {}
    runtime = str(model.get("runtime") or "")
    model_format = str(_get(model, "modelFormat", "name") or "")
    if not model:  # old-style predictors: spec.predictor.<framework>: {...}
        spec_pred = _get(obj, "spec", "predictor") or {}
        model_format = next((k for k in spec_pred if isinstance(spec_pred[k], Mapping) and "storageUri" in spec_pred[k]), "")
        model = spec_pred.get(model_format) or {}
    protocol = str(model.get("protocolVersion") or ("v2" if "triton" in f"{runtime} {model_format}".lower() else "v1"))
    annotations = meta.get("annotations") or {}
    conditions = tuple(
        Condition(str(c.get("type")), str(c.get("status") or "Unknown"), parse_time(c.get("lastTransitionTime")),
                  str(c.get("reason") or ""))
        for c in status.get("conditions") or () if isinstance(c, Mapping) and c.get("type"))
    traffic, revisions = [], []
    for component, comp in (status.get("components") or {}).items():
        if not isinstance(comp, Mapping):
            continue
        for t in comp.get("traffic") or ():
            if isinstance(t, Mapping):
                try:
                    percent = float(t.get("percent") or 0)
                except (TypeError, ValueError):
                    percent = 0.0
                traffic.append(Traffic(component, str(t.get("revisionName") or ""), str(t.get("tag") or ""),
                                       bool(t.get("latestRevision")), percent))
        created, ready = comp.get("latestCreatedRevision"), comp.get("latestReadyRevision")
        if created or ready:
            revisions.append((component, str(created or ""), str(ready or "")))
    model_status = status.get("modelStatus") or {}
    failed = _get(model_status, "copies", "failedCopies")
    return InferenceService(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        url=str(status.get("url") or ""),
        address_url=str(_get(status, "address", "url") or ""),
        predictor_url=str(_get(status, "components", "predictor", "url") or ""),
        deployment_mode=str(status.get("deploymentMode") or annotations.get("serving.kserve.io/deploymentMode") or ""),
        model_format=model_format,
        runtime=runtime,
        protocol=protocol if protocol in PROTOCOLS else "v1",
        server=detect_server(runtime, model_format, str(annotations.get(SERVER_ANNOTATION) or "")),
        conditions=conditions,
        traffic=tuple(traffic),
        revisions=tuple(revisions),
        transition_status=str(model_status.get("transitionStatus") or ""),
        # KServe writes states.activeModelState; some versions put it at the top level
        active_model_state=str(_get(model_status, "states", "activeModelState") or model_status.get("activeModelState") or ""),
        failed_copies=int(failed) if isinstance(failed, (int, float)) else None,
    )


@dataclass(frozen=True)
class Pod:
    """What the exporter needs of one predictor/transformer pod."""

    namespace: str
    name: str
    uid: str
    inferenceservice: str
    component: str
    ip: str
    phase: str
    ready: bool
    crash_looping: bool
    deleting: bool
    node: str
    metrics_port: int
    metrics_path: str
    http_port: int
    queue_proxy: bool
    created: float | None = None
    scheduled: float | None = None
    initialized: float | None = None
    started: float | None = None
    ready_at: float | None = None


def _port(value: Any, default: int) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return default
    return port if 0 < port < 65536 else default


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    """One Pod dict → Pod. Metrics port/path from KServe's `prometheus.kserve.io/*` annotations."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or () if isinstance(c, Mapping)}
    statuses = [s for s in status.get("containerStatuses") or () if isinstance(s, Mapping)]
    containers = [c for c in _get(obj, "spec", "containers") or () if isinstance(c, Mapping)]
    main = next((c for c in containers if c.get("name") == "kserve-container"), containers[0] if containers else {})
    http_port = next((_port(p.get("containerPort"), 8080) for p in main.get("ports") or () if isinstance(p, Mapping)), 8080)
    main_status = next((s for s in statuses if s.get("name") == main.get("name")), {})
    ready_cond = conditions.get("Ready") or {}
    return Pod(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or meta.get("name") or ""),
        inferenceservice=str(labels.get(ISVC_LABEL) or ""),
        component=str(labels.get("component") or "predictor"),
        ip=str(status.get("podIP") or ""),
        phase=str(status.get("phase") or ""),
        ready=ready_cond.get("status") == "True",
        crash_looping=any(_get(s, "state", "waiting", "reason") == "CrashLoopBackOff" for s in statuses),
        deleting=bool(meta.get("deletionTimestamp")),
        node=str(_get(obj, "spec", "nodeName") or ""),
        metrics_port=_port(annotations.get("prometheus.kserve.io/port"), http_port),
        metrics_path=str(annotations.get("prometheus.kserve.io/path") or "/metrics"),
        http_port=http_port,
        queue_proxy=any(c.get("name") == "queue-proxy" for c in containers),
        created=parse_time(meta.get("creationTimestamp")),
        scheduled=parse_time((conditions.get("PodScheduled") or {}).get("lastTransitionTime")),
        initialized=parse_time((conditions.get("Initialized") or {}).get("lastTransitionTime")),
        started=parse_time(_get(main_status, "state", "running", "startedAt")),
        ready_at=parse_time(ready_cond.get("lastTransitionTime")) if ready_cond.get("status") == "True" else None,
    )


# ---- probe targets (shared with the inference probe) ------------------------------------------------

@dataclass(frozen=True)
class ProbeTarget:
    """One model to probe: where it is served and which protocol it speaks."""

    namespace: str
    inferenceservice: str
    model: str
    url: str  # base URL of the predictor (no path): cluster-local address if known, else the external URL
    protocol: str  # v1 | v2


def probe_targets(isvcs: Iterable[InferenceService]) -> Iterator[ProbeTarget]:
    """One target per InferenceService that has a URL; KServe names the served model after the InferenceService."""
    for isvc in isvcs:
        url = isvc.address_url or isvc.url or isvc.predictor_url
        if url:
            yield ProbeTarget(isvc.namespace, isvc.name, isvc.name, url.rstrip("/"), isvc.protocol)


def api_client(kubeconfig: str = "", context: str = "") -> Any:
    """A `kubernetes.client.ApiClient`: in-cluster config inside a pod (no kubeconfig given), else the kubeconfig."""
    import os

    from kubernetes import client, config

    configuration = client.Configuration()
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig or None, context=context or None, client_configuration=configuration)
    configuration.retries = False  # no hidden retries (3 × a slow API): the reflector's Loop backs off instead
    return client.ApiClient(configuration)


def list_probe_targets(kubeconfig: str = "", namespaces: Iterable[str] = (), label_selector: str = "",
                       context: str = "", timeout: float = 30.0, client: Any = None) -> list[ProbeTarget]:
    """List InferenceServices once (no threads, no watch) and return their probe targets."""
    api = client or api_client(kubeconfig, context)
    isvcs: list[InferenceService] = []
    try:
        for fn in _isvc_list_functions(api, tuple(namespaces), label_selector):
            items, _ = _list(fn, timeout)
            isvcs.extend(parse_inference_service(o) for o in items)
    finally:
        if client is None:
            api.close()
    return list(probe_targets(isvcs))


# ---- list + watch ------------------------------------------------------------------------------------

class KubeError(Exception):
    """The API answered with an error or not at all; str() names the verb and resource."""


class KubeForbidden(KubeError):
    """403: the service account lacks a verb on a resource (RBAC)."""


class KubeUnavailable(KubeError):
    """Connection refused, reset or timed out."""


class KubeServerError(KubeError):
    """5xx or 429 from the API server."""


ListFunction = Callable[..., Any]


def _describe(fn: ListFunction) -> tuple[str, str]:
    """(resource, scope) for messages, from the partial built by _isvc_list_functions/_pod_list_functions."""
    return getattr(fn, "resource", "?"), getattr(fn, "scope", "")


def _translate(err: Exception, verb: str, fn: ListFunction) -> KubeError:
    """A client/urllib3 exception → a KubeError whose message says what was refused and why."""
    from kubernetes.client.exceptions import ApiException

    resource, scope = _describe(fn)
    if isinstance(err, ApiException):
        message = ""
        try:
            message = json.loads(err.body or "{}").get("message", "") if err.body else ""
        except (ValueError, AttributeError):
            message = str(err.body)[:200]
        message = message or str(err.reason or "")
        if err.status == 403:
            return KubeForbidden(f"RBAC: the service account may not {verb} {resource} {scope}: {message} "
                                 f"(grant verbs list, watch on {resource})")
        if err.status in (429,) or (err.status or 0) >= 500:
            return KubeServerError(f"{verb} {resource} {scope}: HTTP {err.status} {message}")
        return KubeError(f"{verb} {resource} {scope}: HTTP {err.status} {message}")
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return KubeUnavailable(f"{verb} {resource} {scope}: {type(err).__name__}: {text[:300]}")


def _named(fn: Callable[..., Any], resource: str, scope: str, **fixed: Any) -> ListFunction:
    def call(**kwargs: Any) -> Any:
        return fn(**fixed, **kwargs)

    call.resource = resource  # type: ignore[attr-defined]
    call.scope = scope  # type: ignore[attr-defined]
    return call


def _isvc_list_functions(api: Any, namespaces: tuple[str, ...], label_selector: str) -> list[ListFunction]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    extra = {"label_selector": label_selector} if label_selector else {}
    resource = f"{ISVC_PLURAL}.{ISVC_GROUP}"
    if not namespaces:
        return [_named(custom.list_cluster_custom_object, resource, "at the cluster scope", group=ISVC_GROUP,
                       version=ISVC_VERSION, plural=ISVC_PLURAL, **extra)]
    return [_named(custom.list_namespaced_custom_object, resource, f'in namespace "{ns}"', group=ISVC_GROUP,
                   version=ISVC_VERSION, namespace=ns, plural=ISVC_PLURAL, **extra) for ns in namespaces]


def _pod_list_functions(api: Any, namespaces: tuple[str, ...]) -> list[ListFunction]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    if not namespaces:
        return [_named(core.list_pod_for_all_namespaces, "pods", "at the cluster scope", label_selector=ISVC_LABEL)]
    return [_named(core.list_namespaced_pod, "pods", f'in namespace "{ns}"', namespace=ns, label_selector=ISVC_LABEL)
            for ns in namespaces]


PAGE_SIZE = 500  # objects per list request, as client-go's informers page


def _list_pages(fn: ListFunction, timeout: float, page_size: int = PAGE_SIZE) -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A paginated list → (raw items, resourceVersion) per page. Raw JSON, not client models (1000 pods
    in ms, not seconds); pages keep the peak memory of a big list to one page of raw objects."""
    token = ""
    while True:
        kwargs: dict[str, Any] = {"limit": page_size}
        if token:
            kwargs["_continue"] = token
        try:
            resp = fn(_preload_content=False, _request_timeout=timeout, **kwargs)
            body = json.loads(resp.data)
        except Exception as err:  # noqa: BLE001 - every failure becomes a KubeError naming verb and resource
            raise _translate(err, "list", fn) from err
        items = body.get("items") or []
        yield [i for i in items if isinstance(i, dict)], str(_get(body, "metadata", "resourceVersion") or "")
        token = str(_get(body, "metadata", "continue") or "")
        if not token:
            return


def _list(fn: ListFunction, timeout: float) -> tuple[list[dict[str, Any]], str]:
    """Every page of a list → (raw items, resourceVersion of the list)."""
    items: list[dict[str, Any]] = []
    rv = ""
    for page, page_rv in _list_pages(fn, timeout):
        items.extend(page)
        rv = rv or page_rv
    return items, rv


@dataclass
class _StoreState:
    up: bool = False
    last_success: float | None = None
    relists: dict[str, int] = field(default_factory=dict)  # reason → count


class Reflector:
    """List then watch one resource (one namespace or all) into `store`, on its own Loop thread.

    Each step: list (→ resourceVersion), then watch from it until `resync_seconds` after the list.
    The step returns (and the next one relists) when the watch ends: 410 Gone (reason `expired`),
    a watch error (`error`), a watch silent past its timeout (`silent`), or the resync deadline
    (`resync`). List errors raise → the Loop backs off; the store keeps the last listed state.
    """

    def __init__(self, name: str, fn: ListFunction, parse: Callable[[dict[str, Any]], Any], resync_seconds: float,
                 timeout_seconds: float, log: logging.Logger, backoff: Backoff | None = None,
                 on_change: Callable[[], None] | None = None, watch_grace: float = WATCH_GRACE_SECONDS):
        self.name = name
        self.resource, self.scope = _describe(fn)
        self._fn = fn
        self._parse = parse
        self._resync = resync_seconds
        self._timeout = timeout_seconds
        self._log = log
        self._on_change = on_change
        self._grace = watch_grace
        self._lock = threading.Lock()
        self._store: dict[tuple[str, str], Any] = {}
        self.state = _StoreState()
        self._stopping = False
        self._watch: Any = None
        self._next_reason = "initial"
        self.loop = Loop(f"kube-{name}", self.step, 0.0, log, backoff or Backoff(base=1.0, cap=30.0), on_state=None)

    # store access
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._store.values())

    @property
    def listed(self) -> bool:
        return self.state.last_success is not None

    def start(self) -> Reflector:
        self.loop.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        watch = self._watch
        if watch is not None:
            watch.stop()  # shuts the socket down, unblocking a read
        self.loop.stop(timeout=2.0)

    def _success(self) -> None:
        self.state.up = True
        self.state.last_success = time.time()

    def step(self) -> None:
        """One list + watch cycle (the Loop calls it back to back; tests call it directly)."""
        rv = self.relist()
        self._next_reason = self._watch_until(rv, time.monotonic() + self._resync)

    def relist(self) -> str:
        """List into the store (replacing it); returns the list's resourceVersion. KubeError on failure."""
        reason, self._next_reason = self._next_reason, "error"  # if this list fails, the next one is a retry
        store = {}
        rv = ""
        try:
            for page, page_rv in _list_pages(self._fn, self._timeout):
                rv = rv or page_rv
                for raw in page:
                    try:
                        obj = self._parse(raw)
                    except Exception:  # noqa: BLE001 - one odd object must not hide the others
                        self._log.debug("skipping unparsable %s object", self.resource, exc_info=True)
                        continue
                    store[(obj.namespace, obj.name)] = obj
                del page
        except KubeError:
            self.state.up = False
            raise
        with self._lock:
            self._store = store
        self.state.relists[reason] = self.state.relists.get(reason, 0) + 1
        self._success()
        if self._on_change is not None:
            self._on_change()
        return rv

    def _watch_until(self, rv: str, deadline: float) -> str:
        """Watch from `rv` until the deadline; returns why the next list happens."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 1:
                return "resync"
            w = watch.Watch(return_type=object)
            self._watch = w
            try:
                for event in w.stream(self._fn, resource_version=rv, timeout_seconds=int(remaining),
                                      allow_watch_bookmarks=True,
                                      _request_timeout=(self._timeout, remaining + self._grace)):
                    rv = self._apply(event) or rv
                    if self._stopping:
                        return "stopped"
                self._success()  # the server ended the watch at timeoutSeconds: it is alive
            except ApiException as err:
                if err.status == 410:
                    self._success()
                    return "expired"
                self.state.up = False
                self._log_watch_error(_translate(err, "watch", self._fn))
                return "error"
            except Exception as err:  # noqa: BLE001 - urllib3 read timeouts, resets: relist
                if self._stopping:
                    return "stopped"
                if "timed out" in str(err).lower():
                    return "silent"  # no byte for timeoutSeconds + grace: the watch is dead, relist
                self.state.up = False
                self._log_watch_error(_translate(err, "watch", self._fn))
                return "error"
            finally:
                self._watch = None
        return "stopped"

    def _log_watch_error(self, err: KubeError) -> None:
        self.loop._state.failed(type(err).__name__, f"kube-{self.name} watch failed: {err}; relisting")

    def _apply(self, event: Mapping[str, Any]) -> str:
        kind = event.get("type")
        raw = event.get("raw_object") or {}
        rv = str(_get(raw, "metadata", "resourceVersion") or "")
        if kind == "BOOKMARK":
            return rv
        try:
            obj = self._parse(raw)
        except Exception:  # noqa: BLE001
            return rv
        with self._lock:
            if kind == "DELETED":
                self._store.pop((obj.namespace, obj.name), None)
            elif kind in ("ADDED", "MODIFIED"):
                self._store[(obj.namespace, obj.name)] = obj
        self._success()
        if self._on_change is not None:
            self._on_change()
        return rv


class KubeDiscovery:
    """Reflectors for InferenceServices and their pods; `snapshot()` gives the current (possibly stale) state."""

    def __init__(self, api: Any, namespaces: tuple[str, ...] = (), label_selector: str = "", resync_seconds: float = 300.0,
                 timeout_seconds: float = 30.0, log: logging.Logger | None = None, backoff: Backoff | None = None,
                 watch_grace: float = WATCH_GRACE_SECONDS):
        log = log or logging.getLogger("gpulens.kserve")
        self.isvcs = [Reflector(f"inferenceservices-{i}", fn, parse_inference_service, resync_seconds, timeout_seconds, log,
                                backoff, watch_grace=watch_grace)
                      for i, fn in enumerate(_isvc_list_functions(api, namespaces, label_selector))]
        self.pods = [Reflector(f"pods-{i}", fn, parse_pod, resync_seconds, timeout_seconds, log, backoff, watch_grace=watch_grace)
                     for i, fn in enumerate(_pod_list_functions(api, namespaces))]
        self.generation = 0  # bumped on every list and watch event: an unchanged value means an unchanged snapshot
        for r in self.reflectors:
            r._on_change = self._changed

    def _changed(self) -> None:
        self.generation += 1

    @property
    def reflectors(self) -> list[Reflector]:
        return self.isvcs + self.pods

    def start(self) -> KubeDiscovery:
        for r in self.reflectors:
            r.start()
        return self

    def stop(self) -> None:
        for r in self.reflectors:
            r._stopping = True
        for r in self.reflectors:
            r.stop()

    def snapshot(self) -> tuple[list[InferenceService], list[Pod]]:
        return ([i for r in self.isvcs for i in r.items()], [p for r in self.pods for p in r.items()])

    def health(self) -> dict[str, tuple[bool, float | None]]:
        """resource → (up, last success epoch): all namespaces' reflectors together (up only if all are)."""
        out: dict[str, tuple[bool, float | None]] = {}
        for group, resource in ((self.isvcs, ISVC_PLURAL), (self.pods, "pods")):
            lasts = [r.state.last_success for r in group]
            out[resource] = (all(r.state.up for r in group),
                             None if any(t is None for t in lasts) else min(t for t in lasts if t is not None))
        return out

    def relists(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for group, resource in ((self.isvcs, ISVC_PLURAL), (self.pods, "pods")):
            for r in group:
                for reason, n in r.state.relists.items():
                    out[(resource, reason)] = out.get((resource, reason), 0) + n
        return out


# ---- static targets ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StaticTarget:
    """A model server outside Kubernetes, from the targets file."""

    name: str  # exported as the `inferenceservice` label
    namespace: str
    url: str  # base URL for readiness (v1/v2 API)
    protocol: str
    server: str
    metrics_url: str
    models: tuple[str, ...]


def _check_url(value: Any, where: str, problems: list[str]) -> str:
    text = str(value or "")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{where}: {text!r} is not an http(s) URL with a host")
        return ""
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        problems.append(f"{where}: {text!r} has a bad port")
    return text.rstrip("/")


def check_namespaces(text: str) -> tuple[str, ...]:
    """`a,b` → ('a', 'b'); ConfigError naming each invalid namespace."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if not _DNS_LABEL.match(n)]
    if bad or (text.strip() and not names):
        raise ConfigError([f"namespaces: {n!r} is not a valid namespace name (lowercase RFC 1123 label)" for n in bad]
                          or ["namespaces: empty list"])
    return names


def parse_targets(data: Any, source: str = "targets") -> list[StaticTarget]:
    """The targets YAML (a list, or `{targets: [...]}`) → StaticTargets; ConfigError with one line per problem."""
    if isinstance(data, Mapping) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, list) or not data:
        raise ConfigError([f"{source}: expected a non-empty list of targets (name, namespace, url, protocol, server, metrics_url)"])
    problems: list[str] = []
    targets = []
    allowed = {"name", "namespace", "url", "protocol", "server", "metrics_url", "models"}
    for i, item in enumerate(data):
        where = f"{source}: targets[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: expected a mapping")
            continue
        for key in sorted(set(item) - allowed):
            problems.append(f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
        name = str(item.get("name") or "")
        if not name:
            problems.append(f"{where}: missing 'name'")
        namespace = str(item.get("namespace") or "")
        if not namespace:
            problems.append(f"{where}: missing 'namespace'")
        elif not _DNS_LABEL.match(namespace):
            problems.append(f"{where}: namespace {namespace!r} is not a valid namespace name")
        server = str(item.get("server") or "kserve")
        if server not in SERVERS:
            problems.append(f"{where}: unknown server kind {server!r} (allowed: {', '.join(SERVERS)})")
        protocol = str(item.get("protocol") or "v2")
        if protocol not in PROTOCOLS:
            problems.append(f"{where}: unknown protocol {protocol!r} (allowed: {', '.join(PROTOCOLS)})")
        if "url" not in item:
            problems.append(f"{where}: missing 'url'")
            url = ""
        else:
            url = _check_url(item.get("url"), f"{where}: url", problems)
        metrics_url = _check_url(item["metrics_url"], f"{where}: metrics_url", problems) if item.get("metrics_url") \
            else (url + "/metrics" if url else "")
        models = item.get("models") or [name]
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            problems.append(f"{where}: models must be a list of model names")
            models = [name]
        targets.append(StaticTarget(name, namespace, url, protocol, server, metrics_url, tuple(models)))
    if problems:
        raise ConfigError(problems)
    return targets


def load_targets(path: str) -> list[StaticTarget]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError([f"targets file {path}: {err.strerror}"]) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"targets file {path}: not valid YAML: {str(err).splitlines()[0]}"]) from err
    return parse_targets(data, f"targets file {path}")
