"""Topology: which failure domains (NVLink partitions, racks) each node belongs to, and which
domains are degraded: faults on several of their members at about the same time.

A domain kind names a node label (`nvlink: nvidia.com/gpu.clique`, GPU Feature Discovery's
`<clusterUuid>.<cliqueId>`; `rack: topology.kubernetes.io/rack`); a domain is one value of it.
A domain is degraded when at least `threshold` of its members have a firing fault (an alert that
matches `topology.match`, with a `node` label) and those faults started within `window` seconds of
each other: faults hours apart are independent failures, not one shared cause. The threshold is
max(min_nodes, min_percent of the members, rounded up). One domain incident is opened for each
degraded domain (remediator/runtime/domains.py); it takes over its members' faults.

Pure: no I/O. The engine passes the firing incidents (from the ledger) and the cluster view.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from remediator.domain.models import ClusterView, Incident
from remediator.domain.payload import ZERO_TIME, Alert
from remediator.domain.policy import Matcher

DOMAIN_ALERT = "GpuDomainDegraded"  # the alertname of a domain incident (Vigil's own, and the Prometheus rule's)
KIND_LABEL, DOMAIN_LABEL = "domain_kind", "domain"
MEMBERS_ANNOTATION, EVIDENCE_ANNOTATION = "members", "evidence"  # on a domain incident: its nodes, and why


@dataclass(frozen=True)
class DomainKind:
    kind: str  # nvlink | rack | any name
    label: str  # the node label whose value names the domain


@dataclass(frozen=True)
class Topology:
    """topology: in vigil.yaml. No domains: topology-aware remediation is off."""
    domains: tuple[DomainKind, ...] = ()
    match: tuple[Matcher, ...] = ()  # what counts as a fault; empty: severity="critical"
    min_nodes: int = 2
    min_percent: float = 25.0
    window: float = 600.0  # seconds: the faults of one degradation started within it

    def threshold(self, members: int) -> int:
        return max(self.min_nodes, math.ceil(members * self.min_percent / 100))

    def is_fault(self, labels: Mapping[str, str]) -> bool:
        if labels.get("alertname") == DOMAIN_ALERT or not labels.get("node"):
            return False
        if not self.match:
            return labels.get("severity") == "critical"
        return all(m.matches(dict(labels)) for m in self.match)


Key = tuple[str, str]  # (kind, domain value)


def is_domain_incident(incident: Incident) -> bool:
    return incident.alertname == DOMAIN_ALERT and bool(incident.labels.get(DOMAIN_LABEL))


def key_of(incident: Incident) -> Key:
    return incident.labels.get(KIND_LABEL, ""), incident.labels.get(DOMAIN_LABEL, "")


def fingerprint(key: Key) -> str:
    """Deterministic: one domain incident per domain, however often the correlation finds it."""
    return "domain-" + hashlib.sha256(f"{key[0]}\0{key[1]}".encode()).hexdigest()[:16]


def members(cluster: ClusterView, topology: Topology) -> dict[Key, tuple[str, ...]]:
    """Every domain the managed nodes' labels name, with its members (sorted)."""
    out: dict[Key, list[str]] = {}
    for name, node in cluster.managed.items():
        for d in topology.domains:
            value = node.labels.get(d.label)
            if value:
                out.setdefault((d.kind, value), []).append(name)
    return {k: tuple(sorted(v)) for k, v in out.items()}


@dataclass(frozen=True)
class Fault:
    node: str
    incident_id: int | None
    alertname: str
    signal: str  # what the fault says, e.g. "xid=79 gpu=3"
    starts_at: dt.datetime

    def describe(self) -> str:
        return f"{self.starts_at.isoformat()} {self.node}: {self.alertname} {self.signal}".rstrip()


@dataclass(frozen=True)
class Degraded:
    """A degraded domain: its members, the correlated faults (oldest first), and the domain
    incident that handles it (None while it is being opened)."""
    kind: str
    domain: str
    members: tuple[str, ...]
    faults: tuple[Fault, ...]
    threshold: int
    incident: Incident | None = None

    @property
    def key(self) -> Key:
        return self.kind, self.domain

    @property
    def since(self) -> dt.datetime:
        """When it became degraded: the start of the fault that reached the threshold."""
        return self.faults[min(self.threshold, len(self.faults)) - 1].starts_at

    @property
    def faulty(self) -> tuple[str, ...]:
        return tuple(sorted({f.node for f in self.faults}))

    def evidence(self) -> str:
        """Which nodes, which signals, in what order: for the trace, the notification and people."""
        return (f"{self.kind} domain {self.domain}: {len(self.faulty)} of {len(self.members)} members faulty "
                f"(threshold {self.threshold}): " + "; ".join(f.describe() for f in self.faults))


