"""The raw call event: what a producer publishes, one per LLM API call, whatever its outcome.

Field names follow the OpenTelemetry GenAI semantic conventions (gen_ai.*), flattened to
snake_case. A Kafka message carries one event (a JSON object) or a batch (a JSON array, like
CloudEvents' batch mode): packing many events into one message is what makes the stream fast.

Token accounting (so that cost is neither double-counted nor missed):
- `input_tokens` counts every input token, cached ones included; `cache_read_input_tokens` and
  `cache_creation_input_tokens` are the parts of it read from or written to the prompt cache.
- `output_tokens` counts every output token; `reasoning_output_tokens` is the part of it spent on
  reasoning.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from callstream.durations import DAY_MS
from callstream.literal import CONTROL_CHARACTERS, REPLACEMENT, without_controls

SCHEMA_VERSION: Literal[1] = 1
MAX_ERROR_MESSAGE_CHARS = 2048
MAX_METADATA_KEYS = 64
MAX_TOKENS = 10**9  # per call; far above any real context window, far below int64 overflow in sums

# Control characters (C0, DEL, C1) would corrupt document ids, index names, logs and terminal
# tables: refused in names and ids, replaced (by U+FFFD) in error messages and metadata.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=NO_CONTROL_CHARACTERS),
]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL_CHARACTERS)]
# Far outside any real call, yet inside what every downstream store and date library handles: the
# stream applies the real bounds (maximum age, clock skew) relative to when an event was published.
EARLIEST_EVENT_TIME = datetime(1970, 1, 2, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2999, 12, 31, tzinfo=UTC)
LATEST_EVENT_TIME_MS = int(LATEST_EVENT_TIME.timestamp() * 1000)
MAX_DURATION_MS = DAY_MS
MAX_REPORTED_COST_USD = 1e9
# Integers within the signed 64-bit range, so an accepted event can always be encoded again.
MetadataInt = Annotated[int, Field(ge=-(2**63), lt=2**63)]
MetadataValue = str | bool | MetadataInt | float | None


class RawCallEvent(BaseModel):
    """One finished LLM API call: success, HTTP error, timeout or exception alike."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=8192, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: EventId = Field(
        description="Unique per call; the idempotency key everywhere downstream. A raw message's "
        "event without one gets an id derived from where it was read (see decode_events)."
    )
    event_time: AwareDatetime = Field(description="When the call started, UTC.")
    operation_name: Name = "chat"  # gen_ai.operation.name
    provider_name: Name | None = None  # gen_ai.provider.name, when the caller knows it
    request_model: Name  # gen_ai.request.model
    response_model: Name | None = None  # gen_ai.response.model
    input_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    output_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    cache_read_input_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    cache_creation_input_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    reasoning_output_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    usage: Literal["reported", "missing"] = Field(
        default="reported",
        description="'missing' when the response carried no token usage (a stream closed early, a "
        "gateway that drops it): the call counts, but is never priced, its tokens being unknown, not 0",
    )
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS)
    time_to_first_token_ms: float | None = Field(default=None, ge=0, le=MAX_DURATION_MS)
    streamed: bool = False
    status_code: int | None = Field(
        default=None, ge=100, le=599, description="HTTP status; none if no response"
    )
    error_type: Name | None = Field(
        default=None, description="error.type: 'timeout', 'connection_error', an exception class, ..."
    )
    error_message: str | None = Field(default=None, max_length=MAX_ERROR_MESSAGE_CHARS)
    server_address: Name | None = None
    service_name: Name | None = None
    environment: Name | None = None
    user_id: Name | None = None
    session_id: Name | None = None
    reported_cost_usd: float | None = Field(
        default=None, ge=0, le=MAX_REPORTED_COST_USD, description="Cost the source reported, if any"
    )
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=MAX_METADATA_KEYS)

    @field_validator("error_message")
    @classmethod
    def _message_without_controls(cls, value: str | None) -> str | None:
        return None if value is None else without_controls(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_without_controls(cls, value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        # one scan of all the text (most metadata has no control character): keys, then string values
        text = "".join(value) + "".join([item for item in value.values() if isinstance(item, str)])
        if CONTROL_CHARACTERS.search(text) is None:
            return value
        return {
            CONTROL_CHARACTERS.sub(REPLACEMENT, key): without_controls(item)
            if isinstance(item, str)
            else item
            for key, item in value.items()
        }

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before the first representable instant
            raise ValueError(f"{value.isoformat()} is outside the representable range") from None
        if not EARLIEST_EVENT_TIME <= utc <= LATEST_EVENT_TIME:
            raise ValueError(
                f"{_iso(utc)} is not a plausible call time (expected between "
                f"{EARLIEST_EVENT_TIME.date()} and {LATEST_EVENT_TIME.date()})"
            )
        return utc

    @model_validator(mode="after")
    def _token_parts_within_totals(self) -> RawCallEvent:
        cached = self.cache_read_input_tokens + self.cache_creation_input_tokens
        if cached > self.input_tokens:
            raise ValueError(
                f"cache_read_input_tokens + cache_creation_input_tokens ({cached}) exceed "
                f"input_tokens ({self.input_tokens}); input_tokens must include cached tokens"
            )
        if self.reasoning_output_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_output_tokens ({self.reasoning_output_tokens}) exceed output_tokens "
                f"({self.output_tokens}); output_tokens must include reasoning tokens"
            )
        return self

    def to_wire(self) -> dict[str, Any]:
        """Compact JSON-ready dict: defaults and empty values are left out."""
        return self.model_dump(mode="json", exclude_defaults=True) | {
            "event_id": self.event_id,
            "event_time": _iso(self.event_time),
        }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_BATCH = TypeAdapter(list[RawCallEvent])


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """An input that is not a valid event, with a reason a person can act on."""

    reason: str
    original: Any
    index: int | None = None  # position in the batch, when the message was a batch


def encode_events(events: Sequence[RawCallEvent]) -> bytes:
    """One Kafka message value for a batch of events (a JSON array)."""
    return orjson.dumps([e.to_wire() for e in events])


def encode_event_dicts(events: Iterable[dict[str, Any]]) -> bytes:
    """Encode already-serialised events; used by producers that queue wire dicts."""
    return orjson.dumps(list(events))


def describe_validation_error(error: ValidationError) -> str:
    """'field: message; field: message' without pydantic's URLs and input echoes."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"]) or "event"
        if (
            item["type"] == "string_pattern_mismatch"
            and item.get("ctx", {}).get("pattern") == NO_CONTROL_CHARACTERS
        ):
            parts.append(f"{loc}: control characters (C0, DEL, C1: escape sequences) are not allowed")
        else:
            parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def derived_event_id(origin: str, index: int | None) -> str:
    """The id of an event that arrived without one: a function of where it was read (e.g.
    'topic:partition:offset' and its position in the batch), so reading it again gives the same id."""
    digest = hashlib.blake2b(f"{origin}#{index}".encode(), digest_size=16).hexdigest()
    return f"derived-{digest}"


def _json_error(exc: orjson.JSONDecodeError) -> str:
    text = str(exc).lower()
    if "depth limit" in text or "recursion" in text:  # orjson 3.13 says 'depth limit exceeded'
        return "not JSON that can be read: nested more than 1024 levels deep"
    return f"not JSON (unreadable at character {exc.pos})"


def decode_events(
    value: bytes | None, origin: str | None = None
) -> tuple[list[RawCallEvent], list[RejectedEvent]]:
    """Decode a message value (one event or an array of events).

    A valid batch is validated in one pass; when any item fails, items are validated one by one
    so that one bad event never takes its neighbours down with it. An item without `event_id` gets
    `derived_event_id(origin, index)` when `origin` names where the message was read, and is
    rejected otherwise. Never raises, whatever the value.
    """
    positioned, rejected = decode_positioned_events(value, origin)
    return [event for _, event in positioned], rejected


def decode_positioned_events(
    value: bytes | None, origin: str | None = None
) -> tuple[list[tuple[int | None, RawCallEvent]], list[RejectedEvent]]:
    """`decode_events`, each valid event with its position in the batch (None when the message is
    one object): what is said later about an event (a dead letter) points at the right item."""
    if not value:
        return [], [RejectedEvent("empty message value", None)]
    if value[:1] == b"[":
        try:
            return [(index, event) for index, event in enumerate(_BATCH.validate_json(value))], []
        except ValidationError:
            pass  # fall through: find which items are bad
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return [], [RejectedEvent(_json_error(exc), value)]
    if isinstance(doc, dict):
        return _decode_items([doc], [None], origin)
    if not isinstance(doc, list):
        return [], [RejectedEvent(f"expected a JSON object or array, got {type(doc).__name__}", doc)]
    return _decode_items(doc, list(range(len(doc))), origin)


def _decode_items(
    items: list[Any], positions: list[int | None], origin: str | None
) -> tuple[list[tuple[int | None, RawCallEvent]], list[RejectedEvent]]:
    valid: list[tuple[int | None, RawCallEvent]] = []
    rejected: list[RejectedEvent] = []
    for item, index in zip(items, positions, strict=True):
        if not isinstance(item, dict):
            # A JSON string stays JSON (quoted) in the dead letter, unlike a raw value's text.
            original = orjson.dumps(item) if isinstance(item, str) else item
            rejected.append(
                RejectedEvent(f"expected an event object, got {type(item).__name__}", original, index)
            )
            continue
        if origin is not None and not item.get("event_id"):
            item = item | {"event_id": derived_event_id(origin, index)}
        try:
            valid.append((index, RawCallEvent.model_validate(item)))
        except ValidationError as exc:
            rejected.append(RejectedEvent(f"invalid event: {describe_validation_error(exc)}", item, index))
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # beyond pydantic's own checks
            rejected.append(RejectedEvent(f"invalid event: {type(exc).__name__}: {exc}", item, index))
    return valid, rejected


def partition_for_key(key: str, partitions: int) -> int:
    """The one placement function of callstream's topics: crc32 of the key, modulo the partition
    count. Event ids place raw events, window keys place partial aggregates."""
    return zlib.crc32(key.encode()) % partitions


def partition_for_event_id(event_id: str, partitions: int) -> int:
    """The raw-topic partition of an event: every copy of an event lands on the same partition,
    which is what lets the stream drop duplicates per partition. Producers should follow it;
    the stream re-routes events that arrive elsewhere."""
    return partition_for_key(event_id, partitions)
