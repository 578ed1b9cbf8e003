"""Guard and verify conditions evaluated against Prometheus (prometheus-api-client).

Every query is bounded: the configured timeout is the HTTP client's connect and read timeout, and
Prometheus is asked to give up at the same time. No automatic retries (the client's default would
retry a hung server three times with backoff): a check that does not answer in time is unknown,
and the rule's mode decides."""

from __future__ import annotations

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from remediator.domain.models import CheckResult


class PromChecker:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self._prom = PrometheusConnect(url=url, disable_ssl=not url.startswith("https"), timeout=timeout,
                                       retry=Retry(total=0, connect=0, read=0, status=0, redirect=0))
        self._timeout = timeout
        self.url = url

    def check(self, query: str) -> CheckResult:
        """Holds when the query returns at least one sample (as an alert expression does); unknown when
        Prometheus does not answer."""
        try:
            result = self._prom.custom_query(query, params={"timeout": f"{self._timeout:g}"})  # seconds
        except Exception as exc:  # unreachable, hung, bad query, HTTP errors: the rule's mode decides
            return CheckResult.of(None, f"Prometheus at {self.url} did not answer {query!r}: {type(exc).__name__}")
        if result:
            return CheckResult.of(True, f"{query} returned {len(result)} series")
        return CheckResult.of(False, f"{query} returned nothing")

    def series(self, query: str) -> list[dict[str, str]] | None:
        """The label sets the query returns; None when Prometheus could not answer."""
        try:
            result = self._prom.custom_query(query, params={"timeout": f"{self._timeout:g}"})
        except Exception:
            return None
        return [dict(r.get("metric", {})) for r in result]
