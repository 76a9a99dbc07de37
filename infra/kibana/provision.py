"""Put callstream's dashboard, connectors and alert rules into a Kibana: idempotent, any cluster.

    python -m callstream.infra.kibana.provision          (the compose stack's `kibana-setup` one-shot)

Steps: wait until Kibana is available; import `callstream.ndjson` (data views, Lens panels,
dashboard; overwrite=true); create or update the connectors that the environment configures
(Kibana's server log always; Slack and e-mail when their variables are set); create or update
every rule in `infra/alerts/*.json`. Each rule file is a body for Kibana's create-rule API whose
actions go to the server-log connector; the same message is added for every other connector.

Settings: `CALLSTREAM_KIBANA_*` (where Kibana is, how to log in) and `CALLSTREAM_ALERT_*` (where
alerts go). Empty variables count as unset, so a compose file can pass them through blindly.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream import logs
from callstream.errors import CallstreamError
from callstream.producers.redaction import scrub_bounded
from callstream.settings import ElasticsearchSettings

log = logs.get(__name__)

SERVER_LOG_CONNECTOR = "callstream-server-log"
SLACK_CONNECTOR = "callstream-slack"
EMAIL_CONNECTOR = "callstream-email"
DEFAULT_INDEX_PREFIX = "callstream"


class KibanaSettings(BaseSettings):
    """Where Kibana is and how to log in. Environment prefix `CALLSTREAM_KIBANA_`."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_KIBANA_", extra="ignore", env_ignore_empty=True)

    url: str = "http://127.0.0.1:5601"
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    space_id: str | None = Field(default=None, description="None: the default space")
    verify_certs: bool = True
    ca_certs: str | None = None
    request_timeout_s: float = 60.0
    ready_timeout_s: float = 600.0

    def client(self) -> httpx.Client:
        base = self.url.rstrip("/") + (f"/s/{self.space_id}" if self.space_id else "")
        headers = {"kbn-xsrf": "callstream"}
        auth: httpx.Auth | None = None
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.api_key.get_secret_value()}"
        elif self.username:
            auth = httpx.BasicAuth(self.username, self.password.get_secret_value() if self.password else "")
        verify: bool | str = self.ca_certs if self.ca_certs else self.verify_certs
        return httpx.Client(
            base_url=base, headers=headers, auth=auth, verify=verify, timeout=self.request_timeout_s
        )


class AlertSettings(BaseSettings):
    """Where alerts go besides Kibana's server log. Environment prefix `CALLSTREAM_ALERT_`.

    Slack and e-mail connectors need a Gold license or above (or a trial); on a basic license
    only the server log is used, with a warning.
    """

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_ALERT_", extra="ignore", env_ignore_empty=True)

    slack_webhook_url: SecretStr | None = None
    email_to: str | None = Field(default=None, description="Comma-separated recipients")
    email_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_secure: bool = Field(default=False, description="TLS from the first byte (port 465); else STARTTLS")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None

    @model_validator(mode="after")
    def _email_complete(self) -> AlertSettings:
        parts = {"EMAIL_TO": self.email_to, "EMAIL_FROM": self.email_from, "SMTP_HOST": self.smtp_host}
        missing = [f"CALLSTREAM_ALERT_{name}" for name, value in parts.items() if not value]
        if len(missing) < len(parts) and missing:
            raise ValueError(f"e-mail alerts are half configured: set {', '.join(missing)} too")
        return self

    @property
    def recipients(self) -> list[str]:
        return [r.strip() for r in (self.email_to or "").split(",") if r.strip()]


# -- what to create: pure functions of the settings and the packaged files --------------------------


@dataclass(frozen=True)
class Connector:
    id: str
    type_id: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)

    def create_body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "connector_type_id": self.type_id,
            "config": self.config,
            "secrets": self.secrets,
        }

    def update_body(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config, "secrets": self.secrets}

    def secret_values(self) -> tuple[str, ...]:
        """The connector's secrets as text to scrub from what Kibana says back (a URL whole, and
        its path and query: Kibana repeats them in its errors, and a webhook's path is its token)."""
        return secret_texts(self.secrets.values())


def secret_texts(values: Any) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value:
            continue
        found.append(value)
        parts = urlsplit(value)
        if parts.scheme in ("http", "https"):
            found += [p for p in (parts.path, parts.query, parts.password) if p and len(p) > 3]
    return tuple(found)


