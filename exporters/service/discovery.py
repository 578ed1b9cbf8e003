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
        self.healthy = True  # False from a failed list or watch until the next list succeeds

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
                self.healthy = True
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
                    self.healthy = False
                    self.on_error()
                    log.warning("discovery %s: %s", self.source, exc.reason)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            except Exception as exc:  # connection errors: keep the last known targets, retry
                self.healthy = False
                self.on_error()
                log.warning("discovery %s: %s", self.source, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)


def kube_client(kubeconfig: str | None) -> Any:
    """A Kubernetes API client from the kubeconfig, or from the in-cluster config without one.
    Raises DiscoveryUnavailable with a one-line reason (no file, no service account, bad config)."""
    from kubernetes import client
    from kubernetes import config as kconfig

    cfg = client.Configuration()
    try:
        if kubeconfig:
            kconfig.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            kconfig.load_incluster_config(client_configuration=cfg)
    except (kconfig.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster config"
        raise DiscoveryUnavailable(f"{where}: {' '.join(str(exc).split()) or type(exc).__name__}") from exc
    return client.ApiClient(cfg)


class DiscoveryUnavailable(Exception):
    """Discovery cannot start: no Kubernetes client can be made. The message is one line."""


class KubeDiscovery:
    """Kubernetes discovery's lifecycle. The client is made on a thread of its own, retried with
    backoff while it cannot be (Prometheus keeps running when a service discovery fails, and says so
    in a metric); the static targets are probed meanwhile. `up` is what
    service_exporter_discovery_up exports: the client is made and every watch's last list worked."""

    def __init__(self, discoveries: list[Discovery], targets: Targets, *, connect: Callable[[], Any],
                 on_error: Callable[[], None] = lambda: None, backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.discoveries, self.targets, self.connect, self.on_error = discoveries, targets, connect, on_error
        self.backoff = backoff
        self.watches: list[EndpointSliceWatch] = []
        self.reason = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)

    @property
    def up(self) -> bool:
        return bool(self.watches) and all(w.healthy for w in self.watches)

    def try_connect(self) -> bool:
        """One attempt to make the client and start the watches; False with `reason` set if it failed."""
        if self.watches:
            return True
        try:
            api_client = self.connect()
        except DiscoveryUnavailable as exc:
            self.reason = str(exc)
            self.on_error()
            return False
        self.reason = ""
        self.watches = [EndpointSliceWatch(d, self.targets, api_client, on_error=self.on_error)
                        for d in self.discoveries]
        if not self._stop.is_set():
            for w in self.watches:
                w.start()
        return True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for w in self.watches:
            w.stop()

    def _run(self) -> None:
        delay, logged = self.backoff[0], ""
        while not self._stop.is_set() and not self.try_connect():
            if self.reason != logged:
                log.warning("discovery cannot start (static targets are still probed; retrying with backoff): %s",
                            self.reason)
                logged = self.reason
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])
        if self.watches and logged:
            log.info("discovery started after: %s", logged)
