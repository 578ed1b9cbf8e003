"""The pure domain core: alert + policy + history + cluster view -> plan. No I/O imports."""
