"""Facts shared by every Vigil package, one small module each: durations, config reading, HOST:PORT,
the signal catalog (XID classes and meanings, SXID severities, the alerts the fast path pushes,
the runbook location) and the generated-files check. Imports none of the product packages
(exporters, alerts, remediator, dashboards), which import none of each other (`make lint`)."""
