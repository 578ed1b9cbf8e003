"""A small typed model of Grafana's dashboard JSON (schemaVersion 39): just the panel types Vigil
uses, every panel on the `${datasource}` variable, with units, thresholds and a description.

Plain dataclasses rather than grafana-foundation-sdk: the SDK is a public preview whose builds
are pinned per Grafana version (and an unpinned install resolves to the Grafana 10.1 flavour),
while our needs are five panel types and a handful of fields that the tests check directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = ("timeseries", "stat", "gauge", "table", "state-timeline", "bargauge", "row", "text")


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    type: str
    title: str
    description: str
    targets: list[Target]
    unit: str = "short"
    w: int = 8
    h: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    min: float | None = None
    max: float | None = None
    expect_data: bool = True  # the integration test demands a non-empty result
    links: list[dict] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self, pid: int, x: int, y: int) -> dict:
        defaults: dict[str, Any] = {
            "unit": self.unit,
            "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in self.thresholds]},
        }
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.type == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}} if self.type == "timeseries" else {}
        if self.type in ("stat", "gauge", "bargauge"):
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "colorMode": "background", "graphMode": "none"}
        options.update(self.options)
        return {
            "id": pid, "type": self.type, "title": self.title, "description": self.description,
            "datasource": dict(DATASOURCE), "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h},
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options, "links": self.links,
            "targets": [{"refId": chr(ord("A") + i), "datasource": dict(DATASOURCE), "expr": t.expr,
                         "legendFormat": t.legend, "instant": t.instant, "range": not t.instant,
                         "editorMode": "code"} for i, t in enumerate(self.targets)],
        }


@dataclass
class Row:
    title: str
    panels: list[Panel]


@dataclass
class Variable:
    name: str
    query: str  # label_values(...)
    label: str
    multi: bool = True
    include_all: bool = True

    def to_json(self) -> dict:
        return {"name": self.name, "label": self.label, "type": "query", "datasource": dict(DATASOURCE),
                "query": {"query": self.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "definition": self.query, "refresh": 2, "multi": self.multi, "includeAll": self.include_all,
                "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1, "hide": 0}


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[Row]
    variables: list[Variable] = field(default_factory=list)
    tags: tuple[str, ...] = ("vigil",)
    links: list[dict] = field(default_factory=list)

    def panels(self) -> list[Panel]:
        return [p for r in self.rows for p in r.panels]

    def to_json(self) -> dict:
        panels, pid, y = [], 1, 0
        for row in self.rows:
            panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
            pid, y, x, row_h = pid + 1, y + 1, 0, 0
            for p in row.panels:
                if x + p.w > 24:
                    x, y = 0, y + row_h
                    row_h = 0
                panels.append(p.to_json(pid, x, y))
                pid, x, row_h = pid + 1, x + p.w, max(row_h, p.h)
            y += row_h
        templating = [{"name": "datasource", "label": "Data Source", "type": "datasource", "query": "prometheus",
                       "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False}]
        templating += [v.to_json() for v in self.variables]
        return {
            "id": None, "uid": self.uid, "title": self.title, "description": self.description, "tags": list(self.tags),
            "timezone": "browser", "editable": False, "graphTooltip": 1, "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1, "time": {"from": "now-3h", "to": "now"}, "timepicker": {}, "fiscalYearStartMonth": 0,
            "liveNow": False, "weekStart": "", "links": self.links,
            "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                      "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                      "name": "Annotations & Alerts", "type": "dashboard"}]},
            "templating": {"list": templating}, "panels": panels,
        }


def export_variant(dashboard: dict) -> dict:
    """For the interactive Import dialog: `__inputs` for the datasource instead of the variable."""
    import json

    text = json.dumps(dashboard).replace('"${datasource}"', '"${DS_PROMETHEUS}"')
    out = json.loads(text)
    out["templating"]["list"] = [v for v in out["templating"]["list"] if v["name"] != "datasource"]
    return {"__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                          "pluginId": "prometheus", "pluginName": "Prometheus"}],
            "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
                           {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}],
            **out}
