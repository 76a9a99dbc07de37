"""The safety rules applied to every recorded event: secrets, bodies, metadata caps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from callstream.producers.contract import MAX_METADATA_KEYS, RawCallEvent
from callstream.producers.deadletter import dead_letter
from callstream.producers.prepare import (
    METADATA_TRUNCATED_KEY,
    REDACTED,
    Policy,
    build_event,
    sanitize_metadata,
    scrub,
)
from callstream.streams.contract import DeadLetter

START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def item(**fields: object) -> dict[str, object]:
    return {"request_model": "gpt-4.1", "duration_ms": 12.5, "start_time": START} | fields


def test_start_time_becomes_utc_event_time() -> None:
    wire = build_event(item(), Policy())
    assert RawCallEvent.model_validate(wire).event_time == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert wire["event_time"] == "2025-03-01T12:00:00.000000Z"


def test_api_keys_are_scrubbed_from_error_messages_and_metadata() -> None:
    policy = Policy(secrets=frozenset({"my-gateway-key-123"}))
    wire = build_event(
        item(
            error_message=(
                "Incorrect API key provided: sk-proj-abc***wxyz; Bearer eyJhbGciOi.x; key my-gateway-key-123"
            ),
            metadata={
                "Authorization": "Bearer abc",
                "x-api-key": "k",
                "note": "url?api_key=zzz&x=1",
                "plain": "ok",
            },
        ),
        policy,
    )
    text = str(wire)
    for secret in ("sk-proj-abc", "eyJhbGciOi", "my-gateway-key-123", "zzz", "Bearer abc"):
        assert secret not in text
    assert wire["metadata"]["Authorization"] == REDACTED
    assert wire["metadata"]["x-api-key"] == REDACTED
    assert wire["metadata"]["plain"] == "ok"


def test_error_message_is_truncated_with_a_marker() -> None:
    wire = build_event(item(error_message="e" * 5000), Policy(error_message_max_chars=100))
    assert len(wire["error_message"]) == 100
    assert wire["error_message"].endswith("…[truncated]")


def test_bodies_are_dropped_unless_enabled() -> None:
    fields = item(request_body=[{"role": "user", "content": "secret plan"}], response_body="the answer")
    assert "secret plan" not in str(build_event(dict(fields), Policy()))
    assert "the answer" not in str(build_event(dict(fields), Policy()))
    wire = build_event(dict(fields), Policy(record_bodies=True, body_max_chars=200))
    assert "secret plan" in wire["metadata"]["request_body"]
    assert wire["metadata"]["response_body"] == "the answer"


def test_metadata_is_flattened_to_scalars() -> None:
    clean = sanitize_metadata({"a": {"b": 1, "c": {"d": True}}, "l": [1, 2], "n": None}, Policy())
    assert clean == {"a.b": 1, "a.c.d": True, "l": "[1,2]", "n": None}


def test_oversized_metadata_is_capped_with_a_clear_marker() -> None:
    many = {f"k{i}": "v" * 100 for i in range(200)}
    clean = sanitize_metadata(many, Policy(metadata_max_bytes=2048))
    assert METADATA_TRUNCATED_KEY in clean
    kept = len(clean) - 1
    assert clean[METADATA_TRUNCATED_KEY].startswith(f"{200 - kept} of 200 keys dropped")
    assert len(str(clean)) < 2048 + 200
    # also the key-count cap of the contract
    clean = sanitize_metadata({f"k{i}": i for i in range(500)}, Policy(metadata_max_bytes=1_000_000))
    assert len(clean) == MAX_METADATA_KEYS
    RawCallEvent.model_validate(build_event(item(metadata={f"k{i}": i for i in range(500)}), Policy()))


def test_long_metadata_values_are_truncated() -> None:
    clean = sanitize_metadata({"prompt_name": "x" * 5000}, Policy(metadata_value_max_chars=64))
    assert len(clean["prompt_name"]) == 64 and clean["prompt_name"].endswith("…[truncated]")


def test_service_and_environment_defaults() -> None:
    wire = build_event(item(), Policy(service_name="bot", environment="prod"))
    assert (wire["service_name"], wire["environment"]) == ("bot", "prod")
    wire = build_event(item(service_name="other"), Policy(service_name="bot"))
    assert wire["service_name"] == "other"


def test_invalid_items_raise() -> None:
    with pytest.raises(ValidationError):
        build_event(item(duration_ms=-1), Policy())
    with pytest.raises(ValueError, match="neither event_time nor start_time"):
        build_event({"request_model": "m", "duration_ms": 1}, Policy())


def test_scrub_leaves_ordinary_text_alone() -> None:
    assert scrub("max_tokens=100 and a task-list") == "max_tokens=100 and a task-list"


def test_dead_letter_matches_the_stream_contract() -> None:
    letter = dead_letter("invalid event: x", "producer", {"request_model": "m"}, batch_index=3)
    parsed = DeadLetter.model_validate(letter)
    assert parsed.stage == "producer" and parsed.batch_index == 3
