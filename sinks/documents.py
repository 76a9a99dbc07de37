"""From Kafka message values to Elasticsearch documents: index, `_id`, version and source. Pure.

Every `_id` and index name is a function of the message alone, never of the clock or of the
order of arrival, so a re-delivered message overwrites its own documents instead of adding copies:

- enriched event: `{prefix}-calls-YYYY.MM.DD` by event time (UTC), `_id` = event_id;
- window aggregate: `{prefix}-aggregates-{window_size}-YYYY.MM` by window start, `_id` = doc_id,
  external version = the aggregate's `version` (the newest update wins, whatever the order);
- stream dead letter: `{prefix}-deadletter-YYYY.MM.DD` by detection time, `_id` from the source
  coordinates it names (or, without them, from its own Kafka coordinates);
- sink dead letter (a document Elasticsearch refused, or an input that is not a document):
  `{prefix}-sink-deadletter-YYYY.MM.DD` by Kafka message timestamp, `_id` from its Kafka coordinates;
- alert event (callstream.alerts.contract.AlertEvent): `{prefix}-alerts-YYYY.MM` by the event's
  `at`, `_id` = event_id (a re-sent event overwrites itself).

The sink checks only what it needs to place a document (id, time, version); the index mappings
(`dynamic: strict`) check the rest, and what they refuse is dead-lettered item by item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import Field

from callstream.producers.contract import LATEST_EVENT_TIME_MS
from callstream.producers.deadletter import MAX_ORIGINAL_CHARS, MAX_REASON_CHARS, DeadLetter, dead_letter
from callstream.producers.prepare import contract_fields
from callstream.sinks.index_templates import ALERTS_PROPERTIES
from callstream.streams.contract import WINDOW_SIZES_MS, EnrichedCallEvent, WindowAggregate

MAX_ID_BYTES = 512  # Elasticsearch refuses longer _id values
# Per-document bytes on the bulk wire besides the source: the action line and newlines.
ACTION_OVERHEAD_BYTES = 48

INVALID_INPUT = "invalid_input"


SINK_INPUT_FIELDS = contract_fields(
    objects=(
        *EnrichedCallEvent.model_fields,
        *WindowAggregate.model_fields,
        *DeadLetter.model_fields,
        *ALERTS_PROPERTIES,
    )
)
"""What a sink dead letter keeps of its input: the fields of the contracts the sink reads."""


class SinkDeadLetter(DeadLetter):
    """A document Elasticsearch refused (or an input the sink could not place): the one dead-letter
    shape (stage "sink"), plus what the sink knows about the document."""

    error_type: str = Field(description="Elasticsearch's error type, or invalid_input")
    status: int | None = Field(default=None, description="HTTP status of the refusal, if any")
    target_index: str | None = None
    doc_id: str | None = None
    message_timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from; shared by every document decoded from it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    @property
    def partition_key(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Doc:
    """One document to write. `version` set means external versioning (newest version wins)."""

    index: str
    id: str
    source: bytes
    origin: Origin
    item: int | None = None  # position in the message's array, when the message was an array
    version: int | None = None

    @property
    def nbytes(self) -> int:
        return len(self.source) + len(self.index) + len(self.id) + ACTION_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Failure:
    """An input that will not be indexed where it belongs: dead-lettered with the reason, and counted."""

    reason: str
    error_type: str  # Elasticsearch's error type, or INVALID_INPUT when the sink could not place it
    original: Any
    origin: Origin
    item: int | None = None
    status: int | None = None
    target_index: str | None = None
    doc_id: str | None = None

    @property
    def nbytes(self) -> int:
        """What its dead letter will weigh: the reason and the original, both bounded."""
        original = self.original
        size = len(original) if isinstance(original, str | bytes) else MAX_ORIGINAL_CHARS
        return min(len(self.reason), MAX_REASON_CHARS) + min(size, MAX_ORIGINAL_CHARS) + ACTION_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Decoded:
    docs: list[Doc]
    failures: list[Failure]


def calls_index(prefix: str, day: datetime) -> str:
    return f"{prefix}-calls-{day.year:04d}.{day.month:02d}.{day.day:02d}"


def aggregates_index(prefix: str, window_size: str, window_start: datetime) -> str:
    return f"{prefix}-aggregates-{window_size}-{window_start.year:04d}.{window_start.month:02d}"


def deadletter_index(prefix: str, day: datetime) -> str:
    return f"{prefix}-deadletter-{day.year:04d}.{day.month:02d}.{day.day:02d}"


def sink_deadletter_index(prefix: str, day: datetime) -> str:
    return f"{prefix}-sink-deadletter-{day.year:04d}.{day.month:02d}.{day.day:02d}"


def alerts_index(prefix: str, at: datetime) -> str:
    return f"{prefix}-alerts-{at.year:04d}.{at.month:02d}"


def parse_utc(value: Any) -> datetime:
    """An ISO-8601 timestamp with a time zone, as UTC. Raises ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    offset = parsed.utcoffset()
    return parsed if offset is not None and not offset else parsed.astimezone(UTC)


