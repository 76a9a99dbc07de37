"""alerts.delivery: the sender against real receivers on loopback (an HTTP server and an SMTP
server), what each outcome means, and that secrets never appear in a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from callstream.alerts.config import AlertConfig
from callstream.alerts.delivery import Sender, backoff_ms, classify_http, classify_smtp
from callstream.alerts.receiver import SmtpReceiver, WebhookReceiver
from callstream.alerts.rules import parse_rules
from callstream.alerts.series import routing_for
from callstream.alerts.settings import AlertSettings
from callstream.budgets import parse_budgets
from callstream.infra.local_servers import free_port

EVENT: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "errors|model|gpt-4.1#1.1:firing",
    "alert_id": "errors|model|gpt-4.1",
    "kind": "firing",
    "state": "firing",
    "rule": "errors",
    "rule_type": "threshold",
    "severity": "critical",
    "description": "",
    "dimension": "model",
    "key": "gpt-4.1",
    "budget": None,
    "episode": 1,
    "level": None,
    "value": 0.2,
    "threshold": 0.05,
    "message": "errors firing for model=gpt-4.1: error_rate 20.0% > 5.0%",
    "fired_at": "2026-03-01T12:00:00.000Z",
    "resolved_at": None,
    "at": "2026-03-01T12:00:00.000Z",
    "silenced": False,
    "notified": True,
    "channels": ["webhook"],
    "details": {},
}


@pytest.fixture
def http() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.close()


def config(**settings: Any) -> AlertConfig:
    rules = parse_rules({"routes": {"ops": {"email": {"to": ["ops@example.com"]}}}})
    budgets = parse_budgets({})
    return AlertConfig(AlertSettings(**settings), rules, budgets, routing_for(rules, budgets), {}, 0, [])


def send(cfg: AlertConfig, target: str, events: list[dict[str, Any]]) -> Any:
    async def go() -> Any:
        sender = Sender(cfg)
        try:
            return await sender.send(target, events)
        finally:
            await sender.close()

    return asyncio.run(go())


def test_webhook_delivery_with_an_idempotency_key(http: WebhookReceiver) -> None:
    cfg = config(webhook_url=f"{http.url}/hook", webhook_authorization="Bearer s3cr3t-token")
    sent = send(cfg, "webhook", [EVENT])
    assert sent.verdict == "delivered"
    (request,) = http.accepted("/hook")
    assert request.headers["Idempotency-Key"] == sent.notification_id == request.body["id"]
    assert request.headers["Authorization"] == "Bearer s3cr3t-token"
    assert request.body["events"] == [EVENT]


def test_slack_per_channel_webhooks_and_the_default_one(http: WebhookReceiver) -> None:
    cfg = config(
        slack_webhook_url=f"{http.url}/slack-default",
        slack_webhook_urls={"#cost": f"{http.url}/slack-cost"},
    )
    assert send(cfg, "slack:#cost", [EVENT]).verdict == "delivered"
    assert send(cfg, "slack:#oncall", [EVENT]).verdict == "delivered"
    (cost,) = http.accepted("/slack-cost")
    (default,) = http.accepted("/slack-default")
    assert "channel" not in cost.body  # that webhook is the channel's own
    assert default.body["channel"] == "#oncall"
    assert "error_rate 20.0%" in default.body["text"]


def test_email_over_smtp(smtp: SmtpReceiver) -> None:
    cfg = config(
        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False, email_from="alerts@example.com"
    )
    sent = send(cfg, "email:ops", [EVENT])
    assert sent.verdict == "delivered", sent.reason
    ((_, recipients, message),) = smtp.messages
    assert recipients == ["ops@example.com"]
    assert message["Message-ID"] == f"<{sent.notification_id}@callstream.alerts>"
    assert "gpt-4.1" in message["Subject"]


def test_failures_are_retried_or_given_up_and_secrets_never_show(http: WebhookReceiver) -> None:
    secret_url = f"http://127.0.0.1:{free_port()}/services/T000/B000/sk-secretsecret"
    sent = send(config(webhook_url=secret_url), "webhook", [EVENT])  # nobody listens there
    assert sent.verdict == "retry"
    assert "sk-secretsecret" not in sent.reason and "T000" not in sent.reason
    http.fail_next, http.fail_status = 1, 503
    assert send(config(webhook_url=f"{http.url}/h"), "webhook", [EVENT]).verdict == "retry"
    http.fail_next, http.fail_status = 1, 404  # the receiver echoes the refused path: the token
    gone = send(config(webhook_url=f"{http.url}/services/T000/B000/xoxb-token"), "webhook", [EVENT])
    assert gone.verdict == "give_up" and gone.reason == "HTTP 404: no such hook: [redacted]"
    smtp_down = config(
        smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False, email_from="a@example.com"
    )
    assert send(smtp_down, "email:ops", [EVENT]).verdict == "retry"


def test_outcome_rules_and_backoff() -> None:
    assert [classify_http(s) for s in (200, 204, 400, 401, 404, 408, 429, 500, 503)] == [
        "delivered",
        "delivered",
        "give_up",
        "give_up",
        "give_up",
        "retry",
        "retry",
        "retry",
        "retry",
    ]
    assert [classify_smtp(c) for c in (None, 421, 451, 550, 554)] == [
        "retry",
        "retry",
        "retry",
        "give_up",
        "give_up",
    ]
    assert [backoff_ms(n, 1000, 60_000) for n in range(1, 9)] == [
        1000,
        2000,
        4000,
        8000,
        16000,
        32000,
        60000,
        60000,
    ]


HTTP_ALLOWED = "CALLSTREAM_ALERT_ALLOW_HTTP_WEBHOOK_CREDENTIALS"
SMTP_ALLOWED = "CALLSTREAM_ALERT_ALLOW_SMTP_LOGIN_WITHOUT_TLS"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"webhook_url": "http://alerts.example.com/hook", "webhook_authorization": "Bearer t0ken"},
            HTTP_ALLOWED,
        ),
        (
            {"webhook_url": "http://user:pw@alerts.example.com/hook"},
            HTTP_ALLOWED,
        ),
        (
            {"slack_webhook_url": "http://hooks.slack.com/services/T/B/x"},
            HTTP_ALLOWED,
        ),
        (
            {
                "smtp_host": "smtp.example.com",
                "email_from": "a@example.com",
                "smtp_starttls": False,
                "smtp_username": "alerts",
            },
            SMTP_ALLOWED,
        ),
    ],
)
def test_credentials_in_clear_are_refused_at_start_unless_allowed_by_name(
    fields: dict[str, object], named: str
) -> None:
    from pydantic import ValidationError

    from callstream.alerts.settings import AlertSettings

    with pytest.raises(ValidationError, match=named):
        AlertSettings(**fields)
    allow = named.removeprefix("CALLSTREAM_ALERT_").lower()
    assert AlertSettings(**fields, **{allow: True}).transport_problems() == []


def test_clear_transport_without_credentials_or_to_loopback_is_accepted() -> None:
    from callstream.alerts.settings import AlertSettings

    assert AlertSettings(webhook_url="http://alerts.example.com/hook").transport_problems() == []
    local = AlertSettings(webhook_url="http://127.0.0.1:9000/hook", webhook_authorization="Bearer t0ken")
    assert local.transport_problems() == []
    login = {"email_from": "a@x", "smtp_starttls": False, "smtp_username": "u"}
    assert AlertSettings(smtp_host="localhost", **login).transport_problems() == []
    assert AlertSettings(smtp_host="smtp.example.com", smtp_secure=True, **login).transport_problems() == []
