"""Label matchers exactly as Alertmanager 0.25 parses its `matchers:` lists (pkg/labels/parse.go):
one list entry may hold several comma-separated matchers, optionally in braces; values may be
quoted, with \\" \\\\ and \\n escapes; a regex is anchored as ^(?:re)$ and must be valid RE2 as Go's
regexp accepts it. Regexes are matched with RE2 too, so `\\d` or `.` mean what they mean in
Alertmanager and Prometheus, not what Python's `re` makes of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import re2

# Go's \s is [\t\n\f\r ]; Go's $ (without m) is the end of the text, Python's \Z.
_WS = r"[\t\n\f\r ]"
_MATCHER = re.compile(rf"^{_WS}*([a-zA-Z_:][a-zA-Z0-9_:]*){_WS}*(=~|=|!=|!~){_WS}*(.*?){_WS}*\Z", re.DOTALL)
# Constructs RE2 (C++) accepts and Go's regexp/syntax (the Go of Alertmanager 0.25) rejects.
_GO_REJECTS = (re.compile(r"(?<!\\)(?:\\\\)*\\C"), re.compile(r"(?<!\\)(?:\\\\)*\(\?<"))
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


class MatcherError(ValueError):
    pass


def compile_regex(value: str) -> Any:
    """The anchored RE2 program for a matcher's value, or MatcherError with Go's reason."""
    for bad in _GO_REJECTS:
        if bad.search(value):
            raise MatcherError(f"invalid RE2 regex {value!r}: construct not supported by Go's regexp")
    try:
        return re2.compile(f"^(?:{value})$", _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise MatcherError(f"invalid RE2 regex {value!r}: {reason}") from exc


def _unescape(raw: str, original: str) -> str:
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(ch, "\\" + ch))
        elif ch == "\\":
            if i < len(raw) - 1:
                escaped = True
            else:
                out.append("\\")  # a trailing backslash is literal
        elif ch == '"':
            if not quoted or i < len(raw) - 1:
                raise MatcherError(f"matcher value contains unescaped double quote: {original}")
            quoted = False
        else:
            out.append(ch)
    if quoted:
        raise MatcherError(f"matcher value contains unescaped double quote: {original}")
    return "".join(out)


@dataclass(frozen=True)
class ParsedMatcher:
    label: str
    op: str
    value: str
    regex: Any = None  # the anchored RE2 program of =~ and !~


def parse_one(text: str) -> ParsedMatcher:
    m = _MATCHER.match(text)
    if not m:
        raise MatcherError(f'bad matcher format: {text} (expected label="value", ops = != =~ !~)')
    label, op, raw = m.groups()
    value = _unescape(raw, raw)
    return ParsedMatcher(label, op, value, compile_regex(value) if op in ("=~", "!~") else None)


def _split(text: str) -> list[str]:
    """ParseMatchers' tokenizer: commas outside quotes separate matchers."""
    tokens, token = [], []
    inside = escaped = False
    for ch in text:
        if ch == ",":
            if not inside:
                tokens.append("".join(token))
                token = []
                continue
        elif ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip()
    if last:
        tokens.append(last)
    return tokens


def parse_matchers(text: str) -> list[ParsedMatcher]:
    """One entry of a `matchers:` list: `a="1"`, `a="1", b=~"x|y"` or `{a="1"}`."""
    if not isinstance(text, str):
        raise MatcherError(f"a matcher is a string such as 'alertname=\"X\"', got {text!r}")
    if text.startswith("{"):
        text = text[1:]
    if text.endswith("}"):
        text = text[:-1]
    return [parse_one(t) for t in _split(text)]