def utc_field(doc: dict[str, Any], name: str) -> datetime:
    """`parse_utc` of one field of a document; the error names the field."""
    try:
        return parse_utc(doc.get(name))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string")
    if len(value.encode()) > MAX_ID_BYTES:
        raise ValueError(f"{field} is longer than {MAX_ID_BYTES} bytes")
    return value


def _load(value: bytes | None, origin: Origin) -> tuple[Any, Failure | None]:
    if not value:
        return None, Failure("empty message value", INVALID_INPUT, None, origin)
    try:
        return orjson.loads(value), None
    except orjson.JSONDecodeError as exc:
        return None, Failure(f"not JSON (unreadable at character {exc.pos})", INVALID_INPUT, value, origin)


class Documents:
    """Builds the documents of one index prefix. Stateless apart from it."""

    def __init__(self, index_prefix: str) -> None:
        self.prefix = index_prefix

    # -- enriched events: one message holds a JSON array of events (or a single object)

    def enriched(self, value: bytes | None, origin: Origin) -> Decoded:
        loaded, failure = _load(value, origin)
        if failure:
            return Decoded([], [failure])
        if isinstance(loaded, dict):
            items: list[Any] = [loaded]
            positions: list[int | None] = [None]
        elif isinstance(loaded, list):
            items = loaded
            positions = list(range(len(loaded)))
        else:
            reason = f"expected a JSON array of events, got {type(loaded).__name__}"
            return Decoded([], [Failure(reason, INVALID_INPUT, loaded, origin)])
        docs: list[Doc] = []
        failures: list[Failure] = []
        for item, position in zip(items, positions, strict=True):
            try:
                docs.append(self.enriched_event(item, origin, position))
            except (ValueError, TypeError, OverflowError) as exc:  # orjson's encode error is a TypeError
                failures.append(
                    Failure(f"invalid enriched event: {exc}", INVALID_INPUT, item, origin, position)
                )
        return Decoded(docs, failures)

    def enriched_event(self, event: Any, origin: Origin, item: int | None = None) -> Doc:
        if not isinstance(event, dict):
            raise ValueError(f"expected an event object, got {type(event).__name__}")
        event_id = _check_id(event.get("event_id"), "event_id")
        event_time = utc_field(event, "event_time")
        return Doc(calls_index(self.prefix, event_time), event_id, orjson.dumps(event), origin, item)

    # -- window aggregates: one WindowAggregate object per message, newest version wins

    def aggregate(self, value: bytes | None, origin: Origin) -> Decoded:
        loaded, failure = _load(value, origin)
        if failure:
            return Decoded([], [failure])
        try:
            return Decoded([self.aggregate_doc(loaded, origin)], [])
        except (ValueError, TypeError, OverflowError) as exc:
            return Decoded([], [Failure(f"invalid aggregate: {exc}", INVALID_INPUT, loaded, origin)])

    def aggregate_doc(self, aggregate: Any, origin: Origin) -> Doc:
        if not isinstance(aggregate, dict):
            raise ValueError(f"expected an object, got {type(aggregate).__name__}")
        doc_id = _check_id(aggregate.get("doc_id"), "doc_id")
        version = aggregate.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"version must be an integer >= 1, got {version!r}")
        window_size = aggregate.get("window_size")
        if window_size not in WINDOW_SIZES_MS:
            raise ValueError(f"window_size must be one of {sorted(WINDOW_SIZES_MS)}, got {window_size!r}")
        window_start = utc_field(aggregate, "window_start")
        index = aggregates_index(self.prefix, window_size, window_start)
        return Doc(index, doc_id, orjson.dumps(aggregate), origin, version=version)

    # -- the stream's dead letters: one DeadLetter object per message, searchable in Kibana

    def deadletter(self, value: bytes | None, origin: Origin) -> Decoded:
        loaded, failure = _load(value, origin)
        if failure:
            return Decoded([], [failure])
        try:
            return Decoded([self.deadletter_doc(loaded, origin)], [])
        except (ValueError, TypeError, OverflowError) as exc:
            return Decoded([], [Failure(f"invalid dead letter: {exc}", INVALID_INPUT, loaded, origin)])

    def deadletter_doc(self, letter: Any, origin: Origin) -> Doc:
        if not isinstance(letter, dict):
            raise ValueError(f"expected an object, got {type(letter).__name__}")
        detected_at = utc_field(letter, "detected_at")
        source_topic, source_offset = letter.get("source_topic"), letter.get("source_offset")
        if source_topic is not None and source_offset is not None:
            parts = [letter.get("stage"), source_topic, letter.get("source_partition"), source_offset]
            doc_id = ":".join("" if p is None else str(p) for p in [*parts, letter.get("batch_index")])
        else:
            doc_id = f"{origin.topic}:{origin.partition}:{origin.offset}"
        return Doc(
            deadletter_index(self.prefix, detected_at), _check_id(doc_id, "_id"), orjson.dumps(letter), origin
        )

    # -- alert events: one AlertEvent object per message

    def alert_event(self, value: bytes | None, origin: Origin) -> Decoded:
        loaded, failure = _load(value, origin)
        if failure:
            return Decoded([], [failure])
        try:
            if not isinstance(loaded, dict):
                raise ValueError(f"expected an object, got {type(loaded).__name__}")
            event_id = _check_id(loaded.get("event_id"), "event_id")
            at = utc_field(loaded, "at")
        except (ValueError, TypeError, OverflowError) as exc:
            return Decoded([], [Failure(f"invalid alert event: {exc}", INVALID_INPUT, loaded, origin)])
        return Decoded([Doc(alerts_index(self.prefix, at), event_id, orjson.dumps(loaded), origin)], [])

    # -- the sink's own dead letters: one record, on the topic and in the index

    def sink_deadletter_record(self, failure: Failure, failed_at: datetime) -> dict[str, Any]:
        """The shared DeadLetter shape (bounded, scrubbed, always encodes) plus what the sink knows:
        Elasticsearch's error type and status, and the document's intended index and id."""
        origin = failure.origin
        letter = dead_letter(
            failure.reason,
            "sink",
            failure.original,
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            batch_index=failure.item,
            detected_at=failed_at,
            fields=SINK_INPUT_FIELDS,
        )
        return letter | {
            "error_type": failure.error_type,
            "status": failure.status,
            "target_index": failure.target_index,
            "doc_id": failure.doc_id,
            "message_timestamp": _iso_ms(origin.timestamp_ms) if origin.timestamp_ms else None,
        }

    def sink_deadletter_message(self, record: dict[str, Any], failure: Failure) -> tuple[bytes, bytes]:
        """Key and value for the sink dead-letter topic."""
        return self.sink_deadletter_id(failure).encode(), orjson.dumps(record)

    def sink_deadletter_id(self, failure: Failure) -> str:
        origin = failure.origin
        item = "" if failure.item is None else str(failure.item)
        return f"{origin.topic}:{origin.partition}:{origin.offset}:{item}"

    def sink_deadletter_doc(self, record: dict[str, Any], failure: Failure, failed_at: datetime) -> Doc:
        timestamp_ms = failure.origin.timestamp_ms
        day = (
            datetime.fromtimestamp(timestamp_ms / 1000, UTC)
            if timestamp_ms and 0 < timestamp_ms < LATEST_EVENT_TIME_MS
            else failed_at
        )
        index = sink_deadletter_index(self.prefix, day)
        return Doc(
            index, self.sink_deadletter_id(failure), orjson.dumps(record), failure.origin, failure.item
        )


def _iso_ms(timestamp_ms: int) -> str:
    return (
        datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
