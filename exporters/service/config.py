"""services.yaml: probe modules, static targets and Kubernetes discovery, validated once.
Every error names the file and the key; unknown keys are errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from remediator.durations import parse_duration

PROBERS = ("http", "inference", "tcp")
INFERENCE_APIS = ("openai_completions", "openai_chat", "kserve_v2")
LABELS = ("namespace", "service", "zone")  # static targets may set these; discovery sets all


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Module:
    name: str
    prober: str
    timeout: float = 5.0
    method: str = "GET"
    path: str = "/health"
    valid_status_codes: tuple[int, ...] = (200,)
    body_regex: re.Pattern | None = None
    headers: dict[str, str] = field(default_factory=dict)
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    api: str = "openai_completions"  # inference: which request shape
    model: str = ""
    prompt: str = "ping"
    max_tokens: int = 1
    stream: bool = True


@dataclass(frozen=True)
class StaticTarget:
    name: str
    url: str  # http(s)://host:port or tcp://host:port
    module: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Discovery:
    namespace: str
    service: str
    module: str
    port: str | int  # an EndpointSlice port name or number
    scheme: str = "http"


@dataclass(frozen=True)
class Config:
    path: str
    interval: float = 5.0
    concurrency: int = 64
    modules: dict[str, Module] = field(default_factory=dict)
    targets: tuple[StaticTarget, ...] = ()
    discovery: tuple[Discovery, ...] = ()
    kubeconfig: str | None = None


class _S:
    def __init__(self, raw: Any, where: str, known: tuple[str, ...]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a mapping")
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        self.raw, self.where = raw, where

    def err(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.where}: key {key!r}: {msg}")

    def str_(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self.raw.get(key, default)
        if v is None and required:
            raise self.err(key, "required")
        if v is not None and not isinstance(v, str):
            raise self.err(key, f"expected a string, got {v!r}")
        return v

    def dur(self, key: str, default: float) -> float:
        if key not in self.raw:
            return default
        try:
            v = parse_duration(self.raw[key])
        except ValueError as exc:
            raise self.err(key, str(exc)) from exc
        if v <= 0:
            raise self.err(key, "must be positive")
        return v

    def bool_(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if not isinstance(v, bool):
            raise self.err(key, f"expected true or false, got {v!r}")
        return v

    def int_(self, key: str, default: int, minimum: int = 1) -> int:
        v = self.raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.err(key, f"expected an integer of at least {minimum}, got {v!r}")
        return v

    def str_map(self, key: str) -> dict[str, str]:
        v = self.raw.get(key) or {}
        if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
            raise self.err(key, "expected a mapping of strings")
        return dict(v)


def _module(name: str, raw: Any, where: str) -> Module:
    s = _S(raw, f"{where}: module {name!r}", ("prober", "timeout", "http", "inference", "tls"))
    prober = s.str_("prober", required=True)
    if prober not in PROBERS:
        raise s.err("prober", f"one of {', '.join(PROBERS)}, got {prober!r}")
    http = _S(s.raw.get("http"), f"{s.where}.http", ("method", "path", "valid_status_codes", "body_regex", "headers"))
    inf = _S(s.raw.get("inference"), f"{s.where}.inference", ("api", "path", "model", "prompt", "max_tokens", "stream"))
    tls = _S(s.raw.get("tls"), f"{s.where}.tls", ("insecure_skip_verify", "ca_file"))
    codes = http.raw.get("valid_status_codes", [200])
    if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and 100 <= c < 600 for c in codes):
        raise http.err("valid_status_codes", "a list of HTTP status codes")
    regex = http.str_("body_regex")
    try:
        body_regex = re.compile(regex) if regex else None
    except re.error as exc:
        raise http.err("body_regex", f"bad regex: {exc}") from exc
    api = inf.str_("api", "openai_completions")
    if api not in INFERENCE_APIS:
        raise inf.err("api", f"one of {', '.join(INFERENCE_APIS)}, got {api!r}")
    default_path = {"openai_completions": "/v1/completions", "openai_chat": "/v1/chat/completions",
                    "kserve_v2": "/v2/models/{model}/infer"}[api]
    if prober == "inference" and api == "kserve_v2" and not inf.str_("model"):
        raise inf.err("model", "kserve_v2 needs the model name")
    return Module(
        name=name, prober=prober, timeout=s.dur("timeout", 5.0),
        method=(http.str_("method", "GET") or "GET").upper(),
        path=(http.str_("path", "/health") if prober == "http" else inf.str_("path", default_path)) or "/",
        valid_status_codes=tuple(codes), body_regex=body_regex, headers=http.str_map("headers"),
        insecure_skip_verify=tls.bool_("insecure_skip_verify", False), ca_file=tls.str_("ca_file"),
        api=api, model=inf.str_("model", "") or "", prompt=inf.str_("prompt", "ping") or "ping",
        max_tokens=inf.int_("max_tokens", 1), stream=inf.bool_("stream", True),
    )


def parse_config(data: Any, path: str = "<config>") -> Config:
    top = _S(data, path, ("interval", "concurrency", "modules", "targets", "discovery", "kubernetes"))
    raw_modules = top.raw.get("modules") or {}
    if not isinstance(raw_modules, dict) or not raw_modules:
        raise top.err("modules", "a mapping of module name -> module")
    modules = {n: _module(n, m, path) for n, m in raw_modules.items()}
    targets = []
    names = set()
    for i, raw in enumerate(top.raw.get("targets") or []):
        s = _S(raw, f"{path}: targets[{i}]", ("name", "url", "module", "labels"))
        name, url, module = s.str_("name", required=True), s.str_("url", required=True), s.str_("module", required=True)
        if not re.fullmatch(r"(https?|tcp)://[^/\s]+(/.*)?", url):
            raise s.err("url", f"expected http(s)://host:port or tcp://host:port, got {url!r}")
        if module not in modules:
            raise s.err("module", f"no module {module!r} (known: {', '.join(modules)})")
        if name in names:
            raise s.err("name", f"{name!r} is used twice")
        names.add(name)
        labels = s.str_map("labels")
        bad = sorted(set(labels) - set(LABELS))
        if bad:
            raise s.err("labels", f"label {bad[0]!r} not allowed (allowed: {', '.join(LABELS)})")
        targets.append(StaticTarget(name, url, module, labels))
    discovery = []
    for i, raw in enumerate(top.raw.get("discovery") or []):
        s = _S(raw, f"{path}: discovery[{i}]", ("namespace", "service", "port", "scheme", "module"))
        module = s.str_("module", required=True)
        if module not in modules:
            raise s.err("module", f"no module {module!r} (known: {', '.join(modules)})")
        port = s.raw.get("port")
        if not isinstance(port, str | int) or isinstance(port, bool):
            raise s.err("port", "a port name or number")
        scheme = s.str_("scheme", "http")
        if scheme not in ("http", "https", "tcp"):
            raise s.err("scheme", f"http, https or tcp, got {scheme!r}")
        discovery.append(Discovery(s.str_("namespace", required=True), s.str_("service", required=True), module,
                                   port, scheme))
    kube = _S(top.raw.get("kubernetes"), f"{path}: kubernetes", ("kubeconfig",))
    if not targets and not discovery:
        raise top.err("targets", "no targets and no discovery: nothing to probe")
    return Config(path=path, interval=top.dur("interval", 5.0), concurrency=top.int_("concurrency", 64),
                  modules=modules, targets=tuple(targets), discovery=tuple(discovery),
                  kubeconfig=kube.str_("kubeconfig"))


def load_config(path: str) -> Config:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, path)
