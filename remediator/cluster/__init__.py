"""The cluster client layer: the only code that imports `kubernetes` (and the Prometheus client)."""
