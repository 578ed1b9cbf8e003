"""Policy rules: label matchers select an alert; the rule's actions carry parameters that are
jinja2 templates, rendered in a sandbox with StrictUndefined from the alert's labels and
annotations (a missing label blocks that incident with a reason; it never crashes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$')


@dataclass(frozen=True)
class ActionSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    target: tuple[str, ...] = ("node",)  # the params that name what the action changes, joined by "/"
    removes_node: bool = False  # counts against the node disruption budget
    restores: bool = False  # can be undone when the alert resolves (restore_on_resolve)


_WORKLOAD = ("namespace", "name")
ACTIONS: dict[str, ActionSpec] = {
    "cordon_node": ActionSpec(("node",), removes_node=True),
    "uncordon_node": ActionSpec(("node",)),
    "taint_node": ActionSpec(("node",), ("key", "value", "effect"), removes_node=True),
    "drain_node": ActionSpec(("node",), ("timeout", "force_after", "grace_period", "scope", "uuid"),
                             removes_node=True),
    # repairs (remediator/cluster/repair.py, providers.py)
    "reset_gpu": ActionSpec(("node", "uuid"), ("gpu", "image", "command", "timeout")),
    "reboot_node": ActionSpec(("node",), ("provider", "image", "command", "timeout", "drain_timeout"),
                              removes_node=True),
    "replace_node": ActionSpec(("node",), ("provider",), removes_node=True),
    "validate_node": ActionSpec(("node",), ("uuid", "gpu", "image", "command", "timeout", "deadline")),
    "mark_rma_candidate": ActionSpec(("node",), ("reason",), removes_node=True),
    "restart_pod": ActionSpec(("namespace", "pod"), ("allow_bare", "grace_period"), ("namespace", "pod")),
    "rollout_restart": ActionSpec(_WORKLOAD, ("kind",), _WORKLOAD),
    "rollback_deployment": ActionSpec(_WORKLOAD, (), _WORKLOAD),
    "scale_deployment": ActionSpec(_WORKLOAD, ("replicas", "step", "min", "max"), _WORKLOAD),
    "quarantine_pod": ActionSpec(("namespace", "pod"), ("label", "value"), ("namespace", "pod")),
    "shift_traffic": ActionSpec(("namespace", "route", "from", "to"), ("step", "rule_index", "restore_on_resolve"),
                                ("namespace", "route"), restores=True),
    "failover_service": ActionSpec(("namespace", "service", "selector"), ("restore_on_resolve",),
                                   ("namespace", "service"), restores=True),
}


def target_of(action_type: str, params: dict[str, Any]) -> str:
    return "/".join(str(params.get(k, "")) for k in ACTIONS[action_type].target)


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str
    regex: re.Pattern | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text) if isinstance(text, str) else None
        if not m:
            raise PolicyError(f'matcher {text!r} is not of the form label="value" (ops = != =~ !~)')
        value = m.group(3).replace('\\"', '"') if m.group(3) is not None else m.group(4)
        regex = None
        if m.group(2) in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise PolicyError(f"matcher {text!r}: bad regex: {exc}") from exc
        return cls(m.group(1), m.group(2), value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.label, "")  # as in Alertmanager: a missing label is the empty string
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = self.regex.fullmatch(got) is not None  # anchored, as in Alertmanager
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


@dataclass(frozen=True)
class Action:
    type: str
    params: dict[str, Any]  # values: jinja2 Template (str params) or plain values

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
    validate_on_resolved: bool = False  # and, before that, validate_node passes on the cordoned node
    on_failure: tuple[Action, ...] = ()  # run in order when an action of the ladder fails (e.g. replace, mark)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def compile_template(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: compile_template(v, f"{where}.{k}") for k, v in value.items()}
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return _ENV.from_string(value)
    except jinja2.TemplateSyntaxError as exc:
        raise PolicyError(f"{where}: template syntax error: {exc.message}") from exc
