"""XID codes by class and what they mean: the exporter (which codes exist at 0, which the fast
path pushes), the rules (which alert a code raises) and the dashboards read these, and nothing
else defines them.

Classes after NVIDIA's XID catalog, the Health Validation XID checks and the EKS node monitoring
agent's well-known list (shared/reference/gpu-metrics.md §4.3). Check the class of a code against
the catalog for the GPU generation before relying on it.
"""

from __future__ import annotations

# A drain, a GPU reset, a reboot or an RMA: the node must stop taking work.
NODE_ACTION: tuple[int, ...] = (46, 48, 54, 62, 64, 74, 79, 95, 109, 119, 120, 140, 143, 154)
# ECC recording or contained errors: reset at the next opportunity, watch the trend.
MEMORY_RECOVERABLE: tuple[int, ...] = (63, 92, 94)
# The workload's fault; a node problem only if it repeats on the same GPU.
APPLICATION: tuple[int, ...] = (13, 31, 43, 45)
# "Preemptive cleanup, due to previous errors": with "caused by previous Xid N" in the kernel log
# it is a follow-on of N, not a new fault.
FOLLOW_ON = 45

MEANING: dict[int, str] = {
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "Preemptive cleanup, due to previous errors",
    46: "GPU stopped processing",
    48: "Double Bit ECC Error",
    54: "Auxiliary power is not connected to the GPU board",
    62: "Internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLINK Error",
    79: "GPU has fallen off the bus",
    92: "High single-bit ECC error rate",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
    109: "Context Switch Timeout Error",
    119: "GSP RPC Timeout",
    120: "GSP Error",
    # 140, 143 and 154 are newer codes; these names follow NVIDIA's XID catalog as remembered, not
    # re-read from it here: check them before relying on the text.
    140: "Unrecovered ECC Error",
    143: "GPU Initialization Failure",
    154: "GPU Recovery Action Changed",
}

# Series pre-created at 0 so that increase() sees the first event of each.
PRECREATED: tuple[int, ...] = tuple(sorted({*NODE_ACTION, *MEMORY_RECOVERABLE, *APPLICATION} - {140, 143}))


def xid_class(code: int) -> str:
    """`node_action`, `memory_recoverable`, `application` or `unclassified`."""
    for name, codes in (("node_action", NODE_ACTION), ("memory_recoverable", MEMORY_RECOVERABLE),
                        ("application", APPLICATION)):
        if code in codes:
            return name
    return "unclassified"


def pattern(codes: tuple[int, ...]) -> str:
    """The codes as a PromQL regex alternation: `46|48|...`."""
    return "|".join(str(c) for c in codes)
