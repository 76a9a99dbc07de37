"""Alert worker settings. Environment prefix `CALLSTREAM_ALERT_`.

Receiver addresses and credentials are secrets (`SecretStr`): they are read here and never
logged, printed or written to a dead letter. The receiver variables are the ones the Kibana
provisioner reads too (`CALLSTREAM_ALERT_SLACK_WEBHOOK_URL`, `_EMAIL_TO`, `_SMTP_*`), so one
environment configures both kinds of alerting.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream.alerts.rules import DEFAULT_RULES_FILE


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine (localhost, 127.0.0.0/8, ::1): traffic that never leaves it."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AlertSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_ALERT_", extra="ignore", env_ignore_empty=True)

    rules_file: Path = DEFAULT_RULES_FILE
    app_id: str = "callstream-alert"  # faust app id: consumer group and table topics
    partitions: int = Field(default=6, ge=1)  # of the alerts.series topic and the alert tables
    # Static membership: a restarted worker with the same id takes its partitions back at once.
    # noida-db never evicts a SIGKILLed dynamic member, so there it is how a killed worker recovers.
    group_instance_id: str | None = None
    # Where a new consumer group starts on the aggregates topic: `latest` starts now (the current
    # UTC day's and hour's windows still arrive whole with their next update), `earliest` rebuilds
    # budgets from the topic's whole retention (slow on a long history).
    auto_offset_reset: Literal["earliest", "latest"] = "latest"

    evaluate_interval_s: float = Field(
        default=5.0, gt=0, description="Time-driven evaluation of every series"
    )
    batch_max_updates: int = Field(default=1000, ge=1)
    batch_within_ms: int = Field(default=100, ge=1, description="Longest wait to fill a batch of updates")
    watch_interval_s: float = Field(default=15.0, gt=0, description="Consumer lag and dead-letter sampling")
    stream_group_id: str | None = Field(default=None, description="None: CALLSTREAM_STREAM_APP_ID's default")
    sink_group_id: str | None = Field(default=None, description="None: CALLSTREAM_SINK_GROUP_ID's default")

    # Receivers.
    webhook_url: SecretStr | None = None  # the generic webhook; also the `default` route when set
    webhook_authorization: SecretStr | None = None  # sent as the Authorization header
    slack_webhook_url: SecretStr | None = None
    slack_webhook_urls: dict[str, SecretStr] = Field(
        default_factory=dict, description='Per channel: {"#llm-oncall": "https://hooks.slack.com/..."}'
    )
    email_to: str | None = Field(default=None, description="Comma-separated default recipients")
    email_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_secure: bool = Field(default=False, description="TLS from the first byte (port 465)")
    smtp_starttls: bool = Field(default=True, description="Without smtp_secure: require STARTTLS")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Credentials in clear over the network are refused at start unless allowed here, by name.
    allow_http_webhook_credentials: bool = Field(
        default=False,
        description="Accept an http:// webhook that carries credentials (an Authorization header, a "
        "user:password, a Slack webhook's secret path) to a host other than loopback",
    )
    allow_smtp_login_without_tls: bool = Field(
        default=False,
        description="Accept an SMTP login (smtp_username) without smtp_secure or smtp_starttls to a "
        "host other than loopback",
    )

    # Delivery.
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    retry_backoff_min_ms: int = Field(default=1000, ge=1)
    retry_backoff_max_ms: int = Field(default=60_000, ge=1)
    delivery_max_attempts: int = Field(default=8, ge=1, description="Then the notification is dead-lettered")
    group_max_events: int = Field(default=50, ge=1, description="Events per notification message")

    # Health and metrics (callstream.metrics).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0: any free port")

    web_port: int = 6067  # faust's web server is disabled; bound to loopback so it never takes 0.0.0.0
    web_bind: str = "127.0.0.1"
    data_dir: Path = Path(".callstream/alert")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _consistent(self) -> AlertSettings:
        if self.retry_backoff_max_ms < self.retry_backoff_min_ms:
            raise ValueError("retry_backoff_max_ms must be >= retry_backoff_min_ms")
        parts = {"EMAIL_FROM": self.email_from, "SMTP_HOST": self.smtp_host}
        if self.email_to and any(not v for v in parts.values()):
            missing = [f"CALLSTREAM_ALERT_{k}" for k, v in parts.items() if not v]
            raise ValueError(f"e-mail alerts are half configured: set {', '.join(missing)} too")
        for problem in self.transport_problems():
            raise ValueError(problem)
        return self

    def transport_problems(self) -> list[str]:
        """Why the receivers would send credentials in clear (empty when they would not)."""
        problems: list[str] = []
        if not self.allow_http_webhook_credentials:
            carried = [
                ("CALLSTREAM_ALERT_WEBHOOK_URL", self.webhook_url, self.webhook_authorization is not None)
            ]
            carried.append(("CALLSTREAM_ALERT_SLACK_WEBHOOK_URL", self.slack_webhook_url, True))
            carried += [
                (f"CALLSTREAM_ALERT_SLACK_WEBHOOK_URLS[{channel}]", url, True)
                for channel, url in self.slack_webhook_urls.items()
            ]
            for name, url, with_credentials in carried:
                parts = urlsplit(url.get_secret_value()) if url is not None else None
                if parts is None or parts.scheme.lower() != "http" or is_loopback(parts.hostname):
                    continue
                if with_credentials or parts.username or parts.password:
                    problems.append(
                        f"{name} is http:// to {parts.hostname} and carries credentials, which would "
                        "travel in clear: use https://, or set "
                        "CALLSTREAM_ALERT_ALLOW_HTTP_WEBHOOK_CREDENTIALS=true to accept it"
                    )
        login = self.smtp_username and not (self.smtp_secure or self.smtp_starttls)
        if login and not self.allow_smtp_login_without_tls and not is_loopback(self.smtp_host):
            problems.append(
                f"the SMTP login to {self.smtp_host} would be sent in clear (CALLSTREAM_ALERT_SMTP_STARTTLS "
                "is false and CALLSTREAM_ALERT_SMTP_SECURE is not set): enable one of them, or set "
                "CALLSTREAM_ALERT_ALLOW_SMTP_LOGIN_WITHOUT_TLS=true to accept it"
            )
        return problems

    @property
    def recipients(self) -> list[str]:
        return [r.strip() for r in (self.email_to or "").split(",") if r.strip()]

    @property
    def email_configured(self) -> bool:
        return bool(self.smtp_host and self.email_from)

    def slack_url(self, channel: str) -> SecretStr | None:
        """The incoming webhook for a channel: its own, else the default one."""
        return self.slack_webhook_urls.get(channel) or self.slack_webhook_url

    def secrets(self) -> frozenset[str]:
        """Every secret value, for scrubbing error texts before they are logged or dead-lettered.
        A URL counts whole and by its path and query too (a receiver may echo the path it refuses:
        an incoming-webhook path is the token)."""
        values = [self.webhook_url, self.webhook_authorization, self.slack_webhook_url, self.smtp_password]
        values += list(self.slack_webhook_urls.values())
        found: set[str] = set()
        for value in values:
            text = value.get_secret_value() if value is not None else ""
            if not text:
                continue
            found.add(text)
            parts = urlsplit(text)
            if parts.scheme in ("http", "https"):
                found.update(
                    p for p in (parts.path, parts.query, parts.username, parts.password) if p and len(p) > 3
                )
        return frozenset(found)
