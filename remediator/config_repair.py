"""The `repair:` section of vigil.yaml: where repair Jobs run, what they run, which providers reboot
and replace nodes, validation before return to service, repeat offenders and silences.

    repair:
      namespace: vigil-repair        # Jobs and SelfNodeRemediations
      ttl_after_finished: 1h
      reset_gpu: {image: ..., command: "nvidia-smi -pm 0 -i {{ uuid }} && ...", timeout: 5m}
      reboot: {provider: job | medik8s, job: {image: ..., command: ...}, medik8s: {strategy: Automatic}}
      replace: {provider: cluster-api | karpenter, cluster_api: {version: v1beta1}}
      validate: {job: {image: ..., command: "dcgmi diag -r 2"} | null, queries: [PromQL, ...]}
      repeat_offenders: {max_repairs: 3, window: 7d}
      silences: {alertmanager_url: http://..., grace: 30m, matchers: ['node="{{ node }}"']}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from remediator.domain.policy import PolicyError, compile_template
from remediator.domain.repair import JobSpec, RepairSettings, SilenceSettings
from vigil_common.config import ConfigError, Section

REBOOT_PROVIDERS = ("job", "medik8s")
REPLACE_PROVIDERS = ("", "cluster-api", "karpenter")
STRATEGIES = ("Automatic", "ResourceDeletion", "OutOfServiceTaint")


def _template(text: str, where: str) -> str:
    try:
        compile_template(text, where)  # a syntax error is a config error now, not at 3 a.m.
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc
    return text


def _job(raw: Any, where: str, default: JobSpec) -> JobSpec:
    sec = Section(raw, where, ("image", "command", "timeout", "privileged", "host_root", "host_pid",
                               "runtime_class"))
    return JobSpec(image=sec.string("image", default.image),
                   command=_template(sec.string("command", default.command), f"{where}.command"),
                   timeout=sec.duration("timeout", default.timeout, positive=True),
                   privileged=sec.boolean("privileged", default.privileged),
                   host_root=sec.boolean("host_root", default.host_root),
                   host_pid=sec.boolean("host_pid", default.host_pid),
                   runtime_class=sec.string("runtime_class", default.runtime_class))


def _choice(sec: Section, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = sec.string(key, default)
    if value not in choices:
        raise sec.err(key, f"one of {', '.join(c or '(none)' for c in choices)}, got {value!r}")
    return value


def _silences(raw: Any, where: str) -> SilenceSettings:
    sec = Section(raw, where, ("alertmanager_url", "grace", "matchers", "timeout", "bearer_token_file"))
    matchers = sec.get("matchers", list(SilenceSettings.matchers))
    if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
        raise sec.err("matchers", 'a non-empty list of matchers such as \'node="{{ node }}"\'')
    token = None
    if sec.string("bearer_token_file"):
        try:
            token = Path(sec.string("bearer_token_file")).read_text().strip()
        except OSError as exc:
            raise sec.err("bearer_token_file", f"cannot read: {exc.strerror}") from exc
    return SilenceSettings(alertmanager_url=sec.string("alertmanager_url"),
                           grace=sec.duration("grace", SilenceSettings.grace, positive=True),
                           matchers=tuple(_template(m, f"{where}.matchers") for m in matchers),
                           timeout=sec.duration("timeout", 5.0, positive=True), bearer_token=token)


def parse_repair(raw: Any, path: str) -> RepairSettings:
    where = f"{path}: repair"
    d = RepairSettings()
    top = Section(raw, where, ("namespace", "ttl_after_finished", "service_account", "taint_prefixes", "reset_gpu",
                               "reboot", "replace", "validate", "repeat_offenders", "silences", "pods_gone_timeout"))
    reboot = Section(top.get("reboot"), f"{where}.reboot", ("provider", "job", "medik8s"))
    medik8s = Section(reboot.get("medik8s"), f"{where}.reboot.medik8s", ("strategy",))
    replace = Section(top.get("replace"), f"{where}.replace", ("provider", "cluster_api", "timeout"))
    capi = Section(replace.get("cluster_api"), f"{where}.replace.cluster_api", ("version",))
    validate = Section(top.get("validate"), f"{where}.validate", ("job", "queries"))
    queries = validate.get("queries") or []
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise validate.err("queries", "a list of PromQL expressions")
    has_job = "job" not in validate.raw or validate.get("job") is not None
    repeat = Section(top.get("repeat_offenders"), f"{where}.repeat_offenders", ("max_repairs", "window"))
    prefixes = top.get("taint_prefixes", list(d.taint_prefixes))
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise top.err("taint_prefixes", "a list of taint key prefixes")
    return dataclasses.replace(
        d, namespace=top.string("namespace", d.namespace),
        ttl_after_finished=int(top.duration("ttl_after_finished", d.ttl_after_finished)),
        service_account=top.string("service_account", d.service_account), taint_prefixes=tuple(prefixes),
        reset_gpu=_job(top.get("reset_gpu"), f"{where}.reset_gpu", d.reset_gpu),
        reboot_provider=_choice(reboot, "provider", d.reboot_provider, REBOOT_PROVIDERS),
        reboot_job=_job(reboot.get("job"), f"{where}.reboot.job", d.reboot_job),
        medik8s_strategy=_choice(medik8s, "strategy", d.medik8s_strategy, STRATEGIES),
        replace_provider=_choice(replace, "provider", d.replace_provider, REPLACE_PROVIDERS),
        cluster_api_version=capi.string("version", d.cluster_api_version),
        replace_timeout=replace.duration("timeout", d.replace_timeout, positive=True),
        validate_job=_job(validate.get("job"), f"{where}.validate.job", d.validate_job) if has_job else None,
        validate_queries=tuple(_template(q, f"{where}.validate.queries") for q in queries),
        pods_gone_timeout=top.duration("pods_gone_timeout", d.pods_gone_timeout, positive=True),
        max_repairs=repeat.number("max_repairs", d.max_repairs, integer=True),
        window=repeat.duration("window", d.window, positive=True),
        silence=_silences(top.get("silences"), f"{where}.silences"))
