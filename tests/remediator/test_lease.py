"""The Lease elector against the real local apiserver: acquire, renew, expiry by local observation,
compare-and-swap on resourceVersion, losing leadership on the renew deadline, release."""

from __future__ import annotations

import dataclasses

import pytest
from kubernetes import client

from remediator.cluster.lease import LeaseElector, NotLeader
from remediator.config import LeaderElection

pytestmark = pytest.mark.k8s


class FakeClock:
    """Monotonic time the test advances; the apiserver and its resourceVersions are real."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lease_ns(k8s_api, unique):
    api = k8s_api.api_client()
    ns = f"lease-{unique}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    return api, ns


def elector(api, ns: str, identity: str, clock: FakeClock, events: list | None = None) -> LeaseElector:
    settings = LeaderElection(name="vigil", namespace=ns, lease_duration=15, renew_deadline=10, retry_period=2)
    return LeaseElector(api, settings, identity, clock=clock,
                        on_change=(lambda leading: events.append((identity, leading))) if events is not None
                        else (lambda leading: None))


def lease(api, ns: str) -> client.V1Lease:
    return client.CoordinationV1Api(api).read_namespaced_lease("vigil", ns)


def test_one_holder_then_takeover_only_after_expiry(lease_ns):
    api, ns = lease_ns
    clock, events = FakeClock(), []
    a, b = elector(api, ns, "a", clock, events), elector(api, ns, "b", clock, events)
    assert a.step() and a.is_leader()
    assert not b.step() and not b.is_leader()  # a's lease is fresh
    assert lease(api, ns).spec.holder_identity == "a" and lease(api, ns).spec.lease_transitions == 0
    clock.t += 5
    assert a.step()  # renewal keeps it
    clock.t += 14  # b first saw a's *renewed* record only now (it observed the old one 19 s ago)
    assert not b.step(), "b must measure expiry from its own observation of the current record"
    clock.t += 15.1  # a stopped renewing: past the renew deadline it no longer leads, even without a round
    assert not a.is_leader()
    with pytest.raises(NotLeader):
        a.fence()
    assert b.step() and b.is_leader()
    spec = lease(api, ns).spec
    assert spec.holder_identity == "b" and spec.lease_transitions == 1
    assert not a.step(), "a sees b's lease and stays a follower"
    assert events == [("a", True), ("b", True), ("a", False)]


def test_leader_stops_acting_before_the_lease_can_expire_for_others(lease_ns):
    """Valid until renew_deadline after the *start* of the last good renewal: strictly before any
    other replica, which waits lease_duration from a later observation, can acquire."""
    api, ns = lease_ns
    clock = FakeClock()
    a = elector(api, ns, "a", clock)
    assert a.step()
    clock.t += a.settings.renew_deadline - 0.01
    assert a.is_leader()
    clock.t += 0.02
    assert not a.is_leader()


def test_a_stale_write_gets_409_and_never_leads(lease_ns):
    api, ns = lease_ns
    clock = FakeClock()
    a, b = elector(api, ns, "a", clock), elector(api, ns, "b", clock)
    assert a.step()
    coord = client.CoordinationV1Api(api)
    stale = coord.read_namespaced_lease("vigil", ns)
    assert a.step()  # a renews: the resourceVersion moves on
    stale.spec.holder_identity = "b"
    with pytest.raises(client.ApiException) as err:
        coord.replace_namespaced_lease("vigil", ns, stale)
    assert err.value.status == 409
    assert lease(api, ns).spec.holder_identity == "a"
    assert not b.step()


def test_release_hands_over_without_waiting_for_expiry(lease_ns):
    api, ns = lease_ns
    clock = FakeClock()
    a, b = elector(api, ns, "a", clock), elector(api, ns, "b", clock)
    assert a.step()
    assert not b.step()
    a.stop(release=True)
    assert not a.is_leader()
    assert lease(api, ns).spec.holder_identity in ("", None)
    assert b.step(), "an empty holder is free at once"
    assert lease(api, ns).spec.holder_identity == "b"


def test_api_errors_lose_leadership_at_the_deadline_not_at_once(lease_ns):
    api, ns = lease_ns
    clock = FakeClock()
    a = elector(api, ns, "a", clock)
    assert a.step()
    clock.t += 3
    a.settings = dataclasses.replace(a.settings, namespace=f"{ns}-gone")  # every call fails (404 namespace)
    assert a.try_acquire_or_renew() == "error"
    assert a.step(), "one failed renewal inside the deadline keeps leadership"
    clock.t += 8
    assert not a.step(), "no renewal within renew_deadline: stop acting"
