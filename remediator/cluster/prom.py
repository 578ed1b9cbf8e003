"""Guard and verify conditions evaluated against Prometheus (prometheus-api-client).

Every query is bounded: the configured timeout is the HTTP client's connect and read timeout, and
Prometheus is asked to give up at the same time. No automatic retries (the client's default would
retry a hung server three times with backoff): a check that does not answer in time is unknown,
and the rule's mode decides. After Prometheus failed to answer (timeout, refused, reset), checks in
the next `timeout` seconds are unknown at once: a hung Prometheus costs one timeout per window,
not one per incident, so the incidents queued behind a guarded one are not held up.

Each query is also given up at `timeout` in total, whatever the server does (cluster/bounded.py:
a server that trickles its answer byte by byte never trips a per-read timeout)."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from remediator.cluster.bounded import Bounded
from remediator.domain.models import CheckResult

MAX_QUERIES = 4  # queries in flight at once (the engine's guard plus verifications on the action workers)


class PromChecker:
    def __init__(self, url: str, timeout: float = 5.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._prom = PrometheusConnect(url=url, disable_ssl=not url.startswith("https"), timeout=timeout,
                                       retry=Retry(total=0, connect=0, read=0, status=0, redirect=0))
        self._timeout = timeout
        self._clock = clock
        self._down: tuple[float, str] | None = None  # when it last failed to answer, and how
        self._bounded = Bounded(MAX_QUERIES, "prometheus")
        self.url = url

    def _query(self, query: str) -> list:
        """custom_query, given up `timeout` after it started, whatever the server does."""
        return self._bounded.call(lambda: self._prom.custom_query(query, params={"timeout": f"{self._timeout:g}"}),
                                  self._timeout)

    def check(self, query: str) -> CheckResult:
        """Holds when the query returns at least one sample (as an alert expression does); unknown when
        Prometheus does not answer."""
        if self._down is not None and self._clock() - self._down[0] < self._timeout:
            return CheckResult.of(None, f"Prometheus at {self.url} did not answer {self._clock() - self._down[0]:.0f}"
                                        f" s ago ({self._down[1]}); not asked again yet")
        try:
            result = self._query(query)
        except Exception as exc:  # unreachable, hung, bad query, HTTP errors: the rule's mode decides
            if isinstance(exc, requests.ConnectionError | requests.Timeout):
                self._down = (self._clock(), type(exc).__name__)
            return CheckResult.of(None, f"Prometheus at {self.url} did not answer {query!r}: {type(exc).__name__}")
        self._down = None
        if result:
            return CheckResult.of(True, f"{query} returned {len(result)} series")
        return CheckResult.of(False, f"{query} returned nothing")

    def series(self, query: str) -> list[dict[str, str]] | None:
        """The label sets the query returns; None when Prometheus could not answer."""
        try:
            result = self._query(query)
        except Exception:
            return None
        return [dict(r.get("metric", {})) for r in result]
