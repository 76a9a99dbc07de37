"""Where an alert's notifications go, and what they look like. Pure.

Targets are strings stored with each owed delivery (so a restarted worker knows them without the
settings of the worker that decided the event): `webhook`, `slack:<channel>` (empty channel: the
incoming webhook's own), `email:<route>`, `log`. Events owed to the same target at the same time
are sent together, as one message (at most `max_events`), in a stable order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from callstream.alerts.contract import WEBHOOK_SCHEMA
from callstream.alerts.rules import DEFAULT_ROUTE, Rule, RulesFile

LOG = "log"
WEBHOOK = "webhook"
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
FIRING_KINDS = ("firing", "realert", "escalated")


def targets_for(rule: Rule, rules: RulesFile, webhook_configured: bool) -> list[str]:
    """The receivers of a rule's notifications, from its routes. The route `default`, unless the
    file defines it, is the webhook when one is configured, else the log."""
    found: list[str] = []
    for name in rule.route:
        route = rules.routes.get(name)
        if route is None:  # the implicit default route
            found.append(WEBHOOK if webhook_configured else LOG)
            continue
        if route.webhook:
            found.append(WEBHOOK)
        if route.slack is not None:
            found.append(f"slack:{rule.slack_channel or route.slack.channel or ''}")
        if route.email is not None:
            found.append(f"email:{name}")
        if not (route.webhook or route.slack or route.email):
            found.append(LOG)
    return list(dict.fromkeys(found))


def describe_target(target: str) -> str:
    """For logs and dead letters: what the target is, never its address or secret."""
    return target if target != "slack:" else "slack"


def notification_id(target: str, event_ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join([target, *sorted(event_ids)]).encode()).hexdigest()
    return f"n-{digest[:32]}"


def order(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Firing before resolved, critical first, then by alert id: one stable order for a message."""
    return sorted(
        events,
        key=lambda e: (
            e["kind"] not in FIRING_KINDS,
            SEVERITY_ORDER.get(e["severity"], 9),
            e["alert_id"],
            e["event_id"],
        ),
    )


def batches(events: Sequence[dict[str, Any]], max_events: int) -> list[list[dict[str, Any]]]:
    ordered = order(events)
    return [ordered[i : i + max_events] for i in range(0, len(ordered), max_events)]


def group_by_target(owed: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for target, event in owed:
        grouped[target].append(event)
    return dict(grouped)


def webhook_payload(target: str, events: Sequence[dict[str, Any]], sent_at: str) -> dict[str, Any]:
    """The generic webhook body (schema `callstream.alerts.v1`, see contract.WebhookPayload)."""
    events = order(events)
    return {
        "schema": WEBHOOK_SCHEMA,
        "id": notification_id(target, [e["event_id"] for e in events]),
        "sent_at": sent_at,
        "firing": sum(1 for e in events if e["kind"] in FIRING_KINDS),
        "resolved": sum(1 for e in events if e["kind"] == "resolved"),
        "events": events,
    }


def headline(event: dict[str, Any]) -> str:
    mark = "RESOLVED" if event["kind"] == "resolved" else event["severity"].upper()
    return f"[{mark}] {event['message']}"


def summary(events: Sequence[dict[str, Any]]) -> str:
    firing = sum(1 for e in events if e["kind"] in FIRING_KINDS)
    resolved = len(events) - firing
    parts = [f"{firing} firing"] if firing else []
    if resolved:
        parts.append(f"{resolved} resolved")
    return "callstream alerts: " + ", ".join(parts)


def slack_payload(channel: str, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An incoming-webhook message: one line per event. `channel` is set only when the rule names
    one (webhooks bound to a channel ignore it; a per-channel webhook URL is the robust way)."""
    events = order(events)
    lines = [f"*{summary(events)}*"] + [f"• {_slack_escape(headline(e))}" for e in events]
    payload: dict[str, Any] = {"text": "\n".join(lines)}
    if channel:
        payload["channel"] = channel
    return payload


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def email_message(
    events: Sequence[dict[str, Any]], sender: str, recipients: Sequence[str], notification: str
) -> EmailMessage:
    """A plain-text e-mail; its Message-ID is derived from the notification id, so a re-sent copy
    is recognisably the same message."""
    events = order(events)
    message = EmailMessage()
    first = events[0]
    more = f" (+{len(events) - 1} more)" if len(events) > 1 else ""
    message["Subject"] = f"[callstream] {headline(first)}{more}"[:250]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{notification}@callstream.alerts>"
    message["X-Callstream-Notification-Id"] = notification
    body = [summary(events), ""]
    for event in events:
        body.append(headline(event))
        body.append(f"  rule {event['rule']} ({event['rule_type']}), {event['dimension']}={event['key']}")
        body.append(f"  value {event['value']}, threshold {event['threshold']}, at {event['at']}")
        body.append(f"  event id {event['event_id']}")
        body.append("")
    message.set_content("\n".join(body))
    return message


def recipients_for(target: str, rules: RulesFile, default_to: Sequence[str]) -> list[str]:
    """`email:<route>`: the route's recipients, else the configured default recipients."""
    route_name = target.split(":", 1)[1]
    route = rules.routes.get(route_name)
    if route is not None and route.email is not None and route.email.to:
        return list(route.email.to)
    return list(default_to)


__all__ = [
    "DEFAULT_ROUTE",
    "LOG",
    "WEBHOOK",
    "batches",
    "email_message",
    "group_by_target",
    "notification_id",
    "recipients_for",
    "slack_payload",
    "targets_for",
    "webhook_payload",
]
