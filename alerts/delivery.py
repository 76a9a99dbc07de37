"""Sending one notification message to one target, and what its outcome means.

`Sender.send(target, events)` returns a `Sent` outcome: delivered, retry later (network errors,
timeouts, 408, 429, 5xx; SMTP 4xx), or give up (other 4xx, SMTP 5xx: retrying will not help,
the notification is dead-lettered). Reasons never contain a URL, a token or a password: error
texts pass through the one redaction policy with every configured secret.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from callstream import logs
from callstream.alerts.config import AlertConfig
from callstream.alerts.notify import (
    LOG,
    WEBHOOK,
    email_message,
    headline,
    notification_id,
    recipients_for,
    slack_payload,
    webhook_payload,
)
from callstream.errors import MissingExtraError
from callstream.producers.redaction import scrub

try:
    import httpx
except ImportError as exc:
    raise MissingExtraError("alert", "httpx") from exc

log = logs.get(__name__)

Verdict = Literal["delivered", "retry", "give_up"]


@dataclass(frozen=True, slots=True)
class Sent:
    verdict: Verdict
    reason: str = ""
    notification_id: str = ""


def classify_http(status: int) -> Verdict:
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "give_up"


def classify_smtp(code: int | None) -> Verdict:
    """SMTP reply codes: 4xx are transient, 5xx permanent; no code (a dropped connection) is transient."""
    if code is not None and 500 <= code < 600:
        return "give_up"
    return "retry"


def backoff_ms(attempts: int, min_ms: int, max_ms: int) -> int:
    """Wait before attempt `attempts + 1`: min, 2 min, 4 min, ... capped at max."""
    return min(max_ms, min_ms * 2 ** max(0, attempts - 1))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sender:
    """Delivers to the receivers configured in the settings; owns one HTTP client."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.secrets = self.settings.secrets()
        self.client = httpx.AsyncClient(timeout=self.settings.delivery_timeout_s)

    async def close(self) -> None:
        await self.client.aclose()

    def _scrub(self, text: str) -> str:
        return scrub(text, self.secrets)[:1000]

    async def send(self, target: str, events: Sequence[dict[str, Any]]) -> Sent:
        ids = [e["event_id"] for e in events]
        nid = notification_id(target, ids)
        try:
            if target == WEBHOOK:
                return await self._webhook(events, nid)
            if target.startswith("slack:"):
                return await self._slack(target[len("slack:") :], events, nid)
            if target.startswith("email:"):
                return await self._email(target, events, nid)
            if target == LOG:
                for event in events:
                    log.warning(
                        "alert", notification_id=nid, event_id=event["event_id"], text=headline(event)
                    )
                return Sent("delivered", notification_id=nid)
        except httpx.HTTPError as exc:  # connection refused, timeout, ...
            return Sent("retry", self._scrub(f"{type(exc).__name__}: {exc}"), nid)
        except (OSError, smtplib.SMTPException) as exc:
            code = getattr(exc, "smtp_code", None)
            return Sent(classify_smtp(code), self._scrub(f"{type(exc).__name__}: {exc}"), nid)
        return Sent("give_up", f"unknown target {target!r}", nid)

    async def _webhook(self, events: Sequence[dict[str, Any]], nid: str) -> Sent:
        url = self.settings.webhook_url
        if url is None:
            return Sent("give_up", "no webhook configured (CALLSTREAM_ALERT_WEBHOOK_URL)", nid)
        headers = {"Idempotency-Key": nid, "User-Agent": "callstream-alerts"}
        if self.settings.webhook_authorization is not None:
            headers["Authorization"] = self.settings.webhook_authorization.get_secret_value()
        body = webhook_payload(WEBHOOK, events, now_iso())
        response = await self.client.post(url.get_secret_value(), json=body, headers=headers)
        return self._http_outcome(response, nid)

    async def _slack(self, channel: str, events: Sequence[dict[str, Any]], nid: str) -> Sent:
        url = self.settings.slack_url(channel)
        if url is None:
            return Sent("give_up", f"no Slack incoming webhook for channel {channel or '(default)'}", nid)
        use_channel = channel if channel and channel not in self.settings.slack_webhook_urls else ""
        response = await self.client.post(url.get_secret_value(), json=slack_payload(use_channel, events))
        return self._http_outcome(response, nid)

    def _http_outcome(self, response: httpx.Response, nid: str) -> Sent:
        verdict = classify_http(response.status_code)
        if verdict == "delivered":
            return Sent(verdict, notification_id=nid)
        return Sent(verdict, self._scrub(f"HTTP {response.status_code}: {response.text[:300]}"), nid)

    async def _email(self, target: str, events: Sequence[dict[str, Any]], nid: str) -> Sent:
        settings = self.settings
        recipients = recipients_for(target, self.config.rules, settings.recipients)
        if not settings.smtp_host or not settings.email_from or not recipients:
            return Sent(
                "give_up",
                "e-mail is not configured (CALLSTREAM_ALERT_SMTP_HOST, _EMAIL_FROM, _EMAIL_TO)",
                nid,
            )
        message = email_message(events, settings.email_from, recipients, nid)
        await asyncio.to_thread(self._smtp_send, message)
        return Sent("delivered", notification_id=nid)

    def _smtp_send(self, message: Any) -> None:
        settings = self.settings
        assert settings.smtp_host is not None
        timeout = settings.delivery_timeout_s
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if settings.smtp_secure:
            smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if not settings.smtp_secure and settings.smtp_starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_username, password)
            smtp.send_message(message)
