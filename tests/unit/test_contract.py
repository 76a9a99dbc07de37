"""The raw event contract: what is accepted, what is rejected and why, and the wire format."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from callstream.producers.contract import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_METADATA_KEYS,
    RawCallEvent,
    decode_events,
    decode_positioned_events,
    derived_event_id,
    encode_event_dicts,
    encode_events,
    partition_for_event_id,
)

BASE = {
    "event_id": "e-1",
    "event_time": "2026-01-01T00:00:00Z",
    "request_model": "gpt-4.1",
    "duration_ms": 812.5,
}


def one(doc: object) -> bytes:
    return orjson.dumps(doc)


def test_minimal_event_is_valid_with_defaults() -> None:
    valid, rejected = decode_events(one(BASE))
    assert rejected == []
    [event] = valid
    assert event.event_id == "e-1"
    assert event.event_time == datetime(2026, 1, 1, tzinfo=UTC)
    assert (event.input_tokens, event.output_tokens, event.status_code, event.metadata) == (0, 0, None, {})
    assert event.operation_name == "chat"
    assert event.schema_version == 1


def test_full_event_is_valid() -> None:
    doc = BASE | {
        "operation_name": "chat",
        "provider_name": "openai",
        "response_model": "gpt-4.1-2025-04-14",
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_input_tokens": 800,
        "cache_creation_input_tokens": 100,
        "reasoning_output_tokens": 120,
        "time_to_first_token_ms": 210.0,
        "streamed": True,
        "status_code": 200,
        "server_address": "api.openai.com",
        "service_name": "support-bot",
        "environment": "prod",
        "user_id": "u1",
        "session_id": "s1",
        "reported_cost_usd": 0.0123,
        "metadata": {"client_ip": "10.0.0.1", "retries": 2, "ratio": 0.5, "cached": False, "note": None},
    }
    valid, rejected = decode_events(one(doc))
    assert rejected == []
    assert valid[0].metadata == doc["metadata"]
    assert valid[0].reasoning_output_tokens == 120


def test_missing_event_id_is_derived_from_where_it_was_read() -> None:
    """Reading the same message again gives the same ids; each position its own; else rejected."""
    doc = {k: v for k, v in BASE.items() if k != "event_id"}
    value = one([doc, doc | {"event_id": ""}, doc | {"event_id": "given"}])
    first, rejected = decode_events(value, origin="calls.raw:3:17")
    assert rejected == []
    again, _ = decode_events(value, origin="calls.raw:3:17")
    elsewhere, _ = decode_events(value, origin="calls.raw:3:18")
    ids = [e.event_id for e in first]
    assert ids == [e.event_id for e in again]
    assert ids[:2] == [derived_event_id("calls.raw:3:17", 0), derived_event_id("calls.raw:3:17", 1)]
    assert len(set(ids)) == 3 and ids[2] == "given"
    assert [e.event_id for e in elsewhere][:2] != ids[:2]
    single, _ = decode_events(one(doc), origin="calls.raw:0:5")
    assert single[0].event_id == derived_event_id("calls.raw:0:5", None)
    valid, [rejection] = decode_events(one(doc))
    assert valid == [] and "event_id" in rejection.reason


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"input_tokens": -1}, "input_tokens: Input should be greater than or equal to 0"),
        ({"output_tokens": "many"}, "output_tokens"),
        ({"request_model": ""}, "request_model"),
        ({"request_model": "   "}, "request_model"),
        ({"event_time": "2026-01-01T00:00:00"}, "event_time: Input should have timezone info"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"duration_ms": -5}, "duration_ms"),
        ({"duration_ms": 86_400_001}, "duration_ms"),
        ({"status_code": 999}, "status_code"),
        ({"status_code": 99}, "status_code"),
        ({"schema_version": 2}, "schema_version"),
        ({"error_message": "x" * (MAX_ERROR_MESSAGE_CHARS + 1)}, "error_message"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata.nested"),
        ({"metadata": "not a dict"}, "metadata"),
        ({"event_id": ""}, "event_id"),
        ({"time_to_first_token_ms": -1}, "time_to_first_token_ms"),
        ({"reported_cost_usd": -0.5}, "reported_cost_usd"),
    ],
)
def test_invalid_event_rejected_with_readable_reason(change: dict[str, object], fragment: str) -> None:
    valid, rejected = decode_events(one(BASE | change))
    assert valid == []
    [rejection] = rejected
    assert rejection.reason.startswith("invalid event: ")
    assert fragment in rejection.reason
    assert "https://" not in rejection.reason  # no pydantic URLs
    assert rejection.original == BASE | change
    assert rejection.index is None


def test_missing_required_fields_are_each_named() -> None:
    _, [rejection] = decode_events(one({"event_id": "x"}))
    for name in ("event_time", "request_model", "duration_ms"):
        assert f"{name}: Field required" in rejection.reason


def test_token_parts_must_fit_in_totals() -> None:
    _, [cache] = decode_events(
        one(BASE | {"input_tokens": 10, "cache_read_input_tokens": 6, "cache_creation_input_tokens": 5})
    )
    assert (
        "cache_read_input_tokens + cache_creation_input_tokens (11) exceed input_tokens (10)" in cache.reason
    )
    _, [reasoning] = decode_events(one(BASE | {"output_tokens": 3, "reasoning_output_tokens": 4}))
    assert "reasoning_output_tokens (4) exceed output_tokens (3)" in reasoning.reason
    valid, rejected = decode_events(
        one(
            BASE
            | {
                "input_tokens": 10,
                "cache_read_input_tokens": 6,
                "cache_creation_input_tokens": 4,
                "output_tokens": 4,
                "reasoning_output_tokens": 4,
            }
        )
    )
    assert rejected == [] and len(valid) == 1  # parts exactly equal to the totals are fine


def test_metadata_cap() -> None:
    at_cap = {f"k{i}": i for i in range(MAX_METADATA_KEYS)}
    assert decode_events(one(BASE | {"metadata": at_cap}))[1] == []
    over = at_cap | {"one-more": 1}
    _, [rejection] = decode_events(one(BASE | {"metadata": over}))
    assert f"metadata: Dictionary should have at most {MAX_METADATA_KEYS} items" in rejection.reason


def test_timezones_are_normalised_to_utc() -> None:
    valid, _ = decode_events(
        one(
            [
                BASE | {"event_time": "2026-01-01T09:30:00+09:00"},
                BASE | {"event_time": "2025-12-31T19:30:00.250-05:00"},
            ]
        )
    )
    assert valid[0].event_time == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert valid[0].event_time.utcoffset() == timedelta(0)
    assert valid[1].event_time == datetime(2026, 1, 1, 0, 30, 0, 250_000, tzinfo=UTC)
    assert valid[1].to_wire()["event_time"] == "2026-01-01T00:30:00.250000Z"
    direct = RawCallEvent(
        event_id="e",
        event_time=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))),
        request_model="m",
        duration_ms=1,
    )
    assert direct.event_time.tzinfo == UTC and direct.event_time.hour == 10


def test_batch_decode_isolates_bad_items() -> None:
    items = [
        BASE | {"event_id": "ok-0"},
        BASE | {"event_id": "bad-1", "input_tokens": -1},
        "a string",
        BASE | {"event_id": "ok-3"},
        42,
        BASE | {"event_id": "bad-5", "event_time": "2026-01-01T00:00:00"},
        BASE | {"event_id": "ok-6"},
    ]
    valid, rejected = decode_events(one(items))
    assert [e.event_id for e in valid] == ["ok-0", "ok-3", "ok-6"]
    assert [r.index for r in rejected] == [1, 2, 4, 5]
    assert "input_tokens" in rejected[0].reason
    assert rejected[1].reason == "expected an event object, got str"
    assert rejected[1].original == b'"a string"'  # kept as JSON: the dead letter shows it quoted
    assert rejected[2].reason == "expected an event object, got int"
    assert "event_time" in rejected[3].reason
    assert rejected[3].original == items[5]


def test_valid_batch_and_empty_batch() -> None:
    items = [BASE | {"event_id": f"e{i}"} for i in range(50)]
    valid, rejected = decode_events(one(items))
    assert [e.event_id for e in valid] == [f"e{i}" for i in range(50)] and rejected == []
    assert decode_events(b"[]") == ([], [])


def test_single_object_message() -> None:
    valid, rejected = decode_events(b"  " + one(BASE))
    assert [e.event_id for e in valid] == ["e-1"] and rejected == []


@pytest.mark.parametrize("value", [b"{not json", b"[1, 2", b"\xff\xfe", b"nul"])
def test_non_json_is_rejected(value: bytes) -> None:
    valid, [rejection] = decode_events(value)
    assert valid == []
    assert rejection.reason.startswith("not JSON")
    assert rejection.original == value


@pytest.mark.parametrize("value", [b"", None])
def test_empty_value_is_rejected(value: bytes | None) -> None:
    valid, [rejection] = decode_events(value)
    assert valid == [] and rejection.reason == "empty message value" and rejection.original is None


@pytest.mark.parametrize(("value", "kind"), [(b"null", "NoneType"), (b"12", "int"), (b'"s"', "str")])
def test_json_that_is_not_an_event_or_batch(value: bytes, kind: str) -> None:
    _, [rejection] = decode_events(value)
    assert rejection.reason == f"expected a JSON object or array, got {kind}"


def test_wire_roundtrip() -> None:
    events = [
        RawCallEvent(
            event_id=f"w{i}",
            event_time=datetime(2026, 3, 1, 12, 0, i, 123_456, tzinfo=UTC),
            request_model="claude-sonnet-4-5",
            response_model="claude-sonnet-4-5-20250929" if i % 2 else None,
            input_tokens=1000 + i,
            output_tokens=200,
            cache_read_input_tokens=500,
            reasoning_output_tokens=i,
            duration_ms=1234.567,
            status_code=200 if i % 3 else 429,
            error_type=None if i % 3 else "RateLimitError",
            metadata={"client_ip": "10.0.0.1", "n": i, "f": 0.25, "b": True, "none": None},
        )
        for i in range(5)
    ]
    value = encode_events(events)
    assert isinstance(orjson.loads(value), list)
    decoded, rejected = decode_events(value)
    assert rejected == [] and decoded == events
    assert decode_events(encode_event_dicts(e.to_wire() for e in events))[0] == events


def test_to_wire_is_compact() -> None:
    event = RawCallEvent(
        event_id="c", event_time=datetime(2026, 1, 1, tzinfo=UTC), request_model="m", duration_ms=3
    )
    assert event.to_wire() == {
        "event_id": "c",
        "event_time": "2026-01-01T00:00:00.000000Z",
        "request_model": "m",
        "duration_ms": 3.0,
    }


def test_unknown_fields_are_ignored() -> None:
    valid, rejected = decode_events(one(BASE | {"some_future_field": 1}))
    assert rejected == [] and "some_future_field" not in valid[0].model_dump()


def test_partition_for_event_id_is_stable_and_in_range() -> None:
    parts = [partition_for_event_id(f"evt-{i}", 6) for i in range(600)]
    assert parts == [partition_for_event_id(f"evt-{i}", 6) for i in range(600)]
    assert set(parts) == set(range(6))


def test_every_accepted_event_can_be_encoded_again() -> None:
    huge = 2**70
    value = json.dumps([BASE | {"input_tokens": huge}, BASE | {"metadata": {"n": huge}}, BASE]).encode()
    valid, rejected = decode_events(value)
    # orjson reads the huge metadata integer as a float; the huge token count is rejected.
    assert len(valid) == 2 and len(rejected) == 1
    encode_events(valid)
    assert all(e.input_tokens < 2**63 for e in valid)


@pytest.mark.parametrize(
    "change",
    [
        {"time_to_first_token_ms": float("inf")},
        {"reported_cost_usd": float("inf")},
        {"metadata": {"x": float("inf")}},
    ],
)
def test_non_finite_floats_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RawCallEvent.model_validate(BASE | change)


def test_valid_events_keep_their_positions_in_the_batch() -> None:
    """What a later stage says about an event (a dead letter) must point at the right item."""
    items = [
        BASE | {"event_id": "a"},
        42,
        BASE | {"event_id": "b", "input_tokens": -1},
        BASE | {"event_id": "c"},
    ]
    positioned, rejected = decode_positioned_events(one(items))
    assert [(index, event.event_id) for index, event in positioned] == [(0, "a"), (3, "c")]
    assert [r.index for r in rejected] == [1, 2]
    fast, _ = decode_positioned_events(one([BASE | {"event_id": f"e{i}"} for i in range(3)]))
    assert [(index, event.event_id) for index, event in fast] == [(0, "e0"), (1, "e1"), (2, "e2")]
    [(single, _)], _ = decode_positioned_events(one(BASE))
    assert single is None


# -- what the mutation run found untested (docs/mutation.md) --------------------------------------------


@pytest.fixture
def machine_in_seoul(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "KST-9")  # a POSIX zone string: no tz database needed
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


@pytest.mark.usefixtures("machine_in_seoul")
def test_event_times_are_utc_whatever_the_machine_zone() -> None:
    [event], _ = decode_events(one(BASE | {"event_time": "2026-01-01T09:30:00+09:00"}))
    assert event.event_time == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert event.event_time.utcoffset() == timedelta(0)
    assert event.to_wire()["event_time"] == "2026-01-01T00:30:00.000000Z"


@pytest.mark.parametrize(
    ("event_time", "reason"),
    [
        ("1970-01-02T00:00:00Z", None),
        ("2999-12-31T00:00:00Z", None),
        (
            "1970-01-01T23:59:59.999999Z",
            "invalid event: event_time: Value error, 1970-01-01T23:59:59.999999Z is not a plausible call "
            "time (expected between 1970-01-02 and 2999-12-31)",
        ),
        (
            "2999-12-31T01:00:00.000001+01:00",
            "invalid event: event_time: Value error, 2999-12-31T00:00:00.000001Z is not a plausible call "
            "time (expected between 1970-01-02 and 2999-12-31)",
        ),
        (
            "0001-01-01T00:00:00+01:00",
            "invalid event: event_time: Value error, 0001-01-01T00:00:00+01:00 is outside the "
            "representable range",
        ),
    ],
)
def test_plausible_event_times_include_both_ends(event_time: str, reason: str | None) -> None:
    valid, rejected = decode_events(one(BASE | {"event_time": event_time}))
    assert [r.reason for r in rejected] == ([] if reason is None else [reason])
    assert len(valid) == (reason is None)


def test_reasons_list_every_problem_and_name_the_event_for_whole_event_rules() -> None:
    _, [missing] = decode_events(one({"event_id": "x"}))
    assert missing.reason == (
        "invalid event: event_time: Field required; request_model: Field required; "
        "duration_ms: Field required"
    )
    _, [parts] = decode_events(one(BASE | {"input_tokens": 10, "cache_read_input_tokens": 11}))
    assert parts.reason.startswith("invalid event: event: Value error, cache_read_input_tokens + ")


def test_derived_ids_never_change_between_releases() -> None:
    """A message read again after an upgrade must give its events the same ids, or dedup fails."""
    assert derived_event_id("calls.raw:3:17", 0) == "derived-e422bca411ad4e8e46a31ac8fbbd3205"
    assert derived_event_id("calls.raw:0:5", None) == "derived-501a74cd106f4ccb10c1483039c48cdd"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[" * 2000 + b"]" * 2000, "not JSON that can be read: nested more than 1024 levels deep"),
        (
            b'{"a":' * 1100 + b"1" + b"}" * 1100,
            "not JSON that can be read: nested more than 1024 levels deep",
        ),
        (b"{not json", "not JSON (unreadable at character 1)"),
        (b"[1, 2", "not JSON (unreadable at character 5)"),
    ],
)
def test_unreadable_values_say_why(value: bytes, reason: str) -> None:
    _, [rejection] = decode_events(value)
    assert rejection.reason == reason


def test_json_that_is_not_an_event_is_kept_as_it_was() -> None:
    _, [rejection] = decode_events(b"12")
    assert rejection.original == 12


def test_an_unexpected_error_while_validating_rejects_only_that_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """decode_events never raises: an error beyond pydantic's own (none is known today) is a rejection."""
    validate = RawCallEvent.model_validate

    def failing(item: Any) -> RawCallEvent:
        if item["event_id"] == "bad":
            raise OverflowError("too far")
        return validate(item)

    monkeypatch.setattr(RawCallEvent, "model_validate", failing)
    items = [BASE | {"event_id": "ok"}, BASE | {"event_id": "bad"}, "x"]
    valid, rejected = decode_events(one(items))
    assert [e.event_id for e in valid] == ["ok"]
    assert (rejected[0].reason, rejected[0].original, rejected[0].index) == (
        "invalid event: OverflowError: too far",
        items[1],
        1,
    )


