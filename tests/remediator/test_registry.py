"""The action registry: every declared action has exactly one executor, and nothing else lists
action names (config validation, metrics and the rails all read the registry)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from remediator.cluster.executor import EXECUTORS, Executors
from remediator.domain.actions import ACTIONS, ActionType, Registry

ROOT = Path(__file__).resolve().parents[2] / "remediator"


def test_every_declared_action_has_exactly_one_executor():
    assert set(EXECUTORS.run) == set(ACTIONS)


def test_restorable_actions_have_a_restorer_and_an_owner_reader():
    restorable = set(ACTIONS.of("restorable"))
    assert set(EXECUTORS.restorers) == restorable and set(EXECUTORS.owners) == restorable


def test_undo_actions_are_declared():
    assert all(a.undo in ACTIONS for a in ACTIONS.values() if a.undo)


def test_binding_an_undeclared_or_twice_bound_action_fails():
    fresh = Executors(ACTIONS)
    with pytest.raises(ValueError, match="not declared"):
        fresh.bind("reboot_the_world")
    fresh.bind("cordon_node")(lambda c, p, i: None)
    with pytest.raises(ValueError, match="bound twice"):
        fresh.bind("cordon_node")


def test_declarations_are_checked():
    r = Registry()
    r.declare(ActionType("x", ("node",)))
    with pytest.raises(ValueError, match="declared twice"):
        r.declare(ActionType("x", ("node",)))
    with pytest.raises(ValueError, match="target_kind"):
        ActionType("y", ("node",), target_kind="planet")
    with pytest.raises(ValueError, match="must be required"):
        ActionType("z", ("a",), target=("b",))


def test_no_list_of_action_names_outside_the_registry_and_the_executors():
    """A string literal naming two or more action types in one expression is a hand-kept list."""
    names = "|".join(ACTIONS)
    pattern = re.compile(rf'"({names})"[^\n]*"({names})"')
    allowed = {ROOT / "domain" / "actions.py", ROOT / "cluster" / "executor.py"}
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in ROOT.rglob("*.py") if p not in allowed
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders
