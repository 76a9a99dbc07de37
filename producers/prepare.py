"""Turn what a caller recorded (or a log line said) into a validated RawCallEvent wire dict, safely.

Runs on the publisher's background thread (never on the caller's) and in `callstream ingest`, so
both apply the same rules: every string that leaves the process is scrubbed of secrets
(producers.redaction), prompt and response bodies are dropped unless enabled, metadata is
flattened to scalars and capped in size with a visible marker, and the privacy option decides
whether `user_id` and `metadata.client_ip` are kept, pseudonymised or dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from callstream.errors import ConfigurationError
from callstream.producers.contract import MAX_METADATA_KEYS, MetadataValue, RawCallEvent
from callstream.producers.redaction import (
    REDACTED,
    TRUNCATED,
    is_sensitive_key,
    redact,
    scrub,
    scrub_bounded,
    sensitive_pair,
    truncate,
)
from callstream.producers.settings import PrivacyMode, ProducerSettings, UserIdMode

TRUNCATED_SUFFIX = TRUNCATED
METADATA_TRUNCATED_KEY = "callstream.truncated"
MAX_KEY_CHARS = 128
MAX_METADATA_DEPTH = 8
"""Nested metadata is flattened to `a.b.c` keys down to this depth; anything deeper is a marker."""
TOO_DEEP_VALUE = f"[nested deeper than {MAX_METADATA_DEPTH} levels]"
MAX_FIELD_CHARS = 1_024
"""String fields are cut to this before validation (the contract then rejects names over 256
characters with a reason): a megabyte model name costs one bounded scrub, not a megabyte regex scan."""
MAX_SECRETS = 64
"""Registered secrets kept (most recently registered last); older ones are forgotten first."""
PSEUDONYM_HEX_CHARS = 32
DROPPED_KEY = "callstream.dropped"
"""In a dead letter's original: the names of the fields its contract does not know, dropped."""
MAX_DROPPED_NAMES = 32
MAX_DROPPED_NAME_CHARS = 64
Fields = Mapping[str, bool]
"""A contract's field names, each with whether it may hold a JSON object or array."""

# Caller items may carry these besides RawCallEvent fields.
_BODY_KEYS = ("request_body", "response_body")
# RawCallEvent string fields other than event_time and error_message (which has its own cap).
_TEXT_FIELDS = (
    "event_id",
    "operation_name",
    "provider_name",
    "request_model",
    "response_model",
    "error_type",
    "server_address",
    "service_name",
    "environment",
    "user_id",
    "session_id",
)
CLIENT_IP_KEY = "client_ip"
IP_KEYS = frozenset(
    {
        "ip", "ipaddr", "ipaddress", "clientip", "clientipaddress", "clientaddr", "clientaddress",
        "remoteip", "remoteaddr", "remoteaddress", "sourceip", "srcip", "userip", "peerip", "originip",
        "xforwardedfor", "forwardedfor", "forwarded", "xrealip", "realip", "cfconnectingip",
        "trueclientip", "xclientip", "xoriginalforwardedfor",
    }
)  # fmt: skip
"""Metadata keys (their last part, lower case, without separators) that hold an IP address: all
follow the client_ip privacy option."""
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
USER_ID_MARKER_KEY = "callstream.user_id"
USER_ID_DROPPED = "an e-mail address, dropped: set CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY to keep a pseudonym"


def is_ip_key(key: str) -> bool:
    """Whether a (flattened) metadata key names an IP address: `client_ip`, `ip_address`,
    `clientIp`, `x-forwarded-for`, `X-Real-IP`, `req.ip`, ..."""
    return _NOT_ALNUM.sub("", key.rsplit(".", 1)[-1].lower()) in IP_KEYS


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
    secrets: tuple[str, ...] = ()
    user_id_mode: UserIdMode = "hash_email"
    client_ip_mode: PrivacyMode = "keep"
    hash_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        hashed = [name for name in ("user_id", "client_ip") if getattr(self, f"{name}_mode") == "hash"]
        if hashed and not self.hash_key:
            raise ConfigurationError(
                f"{' and '.join(hashed)} mode 'hash' needs a key: set CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY "
                "(a long random secret, the same in every process whose events are aggregated together)"
            )

    @classmethod
    def from_settings(cls, settings: ProducerSettings, secrets: Iterable[str] = ()) -> Policy:
        key = settings.privacy_hash_key
        return cls(
            record_bodies=settings.record_bodies,
            body_max_chars=settings.body_max_chars,
            metadata_max_bytes=settings.metadata_max_bytes,
            metadata_value_max_chars=settings.metadata_value_max_chars,
            error_message_max_chars=settings.error_message_max_chars,
            service_name=settings.service_name,
            environment=settings.environment,
            user_id_mode=settings.user_id_mode,
            client_ip_mode=settings.client_ip_mode,
            hash_key=key.get_secret_value().encode() if key is not None else None,
        ).with_secrets(secrets)

    def with_secrets(self, secrets: Iterable[str]) -> Policy:
        """This policy with `secrets` registered as the most recent ones (at most MAX_SECRETS kept).
        Returns the same object when nothing changes, so registering a key on every call is cheap."""
        kept = list(self.secrets)
        changed = False
        for secret in secrets:
            if not secret or len(secret) < 6:
                continue
            if kept and kept[-1] == secret:
                continue
            if secret in kept:
                kept.remove(secret)
            kept.append(secret)
            changed = True
        if not changed:
            return self
        return replace(self, secrets=tuple(kept[-MAX_SECRETS:]))


