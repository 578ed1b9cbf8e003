"""The service exporter against real local HTTP servers; discovery against the local cluster."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporters.http import serve
from exporters.service.config import ConfigError, parse_config
from exporters.service.exporter import build
from exporters.service.probes import Prober
from exporters.service.server import make_app
from tests.k8s.controlplane import free_port, wait_until

from .servers import Endpoint

MODULES = {
    "health": {"prober": "http", "timeout": "1s", "http": {"path": "/health"}},
    "slow": {"prober": "http", "timeout": "1s", "http": {"path": "/slow"}},
    "err": {"prober": "http", "timeout": "1s", "http": {"path": "/err"}},
    "hang": {"prober": "http", "timeout": "1s", "http": {"path": "/hang"}},
    "hang5": {"prober": "http", "timeout": "5s", "http": {"path": "/hang"}},
    "body": {"prober": "http", "timeout": "1s", "http": {"path": "/health", "body_regex": "^healthy$"}},
    "completion": {"prober": "inference", "timeout": "3s", "inference": {"api": "openai_completions", "model": "m"}},
    "chat": {"prober": "inference", "timeout": "3s", "inference": {"api": "openai_chat", "model": "m"}},
    "kserve": {"prober": "inference", "timeout": "3s", "inference": {"api": "kserve_v2", "model": "m"}},
    "tcp": {"prober": "tcp", "timeout": "1s"},
}


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


def config(targets, **kw):
    return parse_config({"interval": kw.pop("interval", "1s"), "modules": MODULES, "targets": targets, **kw},
                        "services.yaml")


@pytest.mark.parametrize(("module", "success", "reason", "status"), [
    ("health", True, "", 200), ("slow", False, "timeout", 0), ("err", False, "status", 500),
    ("hang", False, "timeout", 0), ("body", False, "body", 200), ("completion", True, "", 200),
    ("chat", True, "", 200), ("kserve", True, "", 200), ("tcp", True, "", 0),
])
def test_probe_modules(endpoint, module, success, reason, status):
    r = Prober(config([{"name": "x", "url": endpoint.url, "module": "health"}]).modules).probe(endpoint.url, module)
    assert (r.success, r.reason, r.status_code) == (success, reason, status), r
    if module in ("completion", "chat"):
        assert r.ttft is not None and 0 < r.ttft <= r.duration


def test_time_to_first_token_is_measured(endpoint):
    endpoint.first_token_delay = 0.3
    r = Prober(config([{"name": "x", "url": endpoint.url, "module": "health"}]).modules).probe(endpoint.url,
                                                                                              "completion")
    assert r.success and r.ttft >= 0.3 and r.duration >= r.ttft


def test_closed_port_is_a_connect_failure():
    url = f"http://127.0.0.1:{free_port()}"
    prober = Prober(config([{"name": "x", "url": url, "module": "health"}]).modules)
    assert prober.probe(url, "health").reason == "connect"
    assert prober.probe(url.replace("http", "tcp"), "tcp").reason == "connect"


@pytest.mark.parametrize(("data", "message"), [
    ({"modules": {"h": {"prober": "icmp"}}, "targets": []}, "module 'h': key 'prober'"),
    ({"modules": {"h": {"prober": "http", "http": {"valid_status_codes": ["200"]}}}}, "key 'valid_status_codes'"),
    ({"modules": {"h": {"prober": "http", "http": {"body_regex": "("}}}}, "key 'body_regex'"),
    ({"modules": {"h": {"prober": "http", "timeout": "soon"}}}, "key 'timeout'"),
    ({"modules": {"h": {"prober": "inference", "inference": {"api": "kserve_v2"}}}}, "key 'model'"),
    ({"modules": {"h": {"prober": "http"}}, "targets": [{"name": "a", "url": "ftp://x", "module": "h"}]},
     "targets[0]: key 'url'"),
    ({"modules": {"h": {"prober": "http"}}, "targets": [{"name": "a", "url": "http://x:1", "module": "nope"}]},
     "targets[0]: key 'module'"),
    ({"modules": {"h": {"prober": "http"}}, "targets": [{"name": "a", "url": "http://x:1", "module": "h",
                                                          "labels": {"job": "x"}}]}, "key 'labels'"),
    ({"modules": {"h": {"prober": "http"}}, "targets": [{"name": "a", "url": "http://x:1", "module": "h",
                                                          "colour": "red"}]}, "unknown key 'colour'"),
    ({"modules": {"h": {"prober": "http"}}}, "nothing to probe"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "services.yaml")
    assert message in str(err.value) and str(err.value).startswith("services.yaml")


def test_cli_bad_config_is_exit_2(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump({"modules": {"h": {"prober": "icmp"}}}))
    r = subprocess.run([sys.executable, "-m", "exporters.service.cli", "--config", str(bad)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "key 'prober'" in r.stderr and "Traceback" not in r.stderr


def metrics(url: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=10).text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict, name: str, **labels) -> float:
    found = [v for (n, lbl), v in m.items() if n == name and set(labels.items()) <= set(lbl)]
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.fixture
def running(endpoint):
    started = []

    def start(targets, **kw):
        exp = build(config(targets, **kw))
        httpd = serve(make_app(exp), "127.0.0.1", 0)
        exp.start()
        started.append((exp, httpd))
        return exp, f"http://127.0.0.1:{httpd.server_port}"

    yield start
    for exp, httpd in started:
        exp.stop()
        httpd.shutdown()


def test_probe_success_flips_within_one_interval(running, endpoint):
    exp, url = running([{"name": "llm-a", "url": endpoint.url, "module": "health",
                         "labels": {"namespace": "ml", "service": "llm", "zone": "zone-a"}}])
    wait_until(lambda: exp.scheduler.snapshot(), 5, what="first probe")
    assert value(metrics(url), "probe_success", target="llm-a", namespace="ml") == 1
    endpoint.health_status = 500
    requests_before = endpoint.requests
    wait_until(lambda: value(metrics(url), "probe_success", target="llm-a") == 0, 10, interval=0.05, what="flip")
    # Within one interval, counted in probes (not seconds, which a loaded machine stretches): the
    # first probe after the change, or the one already in flight and the next.
    assert endpoint.requests - requests_before <= 2
    m = metrics(url)
    assert value(m, "probe_http_status_code", target="llm-a") == 500
    assert value(m, "service_probe_failures_total", service="llm", zone="zone-a", reason="status") >= 1
    assert value(m, "service_probe_duration_seconds_count", service="llm", zone="zone-a", module="health") >= 2


def test_a_hanging_target_never_harms_the_others(running, endpoint):
    _, url = running([{"name": "hang", "url": endpoint.url, "module": "hang"},
                        {"name": "ok", "url": endpoint.url, "module": "health"},
                        {"name": "closed", "url": f"http://127.0.0.1:{free_port()}", "module": "health"}],
                       interval="500ms")
    time.sleep(3.2)
    m = metrics(url)
    assert value(m, "probe_success", target="ok") == 1
    assert value(m, "probe_success", target="closed") == 0
    ok_probes = value(m, "service_probe_duration_seconds_count", module="health")
    assert ok_probes >= 8, "the healthy and the closed target kept (roughly) their 0.5 s schedule"
    assert value(m, "service_exporter_probes_skipped_total") >= 1, "the hanging one was skipped, not stacked"
    assert value(m, "service_probe_failures_total", reason="timeout", module="hang") >= 1


def test_probe_endpoint_answers_like_blackbox(running, endpoint):
    _, url = running([{"name": "ok", "url": endpoint.url, "module": "health"}], interval="60s")
    r = requests.get(f"{url}/probe", params={"target": endpoint.url, "module": "completion"}, timeout=10)
    assert r.status_code == 200
    m = {s.name: s.value for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert m["probe_success"] == 1 and m["probe_http_status_code"] == 200
    assert 0 < m["probe_time_to_first_token_seconds"] <= m["probe_duration_seconds"]
    assert "service_probe_duration_seconds_count" not in r.text, "self-metrics only on /metrics"
    t = time.monotonic()
    r = requests.get(f"{url}/probe", params={"target": endpoint.url, "module": "hang5"},
                     headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.8"}, timeout=10)
    assert time.monotonic() - t < 4, "bounded by the header (0.8 - 0.5 s), not the module's 5 s"
    m = {(s.name, s.labels.get("reason")): s.value for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert m[("probe_success", None)] == 0 and m[("probe_failed_due_to", "timeout")] == 1
    bad = requests.get(f"{url}/probe", params={"target": "file:///etc/passwd", "module": "health"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_target"
    bad = requests.get(f"{url}/probe", params={"target": endpoint.url, "module": "nope"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "unknown_module"


def test_promtool_check_metrics_is_clean(running, endpoint):
    exp, url = running([{"name": "ok", "url": endpoint.url, "module": "completion",
                         "labels": {"namespace": "ml", "service": "llm", "zone": "z"}},
                        {"name": "bad", "url": endpoint.url, "module": "err"}])
    wait_until(lambda: len(exp.scheduler.snapshot()) == 2, 5, what="probes")
    body = requests.get(f"{url}/metrics", timeout=10).content
    promtool = shutil.which("promtool")
    assert promtool
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout + r.stderr).decode()


@pytest.mark.k8s
def test_discovery_follows_endpointslices_without_probing_pod_ips(k8s_cluster, unique):
    from kubernetes import client

    from exporters.service.config import Discovery
    from exporters.service.discovery import EndpointSliceWatch, Targets
    from tests.k8s.controlplane import add_gpu_nodes

    api = k8s_cluster.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = f"svc-{unique}"
    core.create_namespace({"metadata": {"name": ns}})
    add_gpu_nodes(api, [f"svc-{unique}-a", f"svc-{unique}-b"], pool=f"svc-{unique}")
    labels = {"app": "llm"}
    apps.create_namespaced_deployment(ns, {"metadata": {"name": "llm"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "nodeSelector": {"vigil.io/pool": f"svc-{unique}"}, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "s", "image": "example.invalid/llm", "ports": [{"name": "http",
                                                                                     "containerPort": 8000}]}]}}}})
    core.create_namespaced_service(ns, {"metadata": {"name": "llm"}, "spec": {
        "selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    targets = Targets()
    watch = EndpointSliceWatch(Discovery(ns, "llm", "health", "http"), targets, api)
    watch.start()  # discovery only: no scheduler, so nothing dials the simulated pod IPs
    try:
        found = wait_until(lambda: len(targets.all()) == 2 and targets.all(), 60, what="2 targets")
        for t in found:
            assert t.url.endswith(":8000") and t.labels["namespace"] == ns and t.labels["service"] == "llm"
            assert t.labels["pod"].startswith("llm-") and t.labels["node"].startswith(f"svc-{unique}")
            assert t.labels["zone"] in ("zone-a", "zone-b") and t.ready
        version = targets.version
        apps.patch_namespaced_deployment_scale("llm", ns, {"spec": {"replicas": 3}})
        wait_until(lambda: len(targets.all()) == 3, 60, what="the watch sees the new endpoint")
        victim = found[0].labels["pod"]
        core.delete_namespaced_pod(victim, ns)
        wait_until(lambda: victim not in {t.labels["pod"] for t in targets.all()}, 60, what="deleted pod goes away")
        assert targets.version > version
    finally:
        watch.stop()