def said(response: httpx.Response, max_chars: int, secrets: tuple[str, ...] = ()) -> str:
    """What Kibana answered, as it may be logged: scrubbed (redaction.scrub) and bounded."""
    return scrub_bounded(response.text, max_chars, secrets)


def connectors(alerts: AlertSettings) -> list[Connector]:
    """The server log (works on every license), then Slack and e-mail when configured."""
    found = [Connector(SERVER_LOG_CONNECTOR, ".server-log", "callstream: Kibana server log")]
    if alerts.slack_webhook_url and alerts.slack_webhook_url.get_secret_value():
        found.append(
            Connector(
                SLACK_CONNECTOR,
                ".slack",
                "callstream: Slack",
                secrets={"webhookUrl": alerts.slack_webhook_url.get_secret_value()},
            )
        )
    if alerts.recipients:
        has_auth = bool(alerts.smtp_username)
        secrets: dict[str, Any] = {}
        if has_auth:
            secrets = {
                "user": alerts.smtp_username,
                "password": alerts.smtp_password.get_secret_value() if alerts.smtp_password else "",
            }
        found.append(
            Connector(
                EMAIL_CONNECTOR,
                ".email",
                "callstream: e-mail",
                config={
                    "service": "other",
                    "from": alerts.email_from,
                    "host": alerts.smtp_host,
                    "port": alerts.smtp_port,
                    "secure": alerts.smtp_secure,
                    "hasAuth": has_auth,
                },
                secrets=secrets,
            )
        )
    return found