@dataclass(frozen=True)
class Correlation:
    """What the rails know of the topology at one moment."""
    topology: Topology = field(default_factory=Topology)
    degraded: Mapping[Key, Degraded] = field(default_factory=dict)
    open: Mapping[Key, Incident] = field(default_factory=dict)  # firing domain incidents
    domains_of: Mapping[str, tuple[Key, ...]] = field(default_factory=dict)  # node -> its domains
    members: Mapping[Key, tuple[str, ...]] = field(default_factory=dict)

    def degraded_for(self, node: str) -> Degraded | None:
        """The first degraded domain (in topology.domains order) this node is a member of."""
        return next((self.degraded[k] for k in self.domains_of.get(node, ()) if k in self.degraded), None)

    def to_open(self) -> list[Degraded]:
        return [d for k, d in sorted(self.degraded.items()) if k not in self.open]

    def to_resolve(self) -> list[Incident]:
        """Vigil's own domain incidents whose domain is no longer degraded (its faults resolved); one
        Prometheus delivered (GpuDomainDegraded) resolves when Prometheus says so."""
        return [i for k, i in sorted(self.open.items()) if k not in self.degraded and i.fingerprint == fingerprint(k)]


def jobs_spanning(corr: Correlation, cluster: ClusterView, nodes: Iterable[str]) -> list[str]:
    """For taking `nodes` out: each multi-node job with pods on one of them and on other members of
    the same domain, which losing the node breaks as surely as losing the domain ("" jobs skipped)."""
    wanted = sorted({n for n in nodes if corr.domains_of.get(n)})
    if not wanted:
        return []
    lines = []
    for node in wanted:
        for key in corr.domains_of[node]:
            members = set(corr.members.get(key, ()))
            for job in cluster.jobs_of.get(node, ()):  # both computed once per view
                spread = cluster.jobs[job] & members
                if node in spread and len(spread) > 1:
                    lines.append(f"taking {node} out breaks {job}, which spans {len(spread)} nodes of {key[0]} "
                                 f"domain {key[1]} ({', '.join(sorted(spread))})")
    return lines


def _signal(labels: Mapping[str, str]) -> str:
    skip = {"alertname", "node", "severity", "uuid", "instance", "job", "remediation"}
    return " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)


def _clustered(faults: Sequence[Fault], threshold: int, window: float) -> tuple[Fault, ...]:
    """The largest run of faults on distinct nodes started within `window` of each other, if it
    reaches the threshold (the earliest such run); () otherwise. One fault per node: its first."""
    first: dict[str, Fault] = {}
    for f in sorted(faults, key=lambda f: (f.starts_at, f.node)):
        first.setdefault(f.node, f)
    ordered = sorted(first.values(), key=lambda f: (f.starts_at, f.node))
    best: tuple[Fault, ...] = ()
    lo = 0
    for hi, f in enumerate(ordered):
        while (f.starts_at - ordered[lo].starts_at).total_seconds() > window:
            lo += 1
        if hi - lo + 1 > len(best):
            best = tuple(ordered[lo:hi + 1])
    return best if len(best) >= threshold else ()


def correlate(firing: Iterable[Incident], cluster: ClusterView, topology: Topology) -> Correlation:
    """The degraded domains, from the firing incidents and the nodes' labels."""
    if not topology.domains or not cluster.available:
        return Correlation(topology)
    groups = members(cluster, topology)
    domains_of: dict[str, list[Key]] = {}
    for d in topology.domains:  # the order of topology.domains decides which domain a node reports first
        for key, names in sorted(groups.items()):
            if key[0] == d.kind:
                for n in names:
                    domains_of.setdefault(n, []).append(key)
    faults: dict[Key, list[Fault]] = {}
    opened: dict[Key, Incident] = {}
    for inc in firing:
        if is_domain_incident(inc):  # one per domain: the first recorded (a second one joins it)
            known = opened.get(key_of(inc))
            if known is None or (inc.id or 0) < (known.id or 0):
                opened[key_of(inc)] = inc
        elif inc.alert_status == "firing" and topology.is_fault(inc.labels):
            node = inc.labels["node"]
            fault = Fault(node, inc.id, inc.alertname, _signal(inc.labels), inc.starts_at)
            for key in domains_of.get(node, ()):
                faults.setdefault(key, []).append(fault)
    degraded = {}
    for key, found in faults.items():
        threshold = topology.threshold(len(groups[key]))
        run = _clustered(found, threshold, topology.window)
        if run:
            degraded[key] = Degraded(key[0], key[1], groups[key], run, threshold, opened.get(key))
    return Correlation(topology, degraded, opened, {n: tuple(k) for n, k in domains_of.items()}, groups)


def domain_alert(d: Degraded, now: dt.datetime) -> Alert:
    """The alert a domain incident is recorded from, like any alert: its labels name the domain, its
    fingerprint is the domain's (idempotent), it starts when the domain became degraded (a later
    degradation of the same domain is a new incident, as a re-fired alert), and its annotations carry
    the members and the evidence."""
    labels = {"alertname": DOMAIN_ALERT, KIND_LABEL: d.kind, DOMAIN_LABEL: d.domain, "severity": "critical"}
    annotations = {MEMBERS_ANNOTATION: ",".join(d.members), "faulty": ",".join(d.faulty),
                   EVIDENCE_ANNOTATION: d.evidence(),
                   "summary": f"{d.kind} domain {d.domain}: {len(d.faulty)} of {len(d.members)} members faulty"}
    return Alert("firing", labels, annotations, d.since, ZERO_TIME, fingerprint(d.key))


def resolved_alert(incident: Incident, now: dt.datetime) -> Alert:
    """The domain's faults resolved (fewer than the threshold still fire): its incident resolves."""
    return Alert("resolved", dict(incident.labels), dict(incident.annotations), incident.starts_at, now,
                 incident.fingerprint)
