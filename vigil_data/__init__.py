"""Vigil's example configs, alert rules, Alertmanager routing, Grafana dashboards and provisioning,
and runbooks, shipped in the wheel. The entries are links to the files' one home in the source tree
(alerts/, dashboards/, docs/runbooks/, the examples of remediator and the service exporter): the
wheel holds copies, the repository holds no duplicates. Read them with importlib.resources, or with
`remediator example-config`."""
