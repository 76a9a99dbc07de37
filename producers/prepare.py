"""Turn what a caller recorded into a validated RawCallEvent wire dict, safely.

Runs on the publisher's background thread (never on the caller's), so validation and encoding cost
the caller nothing. This is where the safety rules live: secrets are scrubbed from every string
that leaves the process, prompt and response bodies are dropped unless enabled, and metadata is
flattened to scalars and capped in size with a visible marker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from callstream.producers.contract import MAX_METADATA_KEYS, MetadataValue, RawCallEvent
from callstream.producers.redaction import REDACTED, is_sensitive_key, scrub
from callstream.producers.settings import ProducerSettings

TRUNCATED_SUFFIX = "…[truncated]"
METADATA_TRUNCATED_KEY = "callstream.truncated"
MAX_KEY_CHARS = 128

# Caller items may carry these besides RawCallEvent fields.
_BODY_KEYS = ("request_body", "response_body")


@dataclass(frozen=True)
class Policy:
    """The safety rules, read once from ProducerSettings."""

    record_bodies: bool = False
    body_max_chars: int = 2_000
    metadata_max_bytes: int = 4_096
    metadata_value_max_chars: int = 512
    error_message_max_chars: int = 500
    service_name: str | None = None
    environment: str | None = None
    secrets: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: ProducerSettings, secrets: Iterable[str] = ()) -> Policy:
        return cls(
            record_bodies=settings.record_bodies,
            body_max_chars=settings.body_max_chars,
            metadata_max_bytes=settings.metadata_max_bytes,
            metadata_value_max_chars=settings.metadata_value_max_chars,
            error_message_max_chars=settings.error_message_max_chars,
            service_name=settings.service_name,
            environment=settings.environment,
            secrets=frozenset(s for s in secrets if s and len(s) >= 6),
        )

    def with_secrets(self, secrets: Iterable[str]) -> Policy:
        new = frozenset(s for s in secrets if s and len(s) >= 6)
        if new <= self.secrets:
            return self
        return Policy(**{**self.__dict__, "secrets": self.secrets | new})


def truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(TRUNCATED_SUFFIX))] + TRUNCATED_SUFFIX


def _flatten(value: Mapping[Any, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            yield from _flatten(item, name + ".")
        else:
            yield name, item


def _scalar(value: Any) -> MetadataValue:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    try:
        return orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)


def sanitize_metadata(
    metadata: Mapping[Any, Any] | None, policy: Policy, reserve_keys: int = 0
) -> dict[str, MetadataValue]:
    """Flat scalar metadata, secrets redacted, values and total size capped.

    When keys must be dropped, the key `callstream.truncated` says how many and why, so a truncated
    record is never mistaken for a complete one.
    """
    if not metadata:
        return {}
    items = list(_flatten(metadata))
    out: dict[str, MetadataValue] = {}
    budget = policy.metadata_max_bytes - 96  # room for the marker
    used = 2
    for index, (raw_key, raw_value) in enumerate(items):
        key = truncate(str(raw_key), MAX_KEY_CHARS)
        value: MetadataValue
        if is_sensitive_key(key):
            value = REDACTED
        else:
            value = _scalar(raw_value)
            if isinstance(value, str):
                value = truncate(scrub(value, policy.secrets), policy.metadata_value_max_chars)
        size = len(key.encode()) + len(orjson.dumps(value)) + 4
        if used + size > budget or len(out) >= MAX_METADATA_KEYS - 1 - reserve_keys:
            dropped = len(items) - index
            out[METADATA_TRUNCATED_KEY] = (
                f"{dropped} of {len(items)} keys dropped: metadata is capped at "
                f"{policy.metadata_max_bytes} bytes and {MAX_METADATA_KEYS} keys"
            )
            break
        out[key] = value
        used += size
    return out


def build_event(item: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    """A caller's item -> RawCallEvent wire dict. Raises pydantic.ValidationError or ValueError if invalid.

    `start_time` (epoch seconds) may stand in for `event_time`; `request_body` / `response_body`
    are kept (truncated, in metadata) only when the policy enables bodies.
    """
    fields = dict(item)
    if not fields.get("event_id"):  # assigned once, here in the caller's process; never re-derived
        fields["event_id"] = uuid.uuid4().hex
    start = fields.pop("start_time", None)
    if "event_time" not in fields:
        if start is None:
            raise ValueError("event has neither event_time nor start_time")
        fields["event_time"] = datetime.fromtimestamp(float(start), UTC)
    bodies = {key: fields.pop(key) for key in _BODY_KEYS if key in fields}
    metadata = fields.get("metadata")
    if policy.record_bodies and bodies:
        metadata = dict(metadata or {})
        for key, body in bodies.items():
            if body is not None:
                text = body if isinstance(body, str) else orjson.dumps(body, default=str).decode()
                metadata[key] = truncate(scrub(text, policy.secrets), policy.body_max_chars)
        others = {k: v for k, v in metadata.items() if k not in _BODY_KEYS}
        clean = sanitize_metadata(others, policy, reserve_keys=len(_BODY_KEYS))
        # Bodies bypass the per-value cap (they have their own) but not the redaction of secrets.
        for key in _BODY_KEYS:
            if key in metadata:
                clean[key] = metadata[key]
        fields["metadata"] = clean
    elif metadata:
        fields["metadata"] = sanitize_metadata(metadata, policy)
    message = fields.get("error_message")
    if message is not None:
        fields["error_message"] = truncate(
            scrub(str(message), policy.secrets), policy.error_message_max_chars
        )
    if policy.service_name and not fields.get("service_name"):
        fields["service_name"] = policy.service_name
    if policy.environment and not fields.get("environment"):
        fields["environment"] = policy.environment
    return RawCallEvent.model_validate(fields).to_wire()
