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
    target: str = "node"  # the param that names what the action changes
    removes_node: bool = False  # counts against the node disruption budget


ACTIONS: dict[str, ActionSpec] = {
    "cordon_node": ActionSpec(("node",), removes_node=True),
    "uncordon_node": ActionSpec(("node",)),
    "taint_node": ActionSpec(("node",), ("key", "value", "effect"), removes_node=True),
    "drain_node": ActionSpec(("node",), ("timeout", "force_after", "grace_period"), removes_node=True),
}


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
        return {k: (v.render(context) if isinstance(v, jinja2.Template) else v) for k, v in self.params.items()}


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
    guard: dict[str, Any] = field(default_factory=dict)  # reserved: the service-actions issue
    verify: dict[str, Any] = field(default_factory=dict)
    escalate: list[Any] = field(default_factory=list)
    on_resolved: dict[str, Any] = field(default_factory=dict)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def compile_template(value: Any, where: str) -> Any:
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return _ENV.from_string(value)
    except jinja2.TemplateSyntaxError as exc:
        raise PolicyError(f"{where}: template syntax error: {exc.message}") from exc
