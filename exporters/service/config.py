"""services.yaml: probe modules, static targets and Kubernetes discovery, validated once.
Every error names the file and the key; unknown keys are errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vigil_common.config import ConfigError, Section, load_yaml

__all__ = ["Config", "ConfigError", "Discovery", "Module", "StaticTarget", "load_config", "parse_config"]

PROBERS = ("http", "inference", "tcp")
INFERENCE_APIS = ("openai_completions", "openai_chat", "kserve_v2")
LABELS = ("namespace", "service", "zone")  # static targets may set these; discovery sets all


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


def _module(name: str, raw: Any, where: str) -> Module:
    s = Section(raw, f"{where}: module {name!r}", ("prober", "timeout", "http", "inference", "tls"))
    prober = s.string("prober", required=True)
    if prober not in PROBERS:
        raise s.err("prober", f"one of {', '.join(PROBERS)}, got {prober!r}")
    http = Section(s.raw.get("http"), f"{s.where}.http",
                   ("method", "path", "valid_status_codes", "body_regex", "headers"))
    inf = Section(s.raw.get("inference"), f"{s.where}.inference",
                  ("api", "path", "model", "prompt", "max_tokens", "stream"))
    tls = Section(s.raw.get("tls"), f"{s.where}.tls", ("insecure_skip_verify", "ca_file"))
    codes = http.raw.get("valid_status_codes", [200])
    if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and 100 <= c < 600 for c in codes):
        raise http.err("valid_status_codes", "a list of HTTP status codes")
    regex = http.string("body_regex")
    try:
        body_regex = re.compile(regex) if regex else None
    except re.error as exc:
        raise http.err("body_regex", f"bad regex: {exc}") from exc
    api = inf.string("api", "openai_completions")
    if api not in INFERENCE_APIS:
        raise inf.err("api", f"one of {', '.join(INFERENCE_APIS)}, got {api!r}")
    default_path = {"openai_completions": "/v1/completions", "openai_chat": "/v1/chat/completions",
                    "kserve_v2": "/v2/models/{model}/infer"}[api]
    if prober == "inference" and api == "kserve_v2" and not inf.string("model"):
        raise inf.err("model", "kserve_v2 needs the model name")
    return Module(
        name=name, prober=prober, timeout=s.duration("timeout", 5.0, positive=True),
        method=(http.string("method", "GET") or "GET").upper(),
        path=(http.string("path", "/health") if prober == "http" else inf.string("path", default_path)) or "/",
        valid_status_codes=tuple(codes), body_regex=body_regex, headers=http.str_map("headers"),
        insecure_skip_verify=tls.boolean("insecure_skip_verify", False), ca_file=tls.string("ca_file"),
        api=api, model=inf.string("model", "") or "", prompt=inf.string("prompt", "ping") or "ping",
        max_tokens=inf.number("max_tokens", 1, integer=True, minimum=1), stream=inf.boolean("stream", True),
    )


def parse_config(data: Any, path: str = "<config>") -> Config:
    top = Section(data, path, ("interval", "concurrency", "modules", "targets", "discovery", "kubernetes"))
    raw_modules = top.raw.get("modules") or {}
    if not isinstance(raw_modules, dict) or not raw_modules:
        raise top.err("modules", "a mapping of module name -> module")
    modules = {n: _module(n, m, path) for n, m in raw_modules.items()}
    targets = []
    names = set()
    for i, raw in enumerate(top.raw.get("targets") or []):
        s = Section(raw, f"{path}: targets[{i}]", ("name", "url", "module", "labels"))
        name, url, module = (s.string(k, required=True) for k in ("name", "url", "module"))
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
        s = Section(raw, f"{path}: discovery[{i}]", ("namespace", "service", "port", "scheme", "module"))
        module = s.string("module", required=True)
        if module not in modules:
            raise s.err("module", f"no module {module!r} (known: {', '.join(modules)})")
        port = s.raw.get("port")
        if not isinstance(port, str | int) or isinstance(port, bool):
            raise s.err("port", "a port name or number")
        scheme = s.string("scheme", "http")
        if scheme not in ("http", "https", "tcp"):
            raise s.err("scheme", f"http, https or tcp, got {scheme!r}")
        discovery.append(Discovery(s.string("namespace", required=True), s.string("service", required=True), module,
                                   port, scheme))
    kube = Section(top.raw.get("kubernetes"), f"{path}: kubernetes", ("kubeconfig",))
    if not targets and not discovery:
        raise top.err("targets", "no targets and no discovery: nothing to probe")
    return Config(path=path, interval=top.duration("interval", 5.0, positive=True),
                  concurrency=top.number("concurrency", 64, integer=True, minimum=1),
                  modules=modules, targets=tuple(targets), discovery=tuple(discovery),
                  kubeconfig=kube.string("kubeconfig"))


def load_config(path: str) -> Config:
    return parse_config(load_yaml(path), path)
