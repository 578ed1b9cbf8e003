"""Policy rules: label matchers select an alert; the rule's actions carry parameters that are
jinja2 templates, rendered in a sandbox with StrictUndefined from the alert's labels and
annotations (a missing label blocks that incident with a reason; it never crashes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from remediator.domain.matchers import MatcherError, parse_matchers
from remediator.domain.scope import Namespaces

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def promql_string(value: Any) -> Any:
    """A value spliced into a PromQL query, escaped as the contents of a double-quoted string: a label
    value with a quote must not close the string and rewrite the query (`x"}) == 1 or vector(1) #`)."""
    if not isinstance(value, str):
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


# guard and verify queries: every {{ }} output is escaped for a PromQL double-quoted string
_PROMQL_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=promql_string)


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str
    regex: Any = None  # an anchored RE2 program

    @classmethod
    def parse_all(cls, text: str) -> list[Matcher]:
        """One entry of a rule's `match:` list, parsed exactly as Alertmanager parses `matchers:`."""
        try:
            parsed = parse_matchers(text)
        except MatcherError as exc:
            raise PolicyError(f"matcher {text!r}: {exc}") from exc
        return [cls(p.label, p.op, p.value, p.regex) for p in parsed]

    @classmethod
    def parse(cls, text: str) -> Matcher:
        found = cls.parse_all(text)
        if len(found) != 1:
            raise PolicyError(f"matcher {text!r}: expected exactly one matcher, found {len(found)}")
        return found[0]

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.label, "")  # as in Alertmanager: a missing label is the empty string
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = self.regex.search(got) is not None  # anchored ^(?:re)$, as in Alertmanager
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


@dataclass(frozen=True)
class Action:
    type: str
    params: dict[str, Any]  # values: jinja2 Template (str params) or plain values
    approval: bool = False  # `approval: required`: the step waits for a person's approval at its turn
    window: str | None = None  # the maintenance window the step may start in (policy.maintenance_windows)

    def render(self, context: dict[str, Any]) -> dict[str, Any]:
        """Raises jinja2.UndefinedError (missing label) or jinja2.TemplateError."""
        return {k: _render(v, context) for k, v in self.params.items()}


def _render(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, jinja2.Template):
        return value.render(context)
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Check:
    """A PromQL condition (a template over the alert): it holds when the query returns a sample."""
    query: Any = None
    mode: str = "fail_closed"  # when Prometheus cannot answer: fail_closed (block) or fail_open
    deadline: float = 60.0  # verify: how long the condition may take to hold
    interval: float = 5.0
    alert_resolved: bool = False  # verify: the triggering alert resolving counts as holding
    on_unknown: str = "stop"  # verify: when it stays unknown to the deadline: stop (leave it to people) | escalate

    def render(self, context: dict[str, Any]) -> str | None:
        return None if self.query is None else str(_render(self.query, context))


@dataclass(frozen=True)
class Escalation:
    """What to run, in order, when verification fails; capped in length and per target."""
    steps: tuple[Action, ...] = ()
    max_steps: int = 3
    max_loops_per_target: int = 1
    window: float = 86400.0


def context_of(labels: dict[str, str], annotations: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"labels": labels, "annotations": annotations, **extra}


@dataclass(frozen=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...]
    actions: tuple[Action, ...]
    cooldown: float = 0.0  # seconds per target after an action of this rule
    max_actions: int = 0  # per window, 0 = unlimited
    window: float = 3600.0
    min_firing: float = 0.0  # seconds since startsAt before acting
    allow_stale: bool = False
    guard: Check | None = None
    verify: Check | None = None
    escalate: Escalation = field(default_factory=Escalation)
    uncordon_on_resolved: Check | None = None  # node rules: uncordon once this recovery check holds
    min_available: int | str | None = None  # pod actions: replicas/endpoints to keep Ready (n or "n%"); None: 1
    validate_on_resolved: bool = False  # and, before that, validate_node passes on the cordoned node
    on_failure: tuple[Action, ...] = ()  # run in order when an action of the ladder fails (e.g. replace, mark)
    namespaces: Namespaces | None = None  # scope.namespaces: narrows kubernetes.namespaces, never widens it
    maintenance_window: str | None = None  # every action of the rule starts only inside this window

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def gate_of(self, action_type: str, kind: str = "first") -> tuple[bool, tuple[str, ...]]:
        """What gates an action of this rule's chain or escalation ladder (by its type): approval
        required or not, and the windows it must start in (the rule's and the action's own)."""
        steps = {"first": self.actions, "escalation": self.escalate.steps}.get(kind, ())
        action = next((a for a in steps if a.type == action_type), None)
        windows = tuple(w for w in (self.maintenance_window, action.window if action else None) if w)
        return (action.approval if action else False), windows


def _compile(env: SandboxedEnvironment, value: Any, where: str) -> Any:
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return env.from_string(value)
    except jinja2.TemplateSyntaxError as exc:
        raise PolicyError(f"{where}: template syntax error: {exc.message}") from exc


def compile_query(value: Any, where: str) -> Any:
    """A guard or verify query: a template whose values are escaped for PromQL strings."""
    return _compile(_PROMQL_ENV, value, where)


def compile_template(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: compile_template(v, f"{where}.{k}") for k, v in value.items()}
    return _compile(_ENV, value, where)
