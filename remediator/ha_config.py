"""The config of several replicas: the ledger backend and leader election (`ledger:` and
`leader_election:` in vigil.yaml). Errors name the key; while check-config collects, reading goes on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vigil_common.config import Section

LEDGER_BACKENDS = ("sqlite", "kubernetes")


@dataclass(frozen=True)
class LeaderElection:
    """A Lease in coordination.k8s.io/v1; defaults as controller-runtime's (15 s / 10 s / 2 s).
    On whenever Vigil acts on a cluster: only the holder decides and acts."""
    enabled: bool = True
    name: str = "vigil-remediator"
    namespace: str = ""  # "": the pod's own namespace in a cluster, else "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""  # a prefix ("" = the hostname); a random suffix is always added, one per process


@dataclass(frozen=True)
class LedgerSettings:
    backend: str = "sqlite"  # sqlite (one replica) | kubernetes (VigilIncident objects, several replicas)
    namespace: str = "vigil"  # kubernetes: where the VigilIncident and VigilState objects live
    retention: float = 7 * 86400.0  # kubernetes: resolved incidents older than this are deleted


def parse_ledger(raw: Any, where: str) -> tuple[str, LedgerSettings]:
    """(the SQLite path, the backend settings)."""
    sec = Section(raw, where, ("path", "backend", "namespace", "retention"))
    backend = sec.string("backend", "sqlite")
    if backend not in LEDGER_BACKENDS:
        sec.fail("backend", f"one of {', '.join(LEDGER_BACKENDS)}, got {backend!r}")
        backend = "sqlite"
    return sec.string("path", "vigil-ledger.db"), LedgerSettings(
        backend=backend, namespace=sec.string("namespace", "vigil"),
        retention=sec.duration("retention", 7 * 86400.0, positive=True))


def parse_leader_election(raw: Any, where: str, *, dry_run: bool) -> LeaderElection:
    """client-go's rule: lease_duration > renew_deadline > 1.2 x retry_period, each at least 1 s; and
    on whenever Vigil acts on a cluster (not dry-run), so two replicas never act at once."""
    sec = Section(raw, where, ("enabled", "name", "namespace", "lease_duration", "renew_deadline", "retry_period",
                               "identity"))
    le = LeaderElection(enabled=sec.boolean("enabled", True), name=sec.string("name", "vigil-remediator"),
                        namespace=sec.string("namespace", "") or "",
                        lease_duration=sec.duration("lease_duration", 15.0),
                        renew_deadline=sec.duration("renew_deadline", 10.0),
                        retry_period=sec.duration("retry_period", 2.0), identity=sec.string("identity", "") or "")
    for k in ("lease_duration", "renew_deadline", "retry_period"):
        if getattr(le, k) < 1:
            sec.fail(k, "at least 1s")
    if not le.lease_duration > le.renew_deadline:
        sec.fail("lease_duration", f"must be longer than renew_deadline ({le.lease_duration:g}s <= "
                 f"{le.renew_deadline:g}s)")
    if not le.renew_deadline > 1.2 * le.retry_period:
        sec.fail("renew_deadline", f"must be longer than 1.2 x retry_period ({le.renew_deadline:g}s <= "
                 f"{1.2 * le.retry_period:g}s)")
    if not le.enabled and not dry_run:
        sec.fail("enabled", "leader election is required whenever Vigil acts on a cluster (safety.dry_run: false), "
                 "so that two replicas never act at once")
    return le
