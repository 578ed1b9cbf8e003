"""The parts of vigil.yaml for topology-aware remediation.

    topology:
      domains:                      # the failure domains, each a node label
        - {kind: nvlink, label: nvidia.com/gpu.clique}   # GPU Feature Discovery: <clusterUuid>.<cliqueId>
        - {kind: rack, label: topology.kubernetes.io/rack}
      match: ['severity="critical"']  # which alerts (with a node label) count as a member's fault
      min_nodes: 2                  # a domain is degraded at max(min_nodes, min_percent of its members) faults
      min_percent: 25
      window: 10m                   # ... that started within this of each other
    policy:
      domain_rules: [...]           # rules for GpuDomainDegraded domain incidents (same keys as rules)
    safety:
      budget:
        domains: {nvlink: {max_domains: 1}}   # domains of a kind out at once (default 1)
"""

from __future__ import annotations

from typing import Any

from remediator.domain.policy import Matcher, PolicyError
from remediator.domain.topology import DomainKind, Topology
from vigil_common.config import ConfigError, Section

KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def _kind(raw: Any, where: str) -> DomainKind | None:
    sec = Section(raw, where, ("kind", "label"))
    kind, label = sec.string("kind", None), sec.string("label", None)
    if not kind or not set(kind) <= KIND_CHARS:
        sec.fail("kind", f"a lowercase name such as nvlink or rack, got {kind!r}")
        return None
    if not label:
        sec.fail("label", "required: the node label whose value names the domain")
        return None
    return DomainKind(kind, label)


def parse_topology(raw: Any, where: str) -> Topology:
    sec = Section(raw, where, ("domains", "match", "min_nodes", "min_percent", "window"))
    listed = sec.get("domains") or []
    if not isinstance(listed, list):
        sec.fail("domains", "a list of {kind, label}")
        listed = []
    kinds = [k for i, d in enumerate(listed) if (k := _kind(d, f"{sec.key('domains')}[{i}]")) is not None]
    names = [k.kind for k in kinds]
    for dupe in sorted({n for n in names if names.count(n) > 1}):
        sec.fail("domains", f"kind {dupe!r} listed twice")
    match = sec.get("match") or []
    if not isinstance(match, list):
        sec.fail("match", "a list of matchers such as 'severity=\"critical\"'")
        match = []
    matchers: list[Matcher] = []
    for m in match:
        try:
            matchers += Matcher.parse_all(m)
        except PolicyError as exc:
            sec.fail("match", str(exc))
    pct = sec.number("min_percent", 25.0)
    if pct > 100:
        sec.fail("min_percent", "a percentage, at most 100")
    return Topology(tuple(kinds), tuple(matchers), sec.number("min_nodes", 2, integer=True, minimum=1), pct,
                    sec.duration("window", 600.0, positive=True))


def parse_domain_budget(raw: Any, where: str, topology: Topology) -> dict[str, int]:
    """safety.budget.domains: {<kind>: {max_domains: n}} for kinds listed in topology.domains."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a mapping of domain kind to {{max_domains: n}}")
    known = {d.kind for d in topology.domains}
    out = {}
    for kind, limits in raw.items():
        sec = Section(limits, f"{where}.{kind}", ("max_domains",))
        if kind not in known:
            sec.fail("max_domains", f"domain kind {kind!r} is not in topology.domains")
        out[str(kind)] = sec.number("max_domains", 1, integer=True)
    return out