def rule_files() -> dict[str, dict[str, Any]]:
    """Rule id (the file name) -> create-rule body, from the packaged infra/alerts/*.json."""
    rules = {}
    for entry in sorted(importlib.resources.files("callstream.infra.alerts").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            rules[entry.name.removesuffix(".json")] = orjson.loads(entry.read_bytes())
    return rules


def saved_objects_ndjson(index_prefix: str = DEFAULT_INDEX_PREFIX) -> bytes:
    """The committed objects for the default prefix; for another, the same objects with data views
    that read that prefix's indices."""
    if index_prefix == DEFAULT_INDEX_PREFIX:
        return importlib.resources.files("callstream.infra.kibana").joinpath("callstream.ndjson").read_bytes()
    from callstream.infra.kibana.saved_objects import ndjson

    return ndjson(index_prefix)


_FROM_PREFIX = re.compile(rf"\bFROM\s+{DEFAULT_INDEX_PREFIX}-", re.IGNORECASE)


def with_index_prefix(rule: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The rule reading `<prefix>-*` indices instead of the default `callstream-*`."""
    if prefix == DEFAULT_INDEX_PREFIX:
        return rule
    rule = orjson.loads(orjson.dumps(rule))
    params = rule["params"]
    if "index" in params:
        params["index"] = [_reprefix(index, prefix) for index in params["index"]]
    if "esqlQuery" in params:
        params["esqlQuery"]["esql"] = _FROM_PREFIX.sub(f"FROM {prefix}-", params["esqlQuery"]["esql"])
    return rule


def _reprefix(index: str, prefix: str) -> str:
    head = f"{DEFAULT_INDEX_PREFIX}-"
    return prefix + "-" + index.removeprefix(head) if index.startswith(head) else index


def with_actions(rule: dict[str, Any], available: list[Connector], alerts: AlertSettings) -> dict[str, Any]:
    """Every server-log action of the rule, repeated for each other available connector."""
    rule = orjson.loads(orjson.dumps(rule))
    actions = []
    for action in rule.get("actions", []):
        actions.append(action)
        if action["id"] != SERVER_LOG_CONNECTOR:
            continue
        message = action["params"]["message"]
        for connector in available:
            if connector.type_id == ".slack":
                actions.append(action | {"id": connector.id, "params": {"message": message}})
            elif connector.type_id == ".email":
                params = {"to": alerts.recipients, "subject": "{{rule.name}}", "message": message}
                actions.append(action | {"id": connector.id, "params": params})
    rule["actions"] = actions
    return rule


UPDATABLE_RULE_FIELDS = ("name", "tags", "schedule", "params", "actions", "throttle", "notify_when")


def rule_update_body(rule: dict[str, Any]) -> dict[str, Any]:
    """The update API refuses the fields that cannot change (rule type, consumer, enabled)."""
    return {key: rule[key] for key in UPDATABLE_RULE_FIELDS if key in rule}


# -- the shell: HTTP calls ---------------------------------------------------------------------------


class ProvisionError(CallstreamError):
    pass


def wait_until_available(client: httpx.Client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            response = client.get("/api/status")
            if response.status_code == 200:
                level = response.json().get("status", {}).get("overall", {}).get("level")
                if level == "available":
                    return
                last = f"overall status {level}"
            else:
                last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise ProvisionError(f"Kibana at {client.base_url} not available after {timeout_s:.0f}s: {last}")
        log.info("waiting for Kibana", url=str(client.base_url), last=last)
        time.sleep(5)


def import_saved_objects(client: httpx.Client, ndjson: bytes) -> int:
    response = client.post(
        "/api/saved_objects/_import",
        params={"overwrite": "true"},
        files={"file": ("callstream.ndjson", ndjson, "application/ndjson")},
    )
    _check(response, "import saved objects")
    result = response.json()
    if not result.get("success"):
        errors = scrub_bounded(orjson.dumps(result.get("errors")).decode(), 1000)
        raise ProvisionError(f"saved objects import failed: {errors}")
    return int(result.get("successCount", 0))


def upsert_connector(client: httpx.Client, connector: Connector) -> bool:
    """Create or update; False when the license does not allow this connector type."""
    path = f"/api/actions/connector/{connector.id}"
    exists = client.get(path).status_code == 200
    response = (
        client.put(path, json=connector.update_body())
        if exists
        else client.post(path, json=connector.create_body())
    )
    if response.status_code == 403 and "license" in response.text.lower():
        log.warning(
            "connector not allowed by the license: skipped",
            connector=connector.id,
            detail=said(response, 300, connector.secret_values()),
        )
        return False
    _check(
        response, f"{'update' if exists else 'create'} connector {connector.id}", connector.secret_values()
    )
    return True


def upsert_rule(client: httpx.Client, rule_id: str, rule: dict[str, Any]) -> str:
    path = f"/api/alerting/rule/{rule_id}"
    if client.get(path).status_code == 200:
        _check(client.put(path, json=rule_update_body(rule)), f"update rule {rule_id}")
        return "updated"
    _check(client.post(path, json=rule), f"create rule {rule_id}")
    return "created"


def _check(response: httpx.Response, what: str, secrets: tuple[str, ...] = ()) -> None:
    if response.status_code >= 300:
        raise ProvisionError(f"{what}: HTTP {response.status_code}: {said(response, 1000, secrets)}")


def provision(
    client: httpx.Client, alerts: AlertSettings, index_prefix: str, ready_timeout_s: float
) -> dict[str, Any]:
    wait_until_available(client, ready_timeout_s)
    imported = import_saved_objects(client, saved_objects_ndjson(index_prefix))
    available = [c for c in connectors(alerts) if upsert_connector(client, c)]
    rules = {}
    for rule_id, rule in rule_files().items():
        body = with_actions(with_index_prefix(rule, index_prefix), available, alerts)
        rules[rule_id] = upsert_rule(client, rule_id, body)
    return {"saved_objects": imported, "connectors": [c.id for c in available], "rules": rules}


def main(argv: list[str] | None = None) -> None:
    # No options: everything comes from the environment. `--help` says so and which variables.
    argparse.ArgumentParser(
        prog="python -m callstream.infra.kibana.provision",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Settings: CALLSTREAM_KIBANA_* (where Kibana is, how to log in), CALLSTREAM_ALERT_* "
        "(where alerts go), CALLSTREAM_ES_INDEX_PREFIX.",
    ).parse_args(argv)
    logs.configure()
    secrets: tuple[str, ...] = ()
    try:
        kibana = KibanaSettings()
        alerts = AlertSettings()
        secrets = tuple(s for c in connectors(alerts) for s in c.secret_values())
        with kibana.client() as client:
            summary = provision(client, alerts, ElasticsearchSettings().index_prefix, kibana.ready_timeout_s)
    except (ProvisionError, httpx.HTTPError, ValueError) as exc:
        log.error("Kibana provisioning failed", error=scrub_bounded(str(exc), 2000, secrets))
        sys.exit(1)
    log.info("Kibana provisioned", **summary)


if __name__ == "__main__":
    main()
