"""Adversarial: the share of traffic a shift_traffic step moves (`step`, a template over the alert,
or a YAML value) is what the traffic budget counts. "nan" compared false with the budget, so it
passed however much had moved; a negative step passed as "moves less than nothing", moved weight
back to the failing backend and lowered the budget's running total for the next shifts. Only a
finite number >= 0 is a share of traffic; anything else blocks the plan (template_error) before
any rail reads it. Pure core, real config parser."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.config import parse_config
from remediator.domain.decide import decide
from remediator.domain.models import ClusterView, Incident, PastAction, SafetyState

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def _config(step):
    return parse_config({"safety": {"budget": {"max_traffic_shift_percent": 50, "window": "1h"}},
                         "policy": {"rules": [{
                             "name": "shift", "match": ['alertname="BackendSlow"'],
                             "actions": [{"type": "shift_traffic", "params": {
                                 "namespace": "ml", "route": "llm", "from": "a", "to": "b", "step": step}}]}]}},
                        "adv.yaml")


def _decide(config, step_label: str):
    incident = Incident("ab12", NOW - dt.timedelta(minutes=1), {"alertname": "BackendSlow", "step": step_label},
                        id=9)
    moved_already = [PastAction(1, "shift", "shift_traffic", "ml/llm", NOW - dt.timedelta(minutes=5), "succeeded",
                                amount=50.0)]  # the budget is used up
    return decide(incident, config.rules, moved_already, ClusterView(), config.safety, SafetyState(), NOW)


@pytest.mark.parametrize("label", ["nan", "NaN", "inf", "-50", "-inf"])
def test_a_step_that_is_not_a_share_of_traffic_never_acts(label):
    d = _decide(_config("{{ labels.step }}"), label)
    assert d.outcome == "blocked", d.trace
    assert d.reason == "template_error", d.trace


def test_a_valid_step_is_still_held_by_the_budget():
    d = _decide(_config("{{ labels.step }}"), "10")
    assert d.outcome == "wait" and d.reason == "budget", d.trace


def test_a_nan_written_in_the_config_is_an_error():
    from vigil_common.config import ConfigError

    with pytest.raises(ConfigError):
        _config(float("nan"))
