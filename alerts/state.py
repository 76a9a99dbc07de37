"""An alert's state, its transitions, and its outbox of deliveries. Pure.

One `AlertState` per alert group, stored as one record in a changelogged table: the status, the
episode counter, what was notified when, and the *outbox*: the events not yet delivered to every
target (the `alerts.events` topic is the target "record"; receivers are "webhook",
"slack:<channel>", "email:<route>", "log"). A transition and the deliveries it owes are written in
the same record, so a worker that restarts, or takes the partition over, finds exactly what is
still owed, and event ids come from the episode counter, not from the clock: the same transition
decided twice gets the same id.

    ok ──condition──► firing ──condition still, realert interval passed──► realert (firing)
                        │    ──a higher budget warning level reached─────► escalated (firing)
                        └──condition clear (for resolve_after_minutes)───► resolved (ok)

Silences: a transition under a silence is recorded but not sent; a firing that was never sent
is sent once the silence is over (same event id), and a resolution is sent only when its firing was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from callstream.alerts.evaluate import Group, Observation
from callstream.alerts.series import MINUTE_MS

RECORD = "record"  # the alerts.events topic (and through the sink, Elasticsearch)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Delivery:
    """One event owed to one target."""

    event_id: str
    target: str
    attempts: int = 0
    due_ms: int = 0
    last_error: str | None = None

    def to_wire(self) -> list[Any]:
        return [self.event_id, self.target, self.attempts, self.due_ms, self.last_error]

    @classmethod
    def from_wire(cls, doc: list[Any]) -> Delivery:
        return cls(*doc)


@dataclass
class AlertState:
    alert_id: str
    status: Literal["ok", "firing"] = "ok"
    episode: int = 0
    fired_at_ms: int | None = None
    level: float | None = None
    last_sent_ms: int | None = None  # last notification to receivers (re-alerts count from here)
    realerts: int = 0
    notified: bool = False  # the current episode's firing reached the receivers
    clear_since_ms: int | None = None
    value: float | None = None
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # owed somewhere still
    outbox: list[Delivery] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.alert_id,
                "st": self.status,
                "ep": self.episode,
                "f": self.fired_at_ms,
                "lv": self.level,
                "ls": self.last_sent_ms,
                "ra": self.realerts,
                "n": self.notified,
                "cs": self.clear_since_ms,
                "v": self.value,
                "ev": self.events,
                "ob": [d.to_wire() for d in self.outbox],
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> AlertState:
        doc = orjson.loads(raw)
        return cls(
            doc["id"],
            doc["st"],
            doc["ep"],
            doc["f"],
            doc["lv"],
            doc["ls"],
            doc["ra"],
            doc["n"],
            doc["cs"],
            doc["v"],
            doc["ev"],
            [Delivery.from_wire(d) for d in doc["ob"]],
        )

    @property
    def idle(self) -> bool:
        """Nothing to remember: never fired, or resolved with everything delivered (the record can
        still not be dropped, since it holds the episode counter)."""
        return self.status == "ok" and not self.outbox

    def due(self, now_ms: int) -> list[Delivery]:
        return [d for d in self.outbox if d.due_ms <= now_ms]

    def delivered(self, event_id: str, target: str) -> None:
        """The target has the event: drop the delivery, and the event once nothing is owed."""
        self.outbox = [d for d in self.outbox if not (d.event_id == event_id and d.target == target)]
        if not any(d.event_id == event_id for d in self.outbox):
            self.events.pop(event_id, None)


def step(
    state: AlertState,
    group: Group,
    observation: Observation | None,
    now_ms: int,
    silenced: bool,
    targets: list[str],
) -> list[dict[str, Any]]:
    """Apply one observation to the alert's state; returns the events it creates (also queued in
    the state's outbox: the record always, the receivers `targets` when notified)."""
    if observation is None:  # nothing can be said now: keep the state
        return []
    rule = group.rule
    if state.status == "ok":
        if not observation.firing:
            return []
        state.status = "firing"
        state.episode += 1
        state.fired_at_ms = now_ms
        state.level = observation.level
        state.realerts = 0
        state.clear_since_ms = None
        state.value = observation.value
        state.notified = not silenced
        if state.notified:
            state.last_sent_ms = now_ms
        return [_event(state, group, observation, "firing", now_ms, silenced, targets)]

    # firing
    state.value = observation.value if observation.value is not None else state.value
    if observation.firing:
        state.clear_since_ms = None
        if observation.level is not None and (state.level is None or observation.level > state.level):
            state.level = observation.level
            if not silenced:
                state.notified = True
                state.last_sent_ms = now_ms
            return [_event(state, group, observation, "escalated", now_ms, silenced, targets)]
        if not state.notified and not silenced:  # a silence ended while the alert kept firing
            state.notified = True
            state.last_sent_ms = now_ms
            return [_event(state, group, observation, "firing", now_ms, False, targets)]
        realert_ms = rule.realert_minutes * MINUTE_MS
        if (
            realert_ms > 0
            and state.notified
            and not silenced
            and state.last_sent_ms is not None
            and now_ms - state.last_sent_ms >= realert_ms
        ):
            state.realerts += 1
            state.last_sent_ms = now_ms
            return [_event(state, group, observation, "realert", now_ms, False, targets)]
        return []

    resolve_after_ms = rule.resolve_after_minutes * MINUTE_MS
    if resolve_after_ms > 0:
        if state.clear_since_ms is None:
            state.clear_since_ms = now_ms
        if now_ms - state.clear_since_ms < resolve_after_ms:
            return []
    state.status = "ok"
    state.clear_since_ms = None
    event = _event(state, group, observation, "resolved", now_ms, not state.notified, targets)
    state.level = None
    state.notified = False
    return [event]


