"""Kafka message value -> (index, _id, version, source): deterministic, and bad inputs become failures."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from callstream.producers.deadletter import MAX_ORIGINAL_CHARS
from callstream.sinks.documents import INVALID_INPUT, Documents, Origin, SinkDeadLetter
from tests.unit.test_sink_events import enriched_events

ORIGIN = Origin("cs.calls.enriched", 2, 41, timestamp_ms=1_772_400_000_000)  # 2026-03-01T21:20:00Z
DOCS = Documents("cs")


def test_enriched_array_becomes_one_doc_per_event_in_daily_indices() -> None:
    events = enriched_events(30, seed=5)
    decoded = DOCS.enriched(orjson.dumps(events), ORIGIN)
    assert decoded.failures == []
    assert [d.id for d in decoded.docs] == [e["event_id"] for e in events]
    for position, (doc, event) in enumerate(zip(decoded.docs, events, strict=True)):
        day = event["event_time"][:10].replace("-", ".")
        assert doc.index == f"cs-calls-{day}"
        assert orjson.loads(doc.source) == event
        assert (doc.origin, doc.item, doc.version) == (ORIGIN, position, None)


def test_same_message_gives_the_same_documents() -> None:
    value = orjson.dumps(enriched_events(5, seed=6))
    assert DOCS.enriched(value, ORIGIN) == DOCS.enriched(value, ORIGIN)


def test_event_time_with_an_offset_goes_to_its_utc_day() -> None:
    event = enriched_events(1)[0] | {"event_time": "2026-03-02T08:30:00+09:00"}  # 2026-03-01 23:30 UTC
    assert DOCS.enriched(orjson.dumps(event), ORIGIN).docs[0].index == "cs-calls-2026.03.01"


def test_single_object_message_is_accepted() -> None:
    event = enriched_events(1)[0]
    decoded = DOCS.enriched(orjson.dumps(event), ORIGIN)
    assert [d.id for d in decoded.docs] == [event["event_id"]]
    assert decoded.docs[0].item is None


def test_bad_events_fail_alone_with_their_position() -> None:
    good = enriched_events(3, seed=7)
    bad = [
        good[0] | {"event_id": ""},
        {k: v for k, v in good[1].items() if k != "event_time"},
        good[2] | {"event_time": "2026-03-01T00:00:00"},  # no time zone
        "not an object",
        good[0] | {"event_id": "x" * 600},
    ]
    decoded = DOCS.enriched(orjson.dumps([good[0], *bad, good[1]]), ORIGIN)
    assert [d.item for d in decoded.docs] == [0, 6]
    assert [f.item for f in decoded.failures] == [1, 2, 3, 4, 5]
    assert all(f.error_type == INVALID_INPUT and f.origin == ORIGIN for f in decoded.failures)
    assert "event_id" in decoded.failures[0].reason
    assert "event_time" in decoded.failures[1].reason
    assert "time zone" in decoded.failures[2].reason
    assert decoded.failures[3].original == "not an object"


def test_undecodable_messages_fail_whole() -> None:
    for value, reason in [(b"", "empty"), (None, "empty"), (b"{nope", "not JSON"), (b"42", "array")]:
        decoded = DOCS.enriched(value, ORIGIN)
        assert decoded.docs == [] and len(decoded.failures) == 1
        assert reason in decoded.failures[0].reason
        assert decoded.failures[0].item is None


def _aggregate(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "doc_id": "model|gpt-4.1|1h|2026-03-01T10:00:00Z",
        "version": 3,
        "dimension": "model",
        "key": "gpt-4.1",
        "window_size": "1h",
        "window_start": "2026-03-31T23:00:00Z",
        "window_end": "2026-04-01T00:00:00Z",
        "requests": 10,
    }
    return base | changes


def test_aggregate_is_versioned_in_a_monthly_index_per_window_size() -> None:
    decoded = DOCS.aggregate(orjson.dumps(_aggregate()), ORIGIN)
    (doc,) = decoded.docs
    assert doc.index == "cs-aggregates-1h-2026.03"
    assert (doc.id, doc.version) == ("model|gpt-4.1|1h|2026-03-01T10:00:00Z", 3)
    assert orjson.loads(doc.source) == _aggregate()


def test_invalid_aggregates_fail() -> None:
    for bad in (
        _aggregate(version=0),
        _aggregate(version=True),
        _aggregate(version="2"),
        _aggregate(window_size="5m"),
    ):
        decoded = DOCS.aggregate(orjson.dumps(bad), ORIGIN)
        assert decoded.docs == [] and decoded.failures[0].original == bad
    assert "doc_id" in DOCS.aggregate(orjson.dumps(_aggregate(doc_id=None)), ORIGIN).failures[0].reason


def _letter(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "reason": "invalid event: duration_ms: Input should be greater than or equal to 0",
        "stage": "enrich",
        "original": '{"event_id":"e1","duration_ms":-1}',
        "original_bytes": 33,
        "source_topic": "cs.calls.raw",
        "source_partition": 4,
        "source_offset": 1234,
        "batch_index": 7,
        "detected_at": "2026-03-05T12:00:00Z",
    }
    return base | changes


def test_stream_dead_letter_id_comes_from_its_source_coordinates() -> None:
    (doc,) = DOCS.deadletter(orjson.dumps(_letter()), ORIGIN).docs
    assert doc.index == "cs-deadletter-2026.03.05"
    assert doc.id == "enrich:cs.calls.raw:4:1234:7"
    source = orjson.loads(doc.source)
    assert orjson.loads(source["original"]) == {"event_id": "e1", "duration_ms": -1}
    # Re-published by a restarted stream (another offset of the dead-letter topic): same _id.
    again = Origin(ORIGIN.topic, ORIGIN.partition, 999)
    assert DOCS.deadletter(orjson.dumps(_letter()), again).docs[0].id == doc.id


def test_dead_letter_without_source_uses_its_own_coordinates_and_text_originals() -> None:
    letter = _letter(source_topic=None, source_offset=None, original="{broken json")
    (doc,) = DOCS.deadletter(orjson.dumps(letter), ORIGIN).docs
    assert doc.id == "cs.calls.enriched:2:41"
    assert orjson.loads(doc.source)["original"] == "{broken json"


def test_sink_dead_letter_document_and_message_agree() -> None:
    event = enriched_events(1)[0]
    failure = DOCS.enriched(orjson.dumps([event | {"event_id": ""}]), ORIGIN).failures[0]
    failed_at = datetime(2026, 3, 9, 1, 2, 3, tzinfo=UTC)
    record = DOCS.sink_deadletter_record(failure, failed_at)
    SinkDeadLetter.model_validate(record)  # the one dead-letter shape, plus the sink's fields
    doc = DOCS.sink_deadletter_doc(record, failure, failed_at)
    assert doc.index == "cs-sink-deadletter-2026.03.01"  # message timestamp, not the failure time
    assert doc.id == "cs.calls.enriched:2:41:0"
    key, value = DOCS.sink_deadletter_message(record, failure)
    assert key == doc.id.encode() and orjson.loads(value) == orjson.loads(doc.source)
    assert orjson.loads(record["original"]) == event | {"event_id": ""}
    assert record["reason"] == failure.reason and record["detected_at"] == "2026-03-09T01:02:03.000Z"
    assert (record["stage"], record["source_topic"], record["source_partition"], record["source_offset"]) == (
        "sink",
        ORIGIN.topic,
        2,
        41,
    )


def test_oversized_and_unencodable_originals_give_bounded_dead_letters() -> None:
    huge = {"event_id": "", "latency_sketch": {"b": "x" * 50_000}, "blob": "PROMPT"}
    failure = DOCS.enriched(orjson.dumps([huge]), ORIGIN).failures[0]
    record = DOCS.sink_deadletter_record(failure, datetime(2026, 3, 9, tzinfo=UTC))
    assert record["original_truncated"] is True and len(record["original"]) == MAX_ORIGINAL_CHARS
    assert "PROMPT" not in record["original"]  # a field no contract of the sink's knows: dropped
    small = DOCS.enriched(orjson.dumps([{"event_id": "", "blob": "PROMPT"}]), ORIGIN).failures[0]
    assert orjson.loads(DOCS.sink_deadletter_record(small, datetime.now(UTC))["original"]) == {
        "event_id": "",
        "callstream.dropped": ["blob"],
    }
    assert record["original_bytes"] >= MAX_ORIGINAL_CHARS  # of what was read: the head of a huge one
    deep = b'[{"event_id":"e","event_time":"2026-03-01T00:00:00Z","x":' + b"[" * 300 + b"]" * 300 + b"}]"
    (bad,) = DOCS.enriched(deep, ORIGIN).failures  # valid JSON that orjson cannot encode again
    assert orjson.dumps(DOCS.sink_deadletter_record(bad, datetime.now(UTC)))
