"""NVSwitch SXid severities as the GPU exporter labels them and as the rules alert on them.

The kernel line says `Fatal` or `Non-fatal` after the code (`nvidia-nvswitch0: SXid
(PCI:0000:c3:00.0): 24007, Fatal, Link 28 ...`); some lines say neither (`12033, Severity 1
...`, `26006, SOE HALTED`). NVSentinel treats anything but Non-fatal as fatal; Vigil pages on
`fatal` and opens a ticket on `unknown`, and only counts `non_fatal`.
"""

from __future__ import annotations

FATAL, NON_FATAL, UNKNOWN = "fatal", "non_fatal", "unknown"
SEVERITIES: tuple[str, ...] = (FATAL, NON_FATAL, UNKNOWN)

# Codes seen in real logs (NVSentinel's fixtures), with what the line says; for the simulated
# backend and the runbook, not a complete catalog.
EXAMPLES: dict[int, tuple[str, str]] = {
    12028: (NON_FATAL, "egress non-posted PRIV error"),
    12033: (UNKNOWN, "Severity 1 Engine instance 00 Sub-engine instance 00"),
    20009: (NON_FATAL, "RX Short Error Rate"),
    24007: (FATAL, "sourcetrack timeout error"),
    26006: (UNKNOWN, "SOE HALTED"),
}


def severity_of(field: str) -> str:
    """The severity label for the text after the code (`Fatal, Link 28 ...` -> fatal)."""
    head = field.split(",", 1)[0].strip().lower()
    if head == "fatal":
        return FATAL
    if head in ("non-fatal", "nonfatal", "non fatal"):
        return NON_FATAL
    return UNKNOWN
