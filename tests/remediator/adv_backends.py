"""Both ledgers (SQLite, Kubernetes on the local apiserver) for the adversarial converge tests."""

from __future__ import annotations

import pytest
from kubernetes import client

from remediator.store.ledger import SQLiteLedger

from .ledgers import open_kubernetes


@pytest.fixture(params=["sqlite", "kubernetes"])
def any_ledger(request, tmp_path, unique):
    if request.param == "sqlite":
        lg = SQLiteLedger(str(tmp_path / "ledger.db"))
    else:
        cp = request.getfixturevalue("vigil_crds")  # tests/remediator/conftest.py
        ns = f"adv-{unique}"
        client.CoreV1Api(cp.api_client()).create_namespace({"metadata": {"name": ns}})
        lg = open_kubernetes(cp, ns)
    yield lg
    close = getattr(lg, "close", None)
    if close is not None:
        close()
