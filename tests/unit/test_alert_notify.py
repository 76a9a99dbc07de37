"""alerts.notify: routing to targets, and what webhook, Slack and e-mail messages contain."""

from __future__ import annotations

from typing import Any

from callstream.alerts.contract import AlertEvent, WebhookPayload
from callstream.alerts.evaluate import Group, Observation
from callstream.alerts.notify import (
    batches,
    email_message,
    notification_id,
    recipients_for,
    slack_payload,
    targets_for,
    webhook_payload,
)
from callstream.alerts.rules import parse_rules
from callstream.alerts.series import SeriesId
from callstream.alerts.state import AlertState, step

T0 = 1_772_366_400_000

RULES = parse_rules(
    {
        "routes": {
            "oncall": {
                "webhook": True,
                "slack": {"channel": "#oncall"},
                "email": {"to": ["oncall@example.com"]},
            },
            "finance": {"email": {}},
            "quiet": {},
        },
        "rules": [
            {"name": "d", "type": "budget"},
            {"name": "o", "type": "budget", "route": "oncall"},
            {"name": "c", "type": "budget", "route": ["oncall", "finance"], "slack_channel": "#cost"},
            {"name": "q", "type": "budget", "route": "quiet"},
        ],
    }
)


def test_targets_follow_the_rules_routes() -> None:
    by_name = {rule.name: rule for rule in RULES.rules}
    assert targets_for(by_name["d"], RULES, webhook_configured=True) == ["webhook"]
    assert targets_for(by_name["d"], RULES, webhook_configured=False) == ["log"]
    assert targets_for(by_name["o"], RULES, True) == ["webhook", "slack:#oncall", "email:oncall"]
    assert targets_for(by_name["c"], RULES, True) == [
        "webhook",
        "slack:#cost",
        "email:oncall",
        "email:finance",
    ]
    assert targets_for(by_name["q"], RULES, True) == ["log"]
    assert recipients_for("email:oncall", RULES, ["default@example.com"]) == ["oncall@example.com"]
    assert recipients_for("email:finance", RULES, ["default@example.com"]) == ["default@example.com"]


def events() -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for i, (model, severity) in enumerate([("gpt-4.1", "warning"), ("claude-sonnet-4-5", "critical")]):
        rule = parse_rules(
            {
                "rules": [
                    {
                        "name": f"r{i}",
                        "type": "threshold",
                        "metric": "errors",
                        "threshold": 1,
                        "severity": severity,
                    }
                ]
            }
        ).rules[0]
        group = Group(rule, SeriesId("model", model))
        state = AlertState(group.alert_id)
        made += step(
            state, group, Observation(True, 7.0, 1.0, message="errors 7 > 1"), T0, False, ["webhook"]
        )
    made += step(state, group, Observation(False, 0.0, 1.0), T0 + 60_000, False, ["webhook"])
    return made


def test_the_webhook_body_is_the_documented_schema() -> None:
    body = webhook_payload("webhook", events(), "2026-03-01T12:00:01.000Z")
    WebhookPayload.model_validate(body)
    assert body["schema"] == "callstream.alerts.v1"
    assert (body["firing"], body["resolved"]) == (2, 1)
    # Firing first, critical first; a stable order, so the same events always make the same body.
    assert [(e["kind"], e["severity"]) for e in body["events"]] == [
        ("firing", "critical"),
        ("firing", "warning"),
        ("resolved", "critical"),
    ]
    assert body["id"] == notification_id("webhook", [e["event_id"] for e in reversed(events())])
    for event in body["events"]:
        AlertEvent.model_validate(event)


def test_slack_messages_name_the_channel_only_when_asked() -> None:
    message = slack_payload("#cost", events())
    assert message["channel"] == "#cost"
    lines = message["text"].splitlines()
    assert lines[0] == "*callstream alerts: 2 firing, 1 resolved*"
    assert lines[1].startswith("• [CRITICAL] r1 firing for model=claude-sonnet-4-5")
    assert lines[3].startswith("• [RESOLVED] r1 resolved for model=claude-sonnet-4-5")
    assert "channel" not in slack_payload("", events())
    assert "&lt;b&gt;" in slack_payload("", [dict(events()[0], message="<b>")])["text"]


def test_an_email_has_a_message_id_from_the_notification_id() -> None:
    message = email_message(events(), "alerts@example.com", ["a@example.com", "b@example.com"], "n-123")
    assert message["Message-ID"] == "<n-123@callstream.alerts>"
    assert message["To"] == "a@example.com, b@example.com"
    assert message["Subject"].startswith("[callstream] [CRITICAL] r1 firing for model=claude-sonnet-4-5")
    assert message["Subject"].endswith("(+2 more)")
    body = message.get_content()
    assert "callstream alerts: 2 firing, 1 resolved" in body
    assert body.count("event id ") == 3


def test_many_events_are_split_into_messages_of_bounded_size() -> None:
    many = [dict(events()[0], event_id=f"e{i:03d}", alert_id=f"a{i:03d}") for i in range(120)]
    parts = batches(many, 50)
    assert [len(p) for p in parts] == [50, 50, 20]
    assert [e["event_id"] for p in parts for e in p] == [f"e{i:03d}" for i in range(120)]
