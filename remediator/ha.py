"""Several replicas: open the configured ledger backend, build the leader elector, and wire them to
the engine. Kept out of cli.py so that `serve` and `explain` only call it."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from remediator.config import Config

SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def open_ledger(config: Config, kube, *, watch: bool = True):
    """The ledger backend the config names: SQLite (one replica) or VigilIncident objects. Events
    that name an incident carry the ledger's uid (a new ledger's ids start at 1 again)."""
    ledger = _open_ledger(config, kube, watch=watch)
    if kube is not None:
        kube.event_scope = ledger.uid
    return ledger


def _open_ledger(config: Config, kube, *, watch: bool):
    if config.ledger.backend == "kubernetes":
        from remediator.cluster.incidents_api import IncidentsAPI
        from remediator.store.kubernetes import KubernetesLedger

        if kube is None:
            raise ValueError("ledger.backend kubernetes needs a cluster (kubernetes.kubeconfig or in-cluster)")
        return KubernetesLedger(IncidentsAPI(kube.api, config.ledger.namespace, timeout=config.kube_request_timeout),
                                retention=config.ledger.retention, watch=watch)
    from remediator.store.ledger import SQLiteLedger

    return SQLiteLedger(config.ledger_path)


def ledger_to_read(config: Config, kube):
    """For `explain`: the ledger the engine would read, or None where there is none yet."""
    if config.ledger.backend == "kubernetes":
        return open_ledger(config, kube, watch=False) if kube is not None else None
    return open_ledger(config, kube) if Path(config.ledger_path).exists() else None


def own_namespace() -> str:
    try:
        return Path(SA_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


def elector(config: Config, kube, on_change: Callable[[bool], None]):
    """A Lease elector whenever Vigil acts on a cluster (whatever the ledger backend), so two
    replicas never act at once; AlwaysLeader only without a cluster (dry-run)."""
    from remediator.cluster.lease import AlwaysLeader, LeaseElector

    if kube is None or not config.leader_election.enabled:
        return AlwaysLeader()
    settings = config.leader_election
    # always one per process: replicas reading one ConfigMap must not share a configured identity (each would
    # find "its" name as the holder, renew and act)
    identity = f"{settings.identity or socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    if not settings.namespace:
        settings = dataclasses.replace(settings, namespace=own_namespace())
    return LeaseElector(kube.api, settings, identity, on_change=on_change)


def engine_with_leader(config: Config, ledger, kube, metrics, cache):
    """The engine, gated by the elector (which starts campaigning with `start`), wired to the ledger."""
    from remediator.runtime.engine import Engine

    def leadership_changed(leading: bool) -> None:  # from the lease thread, started after the engine exists
        metrics.leader.set(1 if leading else 0)
        engine.wake()

    leader = elector(config, kube, leadership_changed)
    engine = Engine(config, ledger, kube, metrics, cache=cache, leader=leader)
    wire(ledger, leader, engine)
    return engine, leader


def start(leader, engine) -> None:
    """Campaign for the lease, then run the engine (it decides and acts only while leading)."""
    if hasattr(leader, "start"):
        leader.start()
    engine.start()


def release(leader) -> None:
    """Stop acting and hand the lease over (empty holderIdentity): a follower takes over at once."""
    if hasattr(leader, "stop"):
        leader.stop(release=True)


def wire(ledger, leader, engine) -> None:
    """Claims carry (holder, term), so a split brain cannot run an action twice; work recorded by
    another replica wakes the leader's engine through the ledger's watch."""
    if hasattr(ledger, "set_token") and hasattr(leader, "token"):
        ledger.set_token(leader.token)
    if hasattr(ledger, "set_listener"):
        ledger.set_listener(engine.wake)


def describe(config: Config) -> str:
    le = config.leader_election
    election = (f"lease {le.namespace or '<own namespace>'}/{le.name} "
                f"{le.lease_duration:g}/{le.renew_deadline:g}/{le.retry_period:g}s" if le.enabled else "off")
    return f"ledger={config.ledger.backend}, leader_election={election}"
