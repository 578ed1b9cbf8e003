"""Vigil's remediator: Alertmanager webhooks in, safe Kubernetes actions out."""

__version__ = "0.1.0"
