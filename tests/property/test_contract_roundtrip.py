"""Any valid raw event survives its wire form unchanged, alone or in a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.producers.contract import MAX_METADATA_KEYS, RawCallEvent, decode_events, encode_events

text = st.text(st.characters(codec="utf-8"), max_size=40)
printable = st.characters(codec="utf-8", exclude_categories=["Cc"])  # the contract refuses control characters
names = st.text(printable, max_size=40).filter(lambda s: s.strip() != "")
finite = st.floats(0, 86_400_000, allow_nan=False, allow_infinity=False)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
metadata_values = st.one_of(
    text,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@st.composite
def raw_events(draw: st.DrawFn) -> RawCallEvent:
    input_tokens = draw(st.integers(0, 10**7))
    output_tokens = draw(st.integers(0, 10**6))
    cache_read = draw(st.integers(0, input_tokens))
    optional: dict[str, Any] = {
        "provider_name": names,
        "response_model": names,
        "time_to_first_token_ms": finite,
        "status_code": st.integers(100, 599),
        "error_type": names,
        "error_message": st.text(st.characters(codec="utf-8"), max_size=200),
        "server_address": names,
        "service_name": names,
        "environment": names,
        "user_id": names,
        "session_id": names,
        "reported_cost_usd": finite,
    }
    doc: dict[str, Any] = {
        "event_id": draw(st.text(printable, min_size=1, max_size=128)),
        "event_time": draw(st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1), timezones=offsets)),
        "operation_name": draw(names),
        "request_model": draw(names),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": draw(st.integers(0, input_tokens - cache_read)),
        "reasoning_output_tokens": draw(st.integers(0, output_tokens)),
        "duration_ms": draw(st.floats(0, 86_400_000, allow_nan=False)),
        "streamed": draw(st.booleans()),
        "metadata": draw(st.dictionaries(text, metadata_values, max_size=MAX_METADATA_KEYS)),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    return RawCallEvent.model_validate(doc)


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_events(), min_size=1, max_size=5))
def test_wire_roundtrip(events: list[RawCallEvent]) -> None:
    value = encode_events(events)
    decoded, rejected = decode_events(value)
    assert rejected == []
    assert decoded == events
    for event in decoded:
        assert event.event_time.tzinfo == UTC
    single, rejected = decode_events(orjson.dumps(events[0].to_wire()))
    assert rejected == [] and single == events[:1]
    wire = events[0].to_wire()
    assert wire["event_time"].endswith("Z")
    assert decode_events(orjson.dumps([wire, *(e.to_wire() for e in events)]))[0] == [events[0], *events]
