"""Local label selectors agree with the API server's on the same nodes."""

from __future__ import annotations

import pytest
from kubernetes import client

from remediator.cluster.selector import compile_selector
from tests.k8s.controlplane import gpu_node

SELECTORS = ["", "vigil.io/pool=p1", "vigil.io/pool==p1", "vigil.io/pool!=p1", "vigil.io/pool in (p1, p2)",
             "vigil.io/pool notin (p1,p2)", "extra", "!extra", "vigil.io/pool=p1,extra",
             "topology.kubernetes.io/zone in (z-a),!extra", "vigil.io/pool=p3"]


def test_bad_syntax_is_an_error():
    with pytest.raises(ValueError):
        compile_selector("a in b")


@pytest.mark.k8s
def test_local_selectors_match_the_api_server(k8s_api, unique):
    core = client.CoreV1Api(k8s_api.api_client())
    names = []
    for i, (pool, zone, extra) in enumerate([("p1", "z-a", True), ("p1", "z-b", False), ("p2", "z-a", False),
                                             ("p3", "z-b", True)]):
        body = gpu_node(f"sel-{unique}-{i}", pool=pool, zone=zone)
        body["metadata"]["labels"]["sel-test"] = unique
        if extra:
            body["metadata"]["labels"]["extra"] = "yes"
        core.create_node(body)
        names.append(body["metadata"]["name"])
    try:
        nodes = core.list_node(label_selector=f"sel-test={unique}").items
        for sel in SELECTORS:
            full = f"sel-test={unique}" + (f",{sel}" if sel else "")
            want = {n.metadata.name for n in core.list_node(label_selector=full).items}
            match = compile_selector(sel)
            assert {n.metadata.name for n in nodes if match(n.metadata.labels or {})} == want, sel
    finally:
        for n in names:
            core.delete_node(n)
