"""A watch-fed cache of what decisions read from the cluster, so a decision costs no API request.
It produces the same ClusterView as `remediator.cluster.view.read_cluster_view` (which LISTs).

Each resource (nodes always; namespaces, pods, Services, Deployments and StatefulSets only when a
rule needs them) is listed once, in pages,
then watched from the list's resourceVersion through the official client's `watch.Watch`. Events
are decoded as plain JSON (orjson) and reduced to the few fields the decision reads; nothing keeps
client model objects. A watch that ends is resumed from the last resourceVersion (bookmarks keep
it current); 410 Gone relists. Staleness is the time since the cache last heard from the API
server; past `max_staleness` the view is unavailable, so decisions defer instead of trusting it."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from remediator.cluster.kube import GPU_RESOURCE, Interrupted, Kube
from remediator.cluster.selector import compile_selector
from remediator.cluster.workloads import job_of, workload_of_raw
from remediator.domain.models import PAUSE_ANNOTATION, ClusterView, NodeView, PodView, Taint, WorkloadView

log = logging.getLogger(__name__)
WATCH_SECONDS = 60  # each watch request ends after this; resumed from its resourceVersion
PAGE = 500  # objects per LIST page: bounds the memory a relist takes


class _RawWatch(watch.Watch):
    """The official watch loop, decoding events as plain dicts (no model objects) with orjson."""

    def unmarshal_event(self, data: str, return_type: Any) -> dict | None:
        if not data or data.isspace():
            return None
        try:
            js = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        js["raw_object"] = js["object"]
        rv = (js["object"].get("metadata") or {}).get("resourceVersion")
        if rv and js.get("type") != "ERROR":
            self.resource_version = rv
        return js


def _intern(d: dict | None) -> dict[str, str]:
    """Label maps repeat across thousands of nodes and pods (zone, pool, instance type): share the strings."""
    return {sys.intern(k): sys.intern(v) for k, v in (d or {}).items()}


def _condition(obj: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _field_owner(meta: dict, *path: str) -> str:
    """As nodeview.field_owner, on plain JSON: the manager whose managedFields entry holds the field."""
    for entry in meta.get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        for part in path:
            fields = fields.get(f"f:{part}") if isinstance(fields, dict) else None
        if fields is not None:
            return entry.get("manager") or ""
    return ""


def _node_reducer(selector: str) -> Callable[[dict], tuple[str, NodeView]]:
    managed = compile_selector(selector)

    def reduce(obj: dict) -> tuple[str, NodeView]:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        gpus = str((status.get("capacity") or {}).get(GPU_RESOURCE, "0"))
        labels = _intern(meta.get("labels"))
        unschedulable = bool(spec.get("unschedulable"))
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("vigil.io/")}
        return meta["name"], NodeView(
            meta["name"], unschedulable, int(gpus) if gpus.isdigit() else 0, annotations, labels=labels,
            ready=_condition(obj, "Ready"),
            taints=tuple(Taint(t.get("key", ""), t.get("effect", ""), t.get("value") or "")
                         for t in spec.get("taints") or []),
            managed=managed(labels),
            unschedulable_owner=_field_owner(meta, "spec", "unschedulable") if unschedulable else "")
    return reduce


def _namespace(obj: dict) -> tuple[str, bool]:
    meta = obj["metadata"]
    return meta["name"], (meta.get("annotations") or {}).get(PAUSE_ANNOTATION) == "disabled"


class _Pod(NamedTuple):
    workload: str
    ready: bool
    node: str
    labels: dict[str, str]
    job: str = ""


def _pod(obj: dict) -> tuple[str, _Pod | None]:
    meta = obj["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    if meta.get("deletionTimestamp"):
        return key, None
    ready = (obj.get("status") or {}).get("phase") == "Running" and _condition(obj, "Ready")
    workload, labels = workload_of_raw(meta), _intern(meta.get("labels"))
    return key, _Pod(workload, ready, (obj.get("spec") or {}).get("nodeName") or "", labels,
                     job_of(labels, meta["namespace"], workload))


def _service(obj: dict) -> tuple[str, dict[str, str] | None]:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}", (obj.get("spec") or {}).get("selector") or None


def _replicas(kind: str) -> Callable[[dict], tuple[str, int]]:
    def reduce(obj: dict) -> tuple[str, int]:
        meta = obj["metadata"]
        return f"{kind}/{meta['namespace']}/{meta['name']}", int((obj.get("spec") or {}).get("replicas") or 0)
    return reduce


@dataclass
class _Resource:
    name: str
    list_fn: Callable[..., Any]
    reduce: Callable[[dict], tuple[str, Any]]
    selector: str = ""


class Informer:
    """One resource: list, then watch; the items it holds are the reduced values."""

    def __init__(self, kube: Kube, res: _Resource, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.res, self._clock = kube, res, clock
        self.items: dict[str, Any] = {}
        self.rv: str | None = None
        self.synced = threading.Event()
        self.last_contact = 0.0
        self.lists = 0
        self.gone = 0  # watches refused with 410 Gone (each followed by a relist)
        self.on_change: Callable[[], None] | None = None  # a reduced value changed (ClusterCache.listen)
        self.version = 0  # bumped after every change to `items`: an unchanged cache serves the same view
        self._watch: _RawWatch | None = None

    def _list(self) -> None:
        items: dict[str, Any] = {}
        token = None
        while True:
            kw = {"label_selector": self.res.selector} if self.res.selector else {}
            if token:
                kw["_continue"] = token
            page = orjson.loads(self.kube.page(self.res.list_fn, limit=PAGE, **kw))
            for obj in page.get("items") or []:
                key, value = self.res.reduce(obj)
                if value is not None:
                    items[key] = value
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        self.items, self.rv = items, meta.get("resourceVersion")
        self.version += 1
        self.lists += 1
        self.last_contact = self._clock()
        self.synced.set()

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        self.last_contact = self._clock()
        if kind == "BOOKMARK":
            self.rv = (obj.get("metadata") or {}).get("resourceVersion") or self.rv
            return
        key, value = self.res.reduce(obj)
        old = self.items.get(key)
        if kind == "DELETED" or value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value
        self.version += 1
        self.rv = (obj.get("metadata") or {}).get("resourceVersion") or self.rv
        if self.on_change is not None and old != (None if kind == "DELETED" else value):
            self.on_change()  # what the rails read changed (a node cordoned or returned), not a heartbeat

    def _watch_once(self) -> None:
        self._watch = _RawWatch()
        kw = {"label_selector": self.res.selector} if self.res.selector else {}
        connect = self.kube.timeout[0]
        for event in self._watch.stream(self.res.list_fn, resource_version=self.rv, timeout_seconds=WATCH_SECONDS,
                                        allow_watch_bookmarks=True, _request_timeout=(connect, WATCH_SECONDS + 15),
                                        **kw):
            self._apply(event)
            if self.kube.retrier.stopping.is_set():
                break
        self.last_contact = self._clock()  # the watch ended normally: nothing was missed

    def run(self) -> None:
        delay = 0.5
        stopping = self.kube.retrier.stopping
        while not stopping.is_set():
            try:
                if self.rv is None:
                    self._list()
                self._watch_once()
                delay = 0.5
            except Interrupted:
                return
            except ApiException as exc:
                if exc.status == 410:  # too old: list again
                    log.info("%s watch expired (410 Gone); relisting", self.res.name)
                    self.rv = None
                    self.gone += 1
                    continue
                log.warning("%s watch failed: %s %s", self.res.name, exc.status, exc.reason)
            except Exception as exc:  # reset, timeout, a bad event: resume from the last resourceVersion
                log.warning("%s watch failed: %s: %s", self.res.name, type(exc).__name__, exc)
            if stopping.wait(delay):
                return
            delay = min(delay * 2, 10.0)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()


@dataclass(frozen=True)
class Needs:
    """What the rules read besides nodes: namespaces (pause annotations), pods (drains, pod actions),
    Services and workloads (the availability of pod actions)."""
    namespaces: bool = False
    pods: bool = False
    services: bool = False


class ClusterCache:
    """The ClusterView, kept current by informers. `view()` costs no API request."""

    def __init__(self, kube: Kube, needs: Needs = Needs(), *, max_staleness: float = 180.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.needs, self.max_staleness, self._clock = kube, needs, max_staleness, clock
        core, apps = kube.core, client.AppsV1Api(kube.api)

        def informer(name: str, fn: Callable, reduce: Callable, wanted: bool = True) -> Informer | None:
            return Informer(kube, _Resource(name, fn, reduce), clock=clock) if wanted else None

        self.nodes = Informer(kube, _Resource("nodes", core.list_node, _node_reducer(kube.node_selector)), clock=clock)
        self.namespaces = informer("namespaces", core.list_namespace, _namespace, needs.namespaces)
        self.pods = informer("pods", core.list_pod_for_all_namespaces, _pod, needs.pods or needs.services)
        self.services = informer("services", core.list_service_for_all_namespaces, _service, needs.services)
        self.deployments = informer("deployments", apps.list_deployment_for_all_namespaces, _replicas("Deployment"),
                                    needs.services)
        self.statefulsets = informer("statefulsets", apps.list_stateful_set_for_all_namespaces,
                                     _replicas("StatefulSet"), needs.services)
        self._threads: list[threading.Thread] = []
        self._view: tuple[tuple[int, ...], ClusterView] | None = None

    @property
    def informers(self) -> list[Informer]:
        return [i for i in (self.nodes, self.namespaces, self.pods, self.services, self.deployments,
                            self.statefulsets) if i is not None]

    def start(self) -> None:
        for inf in self.informers:
            t = threading.Thread(target=inf.run, name=f"vigil-watch-{inf.res.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 2.0) -> None:
        self.kube.retrier.stopping.set()
        for inf in self.informers:
            inf.stop()
        for t in self._threads:
            t.join(timeout)

    def listen(self, changed: Callable[[], None]) -> None:
        """`changed` is called when a node or namespace changes what the rails read of it (a cordon,
        a return, a taint, a pause annotation), not on every heartbeat: the engine then decides the
        head of its waiting queue at once rather than at its next tick."""
        for inf in (self.nodes, self.namespaces):
            if inf is not None:
                inf.on_change = changed

    def wait_synced(self, timeout: float) -> bool:
        deadline = self._clock() + timeout
        return all(inf.synced.wait(max(deadline - self._clock(), 0)) for inf in self.informers)

    def staleness(self) -> float:
        """Seconds since the least recently heard-from informer heard from the API server (inf before sync)."""
        if not all(inf.synced.is_set() for inf in self.informers):
            return float("inf")
        return max(self._clock() - inf.last_contact for inf in self.informers)

    @property
    def synced(self) -> bool:
        return self.staleness() <= self.max_staleness

    def view(self) -> ClusterView:
        """The same object while no event arrived: what the rails derive from it (managed nodes,
        those out of service) is then computed once, not once per decision."""
        if not self.synced:
            return ClusterView(available=False)
        key = tuple(inf.version for inf in self.informers)
        cached = self._view
        if cached is not None and cached[0] == key:
            return cached[1]
        view = self._build()
        self._view = (key, view)
        return view

    def _build(self) -> ClusterView:
        paused = frozenset(k for k, v in dict(self.namespaces.items).items() if v) if self.namespaces else frozenset()
        pods, endpoints = self._pods()
        return ClusterView(dict(self.nodes.items), paused, True, pods, self._workloads(pods), endpoints)

    def _pods(self) -> tuple[dict[str, PodView], dict[str, frozenset[str]]]:
        if self.pods is None:
            return {}, {}
        raw: dict[str, _Pod] = dict(self.pods.items)
        if self.services is None:
            return {k: PodView(p.workload, p.ready, p.node, job=p.job) for k, p in raw.items()}, {}
        by_ns: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for key, selector in dict(self.services.items).items():
            by_ns.setdefault(key.split("/", 1)[0], []).append((key, selector))
        view, endpoints = {}, {key: set() for sel in by_ns.values() for key, _ in sel}
        for key, p in raw.items():
            svcs = tuple(s for s, sel in by_ns.get(key.split("/", 1)[0], [])
                         if all(p.labels.get(k) == v for k, v in sel.items()))
            view[key] = PodView(p.workload, p.ready, p.node, svcs, job=p.job)
            for s in svcs if p.ready else ():
                endpoints[s].add(key)
        return view, {k: frozenset(v) for k, v in endpoints.items()}

    def _workloads(self, pods: dict[str, PodView]) -> dict[str, WorkloadView]:
        if self.deployments is None or self.statefulsets is None:
            return {}
        ready: dict[str, int] = {}
        for p in pods.values():
            if p.workload and p.ready:
                ready[p.workload] = ready.get(p.workload, 0) + 1
        desired = {**dict(self.deployments.items), **dict(self.statefulsets.items)}
        return {k: WorkloadView(d, ready.get(k, 0)) for k, d in desired.items()}
