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

import uuid
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

SCHEMA_VERSION: Literal[1] = 1
MAX_ERROR_MESSAGE_CHARS = 2048
MAX_METADATA_KEYS = 64
MAX_TOKENS = 10**9  # per call; far above any real context window, far below int64 overflow in sums

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
# Integers within the signed 64-bit range, so an accepted event can always be encoded again.
MetadataInt = Annotated[int, Field(ge=-(2**63), lt=2**63)]
MetadataValue = str | bool | MetadataInt | float | None


class RawCallEvent(BaseModel):
    """One finished LLM API call: success, HTTP error, timeout or exception alike."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=8192, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        default_factory=lambda: uuid.uuid4().hex,
        description="Unique per call; the idempotency key everywhere downstream.",
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
    duration_ms: float = Field(ge=0, le=86_400_000)
    time_to_first_token_ms: float | None = Field(default=None, ge=0)
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
        default=None, ge=0, description="Cost the source reported, if any"
    )
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=MAX_METADATA_KEYS)

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

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
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def decode_events(value: bytes | None) -> tuple[list[RawCallEvent], list[RejectedEvent]]:
    """Decode a message value (one event or an array of events).

    A valid batch is validated in one pass; when any item fails, items are validated one by one
    so that one bad event never takes its neighbours down with it.
    """
    if not value:
        return [], [RejectedEvent("empty message value", None)]
    if value[:1] == b"[":
        try:
            return _BATCH.validate_json(value), []
        except ValidationError:
            pass  # fall through: find which items are bad
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return [], [RejectedEvent(f"not valid JSON: {exc}", value.decode("utf-8", "replace")[:65536])]
    if isinstance(doc, dict):
        try:
            return [RawCallEvent.model_validate(doc)], []
        except ValidationError as exc:
            return [], [RejectedEvent(f"invalid event: {describe_validation_error(exc)}", doc)]
    if not isinstance(doc, list):
        return [], [RejectedEvent(f"expected a JSON object or array, got {type(doc).__name__}", doc)]
    valid: list[RawCallEvent] = []
    rejected: list[RejectedEvent] = []
    for index, item in enumerate(doc):
        if not isinstance(item, dict):
            rejected.append(
                RejectedEvent(f"expected an event object, got {type(item).__name__}", item, index)
            )
            continue
        try:
            valid.append(RawCallEvent.model_validate(item))
        except ValidationError as exc:
            rejected.append(RejectedEvent(f"invalid event: {describe_validation_error(exc)}", item, index))
    return valid, rejected


def partition_for_event_id(event_id: str, partitions: int) -> int:
    """The raw-topic partition of an event: every copy of an event lands on the same partition,
    which is what lets the stream drop duplicates per partition. Producers should follow it;
    the stream re-routes events that arrive elsewhere."""
    return zlib.crc32(event_id.encode()) % partitions
