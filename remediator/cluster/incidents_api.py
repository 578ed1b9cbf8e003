"""VigilIncident and VigilState objects through the official client's CustomObjectsApi: the
`ObjectAPI` the Kubernetes ledger (remediator.store.kubernetes) is given.

Expected outcomes are return values: create -> None on 409 AlreadyExists, replace -> None on 409
Conflict (a stale resourceVersion) or 404, get -> None on 404. The API being unreachable, slow,
overloaded or refusing (5xx, 429, 401/403, 422) raises ConnectionError: the ledger's caller
answers 503 and retries, it never guesses; a refusal that retrying cannot change (401, 403, 422...)
raises its subclass ConnectionRefusedError, which the ledger does not retry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from remediator.cluster.bounded import Bounded
from remediator.cluster.retry import TRANSIENT_STATUS, request, timeouts

GROUP, VERSION = "vigil.io", "v1alpha1"
FIELD_MANAGER = "vigil-remediator"


def _reason(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("reason", "")
    except ValueError:
        return ""


def _unavailable(exc: Exception, what: str) -> ConnectionError:
    """ConnectionError for what may pass (no answer, 408, 429, 5xx); its subclass
    ConnectionRefusedError for an answer that will not change by retrying (401, 403, 422...)."""
    if isinstance(exc, ApiException):
        text = f"{what}: {exc.status} {exc.reason} {_reason(exc)}".rstrip()
        if exc.status and 400 <= exc.status < 500 and exc.status not in TRANSIENT_STATUS:
            return ConnectionRefusedError(text)
        return ConnectionError(text)
    return ConnectionError(f"{what}: {type(exc).__name__}: {exc}")


_ABSENT = object()  # an expected "not there" / "someone else won" answer


class IncidentsAPI:
    def __init__(self, api_client: object, namespace: str, *, timeout: float = 10.0) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.timeout = namespace, timeout
        self._bounded = Bounded(32, "the Kubernetes API (ledger)")  # given-up calls still waiting, at most

    def _call(self, what: str, expected: tuple[int, ...], fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """One API call: _ABSENT for an expected status (409 on create, 404 on get...), ConnectionError
        (the backend cannot be written or read) for anything else."""
        try:
            return request(self._bounded, fn, GROUP, VERSION, self.namespace, *args, seconds=self.timeout, **kw)
        except ApiException as exc:
            if exc.status in expected:
                return _ABSENT
            raise _unavailable(exc, what) from exc
        except Exception as exc:
            raise _unavailable(exc, what) from exc

    def create(self, plural: str, body: dict) -> dict | None:
        # 409 AlreadyExists: another replica (or an earlier delivery) created it
        got = self._call(f"create {plural}", (409,), self.custom.create_namespaced_custom_object, plural, body,
                         field_manager=FIELD_MANAGER)
        return None if got is _ABSENT else got

    def replace(self, plural: str, body: dict) -> dict | None:
        name = body["metadata"]["name"]
        # body carries metadata.resourceVersion: the apiserver compares and swaps.
        # 409 Conflict: someone else wrote first; 404: deleted meanwhile
        got = self._call(f"replace {plural}/{name}", (404, 409), self.custom.replace_namespaced_custom_object,
                         plural, name, body, field_manager=FIELD_MANAGER)
        return None if got is _ABSENT else got

    def get(self, plural: str, name: str) -> dict | None:
        got = self._call(f"get {plural}/{name}", (404,), self.custom.get_namespaced_custom_object, plural, name)
        return None if got is _ABSENT else got

    def list(self, plural: str) -> tuple[list[dict], str]:
        items, token = [], None
        try:
            while True:
                page = request(self._bounded, self.custom.list_namespaced_custom_object, GROUP, VERSION,
                               self.namespace, plural, limit=500, _continue=token, seconds=self.timeout,
                               read=3 * self.timeout, total=4 * self.timeout)
                items += page.get("items", [])
                token = page.get("metadata", {}).get("continue")
                if not token:
                    return items, page.get("metadata", {}).get("resourceVersion", "")
        except Exception as exc:
            raise _unavailable(exc, f"list {plural}") from exc

    def delete(self, plural: str, name: str) -> bool:
        got = self._call(f"delete {plural}/{name}", (404,), self.custom.delete_namespaced_custom_object,
                         plural, name)
        return got is not _ABSENT

    def watch(self, plural: str, resource_version: str, timeout: int) -> Iterator[tuple[str, dict]]:
        """Events after `resource_version` for up to `timeout` seconds; ("ERROR", status) on 410 Gone."""
        w = watch.Watch()
        try:
            for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, plural,
                               resource_version=resource_version, timeout_seconds=timeout,
                               allow_watch_bookmarks=True, _request_timeout=timeouts(self.timeout, timeout + 10)):
                yield ev["type"], ev["object"]
        except ApiException as exc:
            if exc.status == 410:
                yield "ERROR", {}
                return
            raise _unavailable(exc, f"watch {plural}") from exc
        finally:
            w.stop()
