"""services.yaml: probe modules, static targets and Kubernetes discovery, validated once.
Every error names the file and the key; unknown keys are errors. Under `service-exporter
check-config` every error is reported at once (vigil_common.config.report); otherwise the first
one raises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vigil_common.config import ConfigError, Section, guarded, load_yaml

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


def _codes(http: Section) -> tuple[int, ...]:
    codes = http.raw.get("valid_status_codes", [200])
    if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and 100 <= c < 600 for c in codes):
        http.fail("valid_status_codes", "a list of HTTP status codes")
        return (200,)
    return tuple(codes)


def _regex(http: Section) -> re.Pattern | None:
    regex = http.string("body_regex")
    try:
        return re.compile(regex) if regex else None
    except re.error as exc:
        http.fail("body_regex", f"bad regex: {exc}")
        return None


def _module(name: str, raw: Any, where: str) -> Module:
    s = Section(raw, f"{where}: module {name!r}", ("prober", "timeout", "http", "inference", "tls"))
    prober = s.string("prober", required=True)
    if prober not in PROBERS:
        s.fail("prober", f"one of {', '.join(PROBERS)}, got {prober!r}")
    http = Section(s.raw.get("http"), f"{s.where}.http",
                   ("method", "path", "valid_status_codes", "body_regex", "headers"))
    inf = Section(s.raw.get("inference"), f"{s.where}.inference",
                  ("api", "path", "model", "prompt", "max_tokens", "stream"))
    tls = Section(s.raw.get("tls"), f"{s.where}.tls", ("insecure_skip_verify", "ca_file"))
    api = inf.string("api", "openai_completions")
    if api not in INFERENCE_APIS:
        inf.fail("api", f"one of {', '.join(INFERENCE_APIS)}, got {api!r}")
        api = "openai_completions"
    default_path = {"openai_completions": "/v1/completions", "openai_chat": "/v1/chat/completions",
                    "kserve_v2": "/v2/models/{model}/infer"}[api]
    if prober == "inference" and api == "kserve_v2" and not inf.string("model"):
        inf.fail("model", "kserve_v2 needs the model name")
    return Module(
        name=name, prober=prober or "http", timeout=s.duration("timeout", 5.0, positive=True),
        method=(http.string("method", "GET") or "GET").upper(),
        path=(http.string("path", "/health") if prober == "http" else inf.string("path", default_path)) or "/",
        valid_status_codes=_codes(http), body_regex=_regex(http), headers=http.str_map("headers"),
        insecure_skip_verify=tls.boolean("insecure_skip_verify", False), ca_file=tls.string("ca_file"),
        api=api, model=inf.string("model", "") or "", prompt=inf.string("prompt", "ping") or "ping",
        max_tokens=inf.number("max_tokens", 1, integer=True, minimum=1), stream=inf.boolean("stream", True),
    )


def _target(raw: Any, where: str, modules: dict[str, Module], names: set[str]) -> StaticTarget | None:
    s = Section(raw, where, ("name", "url", "module", "labels"))
    name, url, module = (s.string(k, required=True) for k in ("name", "url", "module"))
    ok = bool(name and url and module)
    if url and not re.fullmatch(r"(https?|tcp)://[^/\s]+(/.*)?", url):
        s.fail("url", f"expected http(s)://host:port or tcp://host:port, got {url!r}")
        ok = False
    if module and module not in modules:
        s.fail("module", f"no module {module!r} (known: {', '.join(modules)})")
        ok = False
    if name in names:
        s.fail("name", f"{name!r} is used twice")
        ok = False
    names.add(name or "")
    labels = s.str_map("labels")
    bad = sorted(set(labels) - set(LABELS))
    if bad:
        s.fail("labels", f"label {bad[0]!r} not allowed (allowed: {', '.join(LABELS)})")
        ok = False
    return StaticTarget(name, url, module, labels) if ok else None


def _discovery(raw: Any, where: str, modules: dict[str, Module]) -> Discovery | None:
    s = Section(raw, where, ("namespace", "service", "port", "scheme", "module"))
    module = s.string("module", required=True)
    ok = module is not None
    if module and module not in modules:
        s.fail("module", f"no module {module!r} (known: {', '.join(modules)})")
        ok = False
    port = s.raw.get("port")
    if not isinstance(port, str | int) or isinstance(port, bool):
        s.fail("port", "a port name or number")
        ok = False
    scheme = s.string("scheme", "http")
    if scheme not in ("http", "https", "tcp"):
        s.fail("scheme", f"http, https or tcp, got {scheme!r}")
        ok = False
    namespace, service = s.string("namespace", required=True), s.string("service", required=True)
    return Discovery(namespace, service, module, port, scheme) if ok and namespace and service else None


def _listed(top: Section, k: str) -> list:
    raw = top.raw.get(k) or []
    if not isinstance(raw, list):
        top.fail(k, "a list")
        return []
    return raw


def parse_config(data: Any, path: str = "<config>") -> Config:
    top = Section(data, path, ("interval", "concurrency", "modules", "targets", "discovery", "kubernetes"))
    raw_modules = top.raw.get("modules") or {}
    if not isinstance(raw_modules, dict) or not raw_modules:
        top.fail("modules", "a mapping of module name -> module")
        raw_modules = {}
    modules = {n: m for n, m in ((n, guarded(lambda n=n, m=m: _module(n, m, path), at=(raw_modules, n)))
                                 for n, m in raw_modules.items()) if m is not None}
    known = modules | {n: Module(n, "http") for n in raw_modules if n not in modules}  # a bad module: not "unknown"
    names: set[str] = set()
    raw_targets, raw_discovery = _listed(top, "targets"), _listed(top, "discovery")
    targets = [t for i, raw in enumerate(raw_targets)
               if (t := guarded(lambda i=i, raw=raw: _target(raw, f"{path}: targets[{i}]", known, names),
                                at=(raw_targets, i))) is not None]
    discovery = [d for i, raw in enumerate(raw_discovery)
                 if (d := guarded(lambda i=i, raw=raw: _discovery(raw, f"{path}: discovery[{i}]", known),
                                  at=(raw_discovery, i))) is not None]
    kube = Section(top.raw.get("kubernetes"), f"{path}: kubernetes", ("kubeconfig",))
    if not raw_targets and not raw_discovery:
        top.fail("targets", "no targets and no discovery: nothing to probe")
    return Config(path=path, interval=top.duration("interval", 5.0, positive=True),
                  concurrency=top.number("concurrency", 64, integer=True, minimum=1),
                  modules=modules, targets=tuple(targets), discovery=tuple(discovery),
                  kubeconfig=kube.string("kubeconfig"))


def load_config(path: str) -> Config:
    return parse_config(load_yaml(path), path)
