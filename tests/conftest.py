"""Session-wide fixtures: the local Kubernetes control plane in its two tiers.

A missing binary or a control plane that does not come up fails the tests that need it;
nothing here skips (`make test` builds the binaries first)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s import bins
from tests.k8s.controlplane import ControlPlane, ControlPlaneError, start


def _start(tmp_path_factory: pytest.TempPathFactory, tier: str) -> Iterator[ControlPlane]:
    workdir: Path = tmp_path_factory.mktemp(f"k8s-{tier}")
    try:
        cp = start(workdir, tier)
    except (bins.MissingBinary, ControlPlaneError) as exc:
        pytest.fail(f"local Kubernetes control plane ({tier}) unavailable: {exc}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def k8s_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver: object semantics only (no controllers, no scheduler)."""
    yield from _start(tmp_path_factory, "api")


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The whole control plane with kwok: Deployments, PDB status, scheduling, Running pods."""
    yield from _start(tmp_path_factory, "cluster")


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
