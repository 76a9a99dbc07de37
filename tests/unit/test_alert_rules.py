"""alerts.rules and alerts.config: the rules file, validated at start with errors that name the
rule and the field, checked against the budgets file and the configured receivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from callstream.alerts.config import load_config, problems
from callstream.alerts.rules import (
    DEFAULT_RULES_FILE,
    RULE_TYPES,
    BudgetRule,
    DeadLetterRule,
    FlatlineRule,
    ForecastRule,
    RulesFileError,
    SpikeRule,
    StalledRule,
    ThresholdRule,
    load_rules,
    parse_rules,
)
from callstream.alerts.settings import AlertSettings
from callstream.budgets import parse_budgets


def test_the_default_rules_are_the_tutorials_three_done_right_and_more() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    by_name = {rule.name: rule for rule in rules.rules}
    error_rate = by_name["error-rate"]
    assert isinstance(error_rate, ThresholdRule)
    assert (error_rate.metric, error_rate.op, error_rate.threshold) == ("error_rate", ">", 0.05)
    assert (error_rate.window_minutes, error_rate.min_requests, error_rate.group_by) == (5, 50, "model")
    slow = by_name["slow-p95"]
    assert isinstance(slow, ThresholdRule)
    assert (slow.metric, slow.op, slow.threshold, slow.window_minutes) == ("latency_p95_ms", ">=", 5000, 5)
    spike = by_name["latency-spike"]
    assert isinstance(spike, SpikeRule) and (spike.factor, spike.baseline_minutes) == (3, 60)
    assert isinstance(by_name["budget"], BudgetRule)
    assert isinstance(by_name["budget-forecast"], ForecastRule)
    unpriced = by_name["unpriced-model"]
    assert isinstance(unpriced, ThresholdRule) and unpriced.metric == "unpriced_requests"
    assert isinstance(by_name["dead-letters"], DeadLetterRule)
    assert isinstance(by_name["flatline"], FlatlineRule)
    assert isinstance(by_name["consumer-stalled"], StalledRule)
    assert {rule.type for rule in rules.rules} == set(RULE_TYPES)
    assert all(rule.route == ("default",) for rule in rules.rules)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"name": "e", "type": "threshold", "metric": "error_rate", "threshold": "high"},
            "rule 'e' field threshold: Input should be a valid number",
        ),
        (
            {"name": "e", "type": "threshold", "metric": "error_rat", "threshold": 1},
            "rule 'e' field metric: Input should be",
        ),
        ({"name": "e", "type": "threshold", "metric": "errors"}, "rule 'e' field threshold: Field required"),
        (
            {"name": "e", "type": "threshold", "metric": "errors", "threshold": 1, "window_minutes": 0},
            "rule 'e' field window_minutes: Input should be greater than or equal to 1",
        ),
        (
            {"name": "e", "type": "threshold", "metric": "errors", "threshold": 1, "group_by": "region"},
            "rule 'e' field group_by",
        ),
        ({"name": "s", "type": "spike", "metric": "errors", "factor": 0.5}, "rule 's' field factor"),
        ({"name": "x", "type": "page-me"}, "rule 'x' field type: must be one of: threshold, spike"),
        ({"type": "budget"}, "rule #1 field name: Field required"),
        (
            {"name": "b", "type": "budget", "budget": ["x"]},
            "rule 'b' field budget: Extra inputs are not permitted",
        ),
        ({"name": "f", "type": "flatline"}, "rule 'f' field group_by: Field required"),
        ({"name": "b", "type": "budget", "route": "oncall"}, "rule 'b' field route: no route 'oncall'"),
        ({"name": "b", "type": "budget", "severity": "page"}, "rule 'b' field severity"),
    ],
)
def test_errors_name_the_rule_and_the_field(rule: dict, message: str) -> None:
    with pytest.raises(RulesFileError) as caught:
        parse_rules({"rules": [rule]}, "rules.yaml")
    assert str(caught.value).startswith("rules.yaml: ")
    assert message in str(caught.value)


def test_duplicate_names_and_bad_routes_are_refused() -> None:
    with pytest.raises(RulesFileError, match="rule name 'b' is used twice"):
        parse_rules({"rules": [{"name": "b", "type": "budget"}] * 2})
    with pytest.raises(
        RulesFileError, match=r"route 'oncall' field email\.to: 'not-an-address' is not an e-mail address"
    ):
        parse_rules({"routes": {"oncall": {"email": {"to": ["not-an-address"]}}}})


def test_a_file_that_is_not_yaml_or_not_there(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    broken.write_text("rules: [\n")
    with pytest.raises(RulesFileError, match="not valid YAML"):
        load_rules(broken)
    with pytest.raises(RulesFileError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_receivers_and_budgets_are_checked_against_the_settings() -> None:
    rules = parse_rules(
        {
            "routes": {"team": {"slack": {"channel": "#cost"}, "email": {}}, "hook": {"webhook": True}},
            "rules": [
                {"name": "b", "type": "budget", "budgets": ["daily", "weekly"], "route": "team"},
                {"name": "h", "type": "budget", "route": ["hook"]},
            ],
        }
    )
    budgets = parse_budgets({"budgets": [{"name": "daily", "period": "day", "amount_usd": 1}]})
    found = problems(rules, budgets, AlertSettings(_env_file=None))
    assert found == [
        "rule 'b' field budgets: no budget 'weekly' in the budgets file (has: daily)",
        "rule 'b' field route: Slack channel #cost has no incoming webhook; set "
        "CALLSTREAM_ALERT_SLACK_WEBHOOK_URL (or _SLACK_WEBHOOK_URLS)",
        "rule 'b' field route: e-mail needs CALLSTREAM_ALERT_SMTP_HOST and CALLSTREAM_ALERT_EMAIL_FROM",
        "rule 'h' field route: a route sends to the webhook; set CALLSTREAM_ALERT_WEBHOOK_URL",
    ]
    configured = AlertSettings(
        slack_webhook_url="https://hooks.example/x",
        smtp_host="smtp.example",
        email_from="alerts@example.com",
        email_to="ops@example.com",
        webhook_url="https://hooks.example/y",
    )
    assert problems(rules, budgets, configured) == [
        "rule 'b' field budgets: no budget 'weekly' in the budgets file (has: daily)"
    ]


def test_the_shipped_files_load_together(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_URL", "SLACK_WEBHOOK_URL", "EMAIL_TO"):
        monkeypatch.delenv(f"CALLSTREAM_ALERT_{name}", raising=False)
    config = load_config(AlertSettings())
    assert config.budgets.timezone == "Asia/Seoul"
    assert config.logged_only == [rule.name for rule in config.rules.rules]  # no webhook: the log
    monkeypatch.setenv("CALLSTREAM_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    config = load_config(AlertSettings())
    assert config.logged_only == []
    assert all(config.targets(rule) == ["webhook"] for rule in config.rules.rules)
