"""The alerts the GPU exporter's fast path pushes to Alertmanager, as the rules define them.

Alertmanager merges a pushed alert with the rule's only if their label sets are equal, so the
name, the static labels and the labels the rule aggregates `by` are defined here once: the rule
generator writes the rules from them and the fast path builds its alerts from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REMEDIATE: dict[str, str] = {"remediation": "auto"}  # routes an alert to the remediator
GPU_LABELS: tuple[str, ...] = ("node", "gpu", "uuid")


@dataclass(frozen=True)
class PushedAlert:
    alertname: str
    severity: str
    summary: str
    by: tuple[str, ...]  # the rule's `by (...)` labels, which the alert carries
    extra: dict[str, str] = field(default_factory=dict)  # static labels besides severity

    @property
    def labels(self) -> dict[str, str]:
        """The rule's static labels."""
        return {"severity": self.severity, **self.extra}


PUSHED: dict[str, PushedAlert] = {
    "xid": PushedAlert("GpuXidCritical", "critical",
                       "A GPU reported an XID error that needs a drain, a GPU reset or a node reboot.",
                       (*GPU_LABELS, "xid"), REMEDIATE),
    "lost": PushedAlert("GpuLost", "critical", "A GPU fell off the bus or needs a reset.", GPU_LABELS, REMEDIATE),
    "ecc_uncorrected": PushedAlert("GpuEccUncorrectable", "critical", "A GPU reported uncorrectable ECC errors.",
                                   GPU_LABELS, REMEDIATE),
    "row_remap_failure": PushedAlert("GpuRowRemapFailure", "critical", "A GPU failed to remap a memory row.",
                                     GPU_LABELS, REMEDIATE),
}
