"""A watch-fed cache of what decisions read from the cluster, so a decision costs no API request.

Each resource (nodes; namespaces and pods only when a rule needs them) is listed once, in pages,
then watched from the list's resourceVersion through the official client's `watch.Watch`. Events
are decoded as plain JSON (orjson) and reduced to the few fields the decision reads; nothing keeps
client model objects. A watch that ends is resumed from the last resourceVersion (bookmarks keep
it current); 410 Gone relists. Staleness is the time since the cache last heard from the API
server; past `max_staleness` the view is unavailable, so decisions defer instead of trusting it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kubernetes import watch
from kubernetes.client.rest import ApiException

from remediator.cluster.kube import GPU_RESOURCE, Interrupted, Kube
from remediator.cluster.workloads import workload_of_raw
from remediator.domain.models import PAUSE_ANNOTATION, ClusterView, NodeView

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


def _node(obj: dict) -> tuple[str, NodeView]:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    gpus = str((status.get("capacity") or {}).get(GPU_RESOURCE, "0"))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("vigil.io/")}
    return meta["name"], NodeView(meta["name"], bool(spec.get("unschedulable")), int(gpus) if gpus.isdigit() else 0,
                                  annotations)


def _namespace(obj: dict) -> tuple[str, bool]:
    meta = obj["metadata"]
    return meta["name"], (meta.get("annotations") or {}).get(PAUSE_ANNOTATION) == "disabled"


def _pod(obj: dict) -> tuple[str, str | None]:
    meta = obj["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    return key, None if meta.get("deletionTimestamp") else workload_of_raw(meta)


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
        self._watch: _RawWatch | None = None

    def _list(self) -> None:
        items: dict[str, Any] = {}
        token = None
        while True:
            kw = {"label_selector": self.res.selector} if self.res.selector else {}
            if token:
                kw["_continue"] = token
            resp = self.kube.call(self.res.list_fn, limit=PAGE, _preload_content=False, **kw)
            page = orjson.loads(resp.data)
            for obj in page.get("items") or []:
                key, value = self.res.reduce(obj)
                if value is not None:
                    items[key] = value
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
        self.items, self.rv = items, meta.get("resourceVersion")
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
        if kind == "DELETED" or value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value
        self.rv = (obj.get("metadata") or {}).get("resourceVersion") or self.rv

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


class ClusterCache:
    """The ClusterView, kept current by informers. `view()` costs no API request."""

    def __init__(self, kube: Kube, *, namespaces: bool, pods: bool, max_staleness: float = 180.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.max_staleness, self._clock = kube, max_staleness, clock
        core = kube.core
        self.nodes = Informer(kube, _Resource("nodes", core.list_node, _node, kube.node_selector), clock=clock)
        self.namespaces = Informer(kube, _Resource("namespaces", core.list_namespace, _namespace),
                                   clock=clock) if namespaces else None
        self.pods = Informer(kube, _Resource("pods", core.list_pod_for_all_namespaces, _pod),
                             clock=clock) if pods else None
        self._threads: list[threading.Thread] = []

    @property
    def informers(self) -> list[Informer]:
        return [i for i in (self.nodes, self.namespaces, self.pods) if i is not None]

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
        if not self.synced:
            return ClusterView(available=False)
        paused = frozenset(k for k, v in dict(self.namespaces.items).items() if v) if self.namespaces else frozenset()
        pods = dict(self.pods.items) if self.pods else {}
        return ClusterView(dict(self.nodes.items), paused, pods=pods)