def event_id(
    alert_id: str, episode: int, fired_at_ms: int, kind: str, realerts: int, level: float | None
) -> str:
    """`<alert>#<episode>.<fired at, epoch ms>:<kind>[:<n>|:<level>]`. The firing time makes ids unique
    even if the alert state were ever lost and episodes counted from 1 again; it is stored with
    the state before any notification is sent, so a re-sent notification repeats it exactly."""
    suffix = f":{realerts}" if kind == "realert" else (f":{level:g}" if kind == "escalated" else "")
    return f"{alert_id}#{episode}.{fired_at_ms}:{kind}{suffix}"


def _event(
    state: AlertState,
    group: Group,
    observation: Observation,
    kind: str,
    now_ms: int,
    silent: bool,
    targets: list[str],
) -> dict[str, Any]:
    rule = group.rule
    assert state.fired_at_ms is not None
    identifier = event_id(state.alert_id, state.episode, state.fired_at_ms, kind, state.realerts, state.level)
    resolved = kind == "resolved"
    subject = f"{group.series}" + (f", budget {group.budget.name}" if group.budget is not None else "")
    if resolved:
        lasted_s = (now_ms - state.fired_at_ms) / 1000
        message = f"{rule.name} resolved for {subject} after {_duration(lasted_s)}" + (
            f"; now {observation.message}" if observation.message else ""
        )
    else:
        message = f"{rule.name} {kind} for {subject}: {observation.message}"
    notify = not silent
    channels = list(targets) if notify else []
    event = {
        "schema_version": 1,
        "event_id": identifier,
        "alert_id": state.alert_id,
        "kind": kind,
        "state": "resolved" if resolved else "firing",
        "rule": rule.name,
        "rule_type": rule.type,
        "severity": rule.severity,
        "description": rule.description,
        "dimension": group.series.dimension,
        "key": group.series.key,
        "budget": group.budget.name if group.budget is not None else None,
        "episode": state.episode,
        "level": state.level,
        "value": observation.value,
        "threshold": observation.threshold,
        "message": message,
        "fired_at": iso(state.fired_at_ms),
        "resolved_at": iso(now_ms) if resolved else None,
        "at": iso(now_ms),
        "silenced": silent and not resolved,
        "notified": notify,
        "channels": channels,
        "details": observation.details,
    }
    state.events[identifier] = event
    state.outbox = [d for d in state.outbox if d.event_id != identifier]  # a re-sent firing replaces
    state.outbox.append(Delivery(identifier, RECORD, due_ms=now_ms))
    state.outbox.extend(Delivery(identifier, target, due_ms=now_ms) for target in channels)
    return event


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
