"""Adversarial: a guard is PromQL with the alert's labels spliced in, e.g. the example policy's
`min(probe_success{namespace="{{ labels.namespace }}", service="{{ labels.service }}", zone="zone-b"}) == 1`
("only shift traffic if the other zone is healthy"). Label values come from whoever sets them (a
scraped target, a forged alert with the intake credential); a value with a double quote closed the
string and rewrote the query: `x"}) == 1 or vector(1) #` made the guard hold whatever the zone's
health. Values spliced into a guard or verify query are escaped as PromQL string contents. Checked
against the real Prometheus (an instant query over an empty TSDB must return nothing)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import requests

from remediator.config import parse_config
from remediator.domain.decide import guard_query
from remediator.domain.models import Incident

GUARD = 'min(probe_success{namespace="{{ labels.namespace }}", service="{{ labels.service }}", zone="zone-b"}) == 1'
EVIL = 'x"}) == 1 or vector(1) #'


def _rule():
    config = parse_config({"prometheus": {"url": "http://127.0.0.1:9"}, "policy": {"rules": [{
        "name": "shift", "match": ['alertname="SloBurn"'], "guard": {"query": GUARD},
        "actions": [{"type": "failover_service", "params": {"namespace": "{{ labels.namespace }}",
                                                             "service": "{{ labels.service }}",
                                                             "selector": {"zone": "zone-b"}}}]}]}}, "adv.yaml")
    return config.rules[0]


def _incident(service: str) -> Incident:
    import datetime as dt

    return Incident("ab", dt.datetime.now(dt.UTC), {"alertname": "SloBurn", "namespace": "ml", "service": service})


def test_a_quote_in_a_label_cannot_close_the_string():
    query = guard_query(_rule(), _incident(EVIL))
    assert query == ('min(probe_success{namespace="ml", service="x\\"}) == 1 or vector(1) #", zone="zone-b"}) == 1')


def test_plain_values_render_as_before():
    assert guard_query(_rule(), _incident("llm")) == \
        'min(probe_success{namespace="ml", service="llm", zone="zone-b"}) == 1'


@pytest.fixture
def prometheus(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            assert proc.poll() is None, "Prometheus exited"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_injected_guard_does_not_hold_on_real_prometheus(prometheus):
    from remediator.cluster.prom import PromChecker

    result = PromChecker(prometheus, timeout=10).check(guard_query(_rule(), _incident(EVIL)))
    assert result.holds is False, result  # no probe_success series at all: the zone is not known healthy
