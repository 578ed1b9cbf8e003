"""Scope: which objects Vigil may change at all. Nodes inside `kubernetes.node_selector` (a pod
action's pod too: the node it runs on), and namespaces inside `kubernetes.namespaces`: every
namespace unless `include` lists some, never one in `exclude`, and never the system namespaces or
Vigil's own unless `include` names them. A rule may narrow its scope further (`scope.namespaces`),
never widen it: the rule's check comes on top of the global one. Pure; the target rail asks it."""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class Namespaces:
    """include: only these ("" = every namespace); exclude: never these."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def refuses(self, ns: str, where: str) -> str:
        """Why `ns` is outside this scope ("" if it is inside); `where` names the config key."""
        if ns in self.exclude:
            return f"namespace {ns} is in {where}.exclude"
        if self.include and ns not in self.include:
            return f"namespace {ns} is not in {where}.include ({', '.join(self.include)})"
        return ""


@dataclass(frozen=True)
class Scope:
    """The global scope: `namespaces`, plus the namespaces excluded by default (the system ones and
    Vigil's own) unless `namespaces.include` names them."""
    namespaces: Namespaces = Namespaces()
    own_namespaces: tuple[str, ...] = ()

    @property
    def default_excluded(self) -> tuple[str, ...]:
        return (*SYSTEM_NAMESPACES, *(n for n in self.own_namespaces if n not in SYSTEM_NAMESPACES))

    def refuses(self, ns: str, rule: Namespaces | None = None, rule_name: str = "") -> str:
        """Why an action in `ns` is outside scope, naming the scope rule; "" if it is inside."""
        why = self.namespaces.refuses(ns, "kubernetes.namespaces")
        if not why and ns in self.default_excluded and ns not in self.namespaces.include:
            kind = "a system namespace" if ns in SYSTEM_NAMESPACES else "Vigil's own namespace"
            why = (f"namespace {ns} is {kind}, excluded by default (name it in kubernetes.namespaces.include to "
                   "allow it)")
        if not why and rule is not None:
            why = rule.refuses(ns, f"rule {rule_name}: scope.namespaces")
        return why
