"""What the alert worker publishes: one `AlertEvent` per firing, re-alert, escalation or resolution.

The same record goes to the `alerts.events` topic (the sink writes it to `callstream-alerts-*`
with `_id = event_id`), into every webhook notification (a list of them, see `WebhookPayload`),
and into the text of Slack and e-mail messages. The worker builds plain dicts on its path; tests
check that they validate against these models.

`event_id` is `<alert_id>#<episode>.<fired_at epoch ms>:<kind>` (plus `:<n>` for the n-th re-alert
and `:<level>` for an escalation). It is stored with the alert's state before anything is sent, so
a notification sent again after a crash carries the id the receiver already saw, and a receiver
can drop it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventKind = Literal["firing", "realert", "escalated", "resolved"]
WEBHOOK_SCHEMA = "callstream.alerts.v1"


class AlertEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    event_id: str = Field(description="Idempotency key of this event: receivers drop repeats")
    alert_id: str = Field(description="<rule>|<dimension>|<key>[|<budget>]: one alert, many episodes")
    kind: EventKind
    state: Literal["firing", "resolved"] = Field(description="The alert's state after this event")
    rule: str
    rule_type: str
    severity: Literal["info", "warning", "critical"]
    description: str = ""
    dimension: str = Field(description="model, provider, ..., all, deadletters or consumer")
    key: str
    budget: str | None = None
    episode: int = Field(ge=1, description="Counts the alert's firings: 1 for the first, ...")
    level: float | None = Field(default=None, description="Budget warning percentage reached")
    value: float | None = Field(default=None, description="The measured value that decided")
    threshold: float | None = None
    message: str = Field(description="One line for people")
    fired_at: datetime
    resolved_at: datetime | None = None
    at: datetime = Field(description="When the worker decided this event")
    silenced: bool = False
    notified: bool = Field(description="Whether receivers are told (not when silenced)")
    channels: list[str] = Field(default_factory=list, description="webhook, slack:<channel>, email:<route>")
    details: dict[str, Any] = Field(default_factory=dict)


class WebhookPayload(BaseModel):
    """The JSON body POSTed to the generic webhook. Header `Idempotency-Key` = `id`."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal["callstream.alerts.v1"] = Field(alias="schema")
    id: str = Field(description="Delivery id: a hash of the target and the event ids it carries")
    sent_at: datetime
    firing: int = Field(ge=0, description="How many events in this delivery fire (firing/realert/escalated)")
    resolved: int = Field(ge=0)
    events: list[AlertEvent] = Field(min_length=1)