def test_a_valid_batch_is_validated_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's throughput rests on it: item-by-item validation is only for a batch with a bad item."""

    def item_by_item(item: Any) -> RawCallEvent:
        raise AssertionError(f"validated item by item: {item}")

    monkeypatch.setattr(RawCallEvent, "model_validate", item_by_item)
    positioned, rejected = decode_positioned_events(one([BASE | {"event_id": f"e{i}"} for i in range(3)]))
    assert [(index, event.event_id) for index, event in positioned] == [(0, "e0"), (1, "e1"), (2, "e2")]
    assert rejected == []


def test_control_characters_are_refused_in_names_and_replaced_in_free_text() -> None:
    from pydantic import ValidationError

    from callstream.producers.contract import describe_validation_error

    base = {"event_id": "e", "event_time": "2026-03-01T00:00:00Z", "request_model": "m", "duration_ms": 1}
    for name in ("gpt\x1b[2J", "gpt\x9b31m", "gpt\x7f", "user\x00"):
        with pytest.raises(ValidationError) as caught:
            RawCallEvent.model_validate(base | {"user_id": name})
        assert describe_validation_error(caught.value) == (
            "user_id: control characters (C0, DEL, C1: escape sequences) are not allowed"
        )
    event = RawCallEvent.model_validate(
        base
        | {"error_message": "boom\x1b]0;owned\x07\nline 2\x9b", "metadata": {"k\x1b": "v\x1b[2J", "n": 1}}
    )
    assert event.error_message == "boom\ufffd]0;owned\ufffd\nline 2\ufffd"
    assert event.metadata == {"k\ufffd": "v\ufffd[2J", "n": 1}
    assert (
        RawCallEvent.model_validate(base | {"request_model": "[/bold]gpt-4.1"}).request_model
        == "[/bold]gpt-4.1"
    )
