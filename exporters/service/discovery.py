"""The targets to probe: static ones from the config, and one per endpoint of a Service's
EndpointSlices (ready and not ready), followed with a watch, not a list per probe."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporters.service.config import Config, Discovery

log = logging.getLogger(__name__)
LABEL_NAMES = ("namespace", "service", "pod", "node", "zone", "target")


@dataclass(frozen=True)
class Target:
    key: str
    url: str
    module: str
    labels: dict[str, str] = field(hash=False, compare=False)
    ready: bool = True

    def label_values(self) -> tuple[str, ...]:
        return tuple(self.labels.get(n, "") for n in LABEL_NAMES)


class Targets:
    """The current target set, swapped atomically; readers get a consistent list."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_source: dict[str, dict[str, Target]] = {}
        self.version = 0
        self.changed = threading.Event()

    def replace(self, source: str, targets: list[Target]) -> None:
        with self._lock:
            new = {t.key: t for t in targets}
            if self._by_source.get(source) == new:
                return
            self._by_source[source] = new
            self.version += 1
        self.changed.set()

    def all(self) -> list[Target]:
        with self._lock:
            return [t for src in self._by_source.values() for t in src.values()]

    def count_by_source(self) -> dict[str, int]:
        counts = {"static": 0, "kubernetes": 0}
        with self._lock:
            for source, targets in self._by_source.items():
                counts["static" if source == "static" else "kubernetes"] += len(targets)
        return counts


def static_targets(config: Config) -> list[Target]:
    return [Target(f"static/{t.name}", t.url, t.module, {**t.labels, "target": t.name}) for t in config.targets]


def slice_targets(d: Discovery, slices: list[Any]) -> list[Target]:
    """EndpointSlice objects -> targets (pure: the tests check it without a cluster too)."""
    out = []
    for s in slices:
        port = None
        for p in s.ports or []:
            if p.name == d.port or p.port == d.port:
                port = p.port
        if port is None:
            continue
        for ep in s.endpoints or []:
            if not ep.addresses:
                continue
            ref = ep.target_ref
            pod = ref.name if ref is not None and ref.kind == "Pod" else ""
            addr = ep.addresses[0]
            host = f"[{addr}]" if ":" in addr else addr
            ready = bool(ep.conditions and ep.conditions.ready)
            labels = {"namespace": d.namespace, "service": d.service, "pod": pod, "node": ep.node_name or "",
                      "zone": ep.zone or "", "target": pod or addr}
            out.append(Target(f"{d.namespace}/{d.service}/{pod or addr}:{port}", f"{d.scheme}://{host}:{port}",
                              d.module, labels, ready))
    return out


class EndpointSliceWatch:
    """One thread per discovered Service: list, then watch; relist on 410 Gone or errors."""

    def __init__(self, d: Discovery, targets: Targets, api_client: Any, *,
                 on_error: Callable[[], None] = lambda: None) -> None:
        self.d, self.targets, self.api_client, self.on_error = d, targets, api_client, on_error
        self.source = f"k8s/{d.namespace}/{d.service}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{d.service}", daemon=True)
        self._watch = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.rest import ApiException

        api = client.DiscoveryV1Api(self.api_client)
        selector = f"kubernetes.io/service-name={self.d.service}"
        delay = 1.0
        while not self._stop.is_set():
            try:
                listed = api.list_namespaced_endpoint_slice(self.d.namespace, label_selector=selector)
                slices = {s.metadata.name: s for s in listed.items}
                self.targets.replace(self.source, slice_targets(self.d, list(slices.values())))
                rv = listed.metadata.resource_version
                self._watch = watch.Watch()
                for event in self._watch.stream(api.list_namespaced_endpoint_slice, self.d.namespace,
                                                label_selector=selector, resource_version=rv, timeout_seconds=60):
                    obj = event["object"]
                    if event["type"] == "DELETED":
                        slices.pop(obj.metadata.name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        slices[obj.metadata.name] = obj
                    self.targets.replace(self.source, slice_targets(self.d, list(slices.values())))
                    if self._stop.is_set():
                        return
                delay = 1.0
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: the resourceVersion expired; relist at once
                    self.on_error()
                    log.warning("discovery %s: %s", self.source, exc.reason)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # connection errors: keep the last known targets, retry
                self.on_error()
                log.warning("discovery %s: %s", self.source, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