def pseudonym(value: str, key: bytes) -> str:
    """A keyed HMAC-SHA256 of `value` (hex, 128 bits): the same for the same value and key, so
    per-user aggregates still work, and not reversible without the key."""
    return hmac.new(key, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


def _private(value: Any, mode: PrivacyMode, key: bytes | None) -> Any:
    """`value` as the privacy mode wants it: itself, its pseudonym, or None (dropped)."""
    if value is None or mode == "keep":
        return value
    if mode == "drop":
        return None
    assert key is not None  # Policy refuses 'hash' without a key
    return pseudonym(str(value), key)


def _private_user_id(value: Any, policy: Policy) -> Any:
    """The user id as the privacy option wants it; under `hash_email`, one holding an e-mail
    address is pseudonymised (or dropped, without a key) and any other kept."""
    mode = policy.user_id_mode
    if mode == "hash_email":
        if value is None or not EMAIL.search(str(value)):
            return value
        return pseudonym(str(value), policy.hash_key) if policy.hash_key else None
    return _private(value, mode, policy.hash_key)


def _pair_hidden(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """`{"name": "x-api-key", "value": ...}` with its value redacted (flattened, `value` alone would
    not say it is a credential); any other object as it is."""
    return {**value, "value": REDACTED} if sensitive_pair(value) else value


def _flatten(value: Mapping[Any, Any]) -> Iterator[tuple[str, Any]]:
    """(`a.b.c`, scalar) pairs in order, without recursion; deeper than MAX_METADATA_DEPTH, a marker."""
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [("", iter(_pair_hidden(value).items()))]
    while stack:
        prefix, items = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            continue
        name = f"{prefix}{entry[0]}"
        item = entry[1]
        if isinstance(item, Mapping) and item:
            if len(stack) >= MAX_METADATA_DEPTH:
                yield name, TOO_DEEP_VALUE
            else:
                stack.append((name + ".", iter(_pair_hidden(item).items())))
        else:
            yield name, item


def _scalar(value: Any) -> MetadataValue:
    """A metadata value the contract accepts: big integers and non-finite floats become text,
    containers become (bounded) JSON text, anything unencodable a marker."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        return orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return f"[unencodable {type(value).__name__}]"


def sanitize_metadata(
    metadata: Mapping[Any, Any] | None, policy: Policy, reserve_keys: int = 0
) -> dict[str, MetadataValue]:
    """Flat scalar metadata, secrets redacted, client_ip per the privacy option, values and total
    size capped.

    When keys must be dropped, the key `callstream.truncated` says how many and why, so a truncated
    record is never mistaken for a complete one.
    """
    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    out: dict[str, MetadataValue] = {}
    budget = policy.metadata_max_bytes - 96  # room for the marker
    used = 2
    pairs = _flatten(metadata)
    seen = 0
    for raw_key, raw_value in pairs:
        seen += 1
        key = scrub_bounded(str(raw_key), MAX_KEY_CHARS, policy.secrets)
        value: MetadataValue
        if is_sensitive_key(key):
            value = REDACTED
        else:
            value = _scalar(raw_value)
            if isinstance(value, str):
                value = scrub_bounded(value, policy.metadata_value_max_chars, policy.secrets)
            if is_ip_key(key):
                if policy.client_ip_mode == "drop":
                    continue
                value = _private(value, policy.client_ip_mode, policy.hash_key)
        size = len(key.encode()) + len(orjson.dumps(value)) + 4
        if used + size > budget or len(out) >= MAX_METADATA_KEYS - 1 - reserve_keys:
            total = seen + sum(1 for _ in pairs)
            dropped = total - seen + 1
            out[METADATA_TRUNCATED_KEY] = (
                f"{dropped} of {total} keys dropped: metadata is capped at "
                f"{policy.metadata_max_bytes} bytes and {MAX_METADATA_KEYS} keys"
            )
            break
        out[key] = value
        used += size
    return out


def _body_text(body: Any, policy: Policy) -> str:
    text = body if isinstance(body, str) else str(_scalar(body))
    return scrub_bounded(text, policy.body_max_chars, policy.secrets)


def _event_time(start: Any) -> datetime:
    try:
        return datetime.fromtimestamp(float(start), UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"start_time {str(start)[:40]} is not a time in range") from exc


def build_event(item: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    """A caller's item -> RawCallEvent wire dict. Raises (ValidationError, ValueError, ...) if invalid.

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
        fields["event_time"] = _event_time(start)
    bodies = {key: fields.pop(key) for key in _BODY_KEYS if key in fields}
    metadata = fields.get("metadata")
    if policy.record_bodies and bodies:
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValueError(f"metadata must be a JSON object, got {type(metadata).__name__}")
        metadata = dict(metadata or {})
        # A body the caller set in metadata is a body too: the same scrub and bound as a recorded one.
        for key, body in {**{k: metadata[k] for k in _BODY_KEYS if k in metadata}, **bodies}.items():
            if body is not None:
                metadata[key] = _body_text(body, policy)
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
        fields["error_message"] = scrub_bounded(str(message), policy.error_message_max_chars, policy.secrets)
    for key in _TEXT_FIELDS:
        value = fields.get(key)
        if isinstance(value, str):
            fields[key] = scrub_bounded(value, MAX_FIELD_CHARS, policy.secrets)
    if "user_id" in fields:
        user = _private_user_id(fields["user_id"], policy)
        if user is None and fields["user_id"] is not None and policy.user_id_mode == "hash_email":
            metadata = fields.get("metadata") or {}
            # (a full metadata already says it was cut; one that is no object is refused anyway)
            if isinstance(metadata, Mapping) and len(metadata) < MAX_METADATA_KEYS:
                fields["metadata"] = {**metadata, USER_ID_MARKER_KEY: USER_ID_DROPPED}
        fields["user_id"] = user
    if policy.service_name and not fields.get("service_name"):
        fields["service_name"] = policy.service_name
    if policy.environment and not fields.get("environment"):
        fields["environment"] = policy.environment
    return RawCallEvent.model_validate(fields).to_wire()


def contract_fields(*names: Iterable[str], objects: Iterable[str] = ("metadata",)) -> Fields:
    """The fields a dead letter may keep of an input: `names` (scalar fields) and `objects` (fields
    that may hold a JSON object or array)."""
    out: dict[str, bool] = {name: False for group in names for name in group}
    return out | dict.fromkeys(objects, True)


RAW_EVENT_FIELDS: Fields = contract_fields(RawCallEvent.model_fields, ("start_time",))
"""What a dead letter keeps of a raw call event (and of a caller's item: `start_time` stands in for
`event_time` there); anything else (bodies, messages, responses, unknown keys) is dropped."""


def _dropped_names(names: list[str], secrets: Iterable[str]) -> list[str]:
    shown = [scrub_bounded(name, MAX_DROPPED_NAME_CHARS, secrets) for name in names[:MAX_DROPPED_NAMES]]
    if len(names) > MAX_DROPPED_NAMES:
        shown.append(f"…and {len(names) - MAX_DROPPED_NAMES} more")
    return shown


def known_fields_only(original: Mapping[Any, Any], fields: Fields, policy: Policy) -> dict[str, Any]:
    """`original` as a dead letter may keep it: the fields its contract knows (`fields`), text cut
    to MAX_FIELD_CHARS and scrubbed, metadata flattened, scrubbed and bounded (sanitize_metadata),
    and every other field dropped and named under `callstream.dropped`: a prompt or a response
    logged beside an event never travels on in its dead letter."""
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in original.items():
        name = str(key)
        may_nest = fields.get(name)
        nested = isinstance(value, Mapping | list | tuple)
        if may_nest is None or (nested and not may_nest) or name == DROPPED_KEY:
            dropped.append(name)
            continue
        if name == "metadata" and isinstance(value, Mapping):
            try:
                value = sanitize_metadata(value, policy)
            except Exception:
                dropped.append(name)
                continue
        elif name == "metadata" and value is not None:
            dropped.append(name)  # not an object: unreadable as metadata, perhaps anything
            continue
        elif isinstance(value, str):
            value = scrub_bounded(value, MAX_FIELD_CHARS, policy.secrets)
        out[scrub_bounded(name, MAX_KEY_CHARS, policy.secrets)] = value
    if dropped:
        out[DROPPED_KEY] = _dropped_names(dropped, policy.secrets)
    return out


def safe_original(item: Mapping[Any, Any], policy: Policy, fields: Fields = RAW_EVENT_FIELDS) -> Any:
    """An input that failed validation, as it may leave the process in a dead letter: only the
    fields of its contract (`known_fields_only`: internal keys such as `_deferred`, bodies and
    anything else dropped and named), `user_id` and the metadata's IP addresses per the privacy
    option, then redacted by key and pattern (producers.redaction.redact)."""
    out: dict[Any, Any] = {}
    for key, value in item.items():
        if isinstance(key, str) and key.startswith("_"):  # the producer's own (`_deferred`), not data
            continue
        if key == "user_id":
            if policy.user_id_mode == "drop":
                continue
            value = _private_user_id(value, policy)
        out[key] = value
    return redact(known_fields_only(out, fields, policy), policy.secrets)


__all__ = [
    "METADATA_TRUNCATED_KEY",
    "RAW_EVENT_FIELDS",
    "REDACTED",
    "Policy",
    "PrivacyMode",
    "build_event",
    "contract_fields",
    "known_fields_only",
    "pseudonym",
    "safe_original",
    "sanitize_metadata",
    "scrub",
    "truncate",
]
