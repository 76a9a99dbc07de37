"""LLM gateway client log lines and callstream wire lines map onto the event contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from callstream.producers.contract import RawCallEvent
from callstream.producers.gateway_log import (
    detect,
    gateway_fields,
    line_event_id,
    line_fields,
    parse_time,
    parse_zone,
)
from callstream.producers.prepare import Policy, build_event

GATEWAY = {
    "log_id": "7d9f2c1e-0000-4000-8000-000000000001",
    "timestamp": "2025-03-01T12:00:01.500000Z",
    "model": "gpt-4.1",
    "endpoint": "https://api.holysheep.ai/v1/chat/completions",
    "request_tokens": 812,
    "response_tokens": 95,
    "total_tokens": 907,
    "response_time_ms": 1500.0,
    "status_code": 200,
    "error_message": None,
    "cost_usd": 0.007256,
    "session_id": "s-1",
    "user_id": "test-user-001",
    "metadata": {"source": "elk-integration-test", "client_ip": "203.0.113.7", "order": {"id": 42}},
}


def event(doc: dict[str, object], **kwargs: object) -> RawCallEvent:
    return RawCallEvent.model_validate(build_event(line_fields(doc, **kwargs), Policy()))  # type: ignore[arg-type]


def test_gateway_record_maps_onto_the_contract() -> None:
    e = event(GATEWAY)
    assert e.event_id == GATEWAY["log_id"]
    assert e.event_time == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)  # written at the end: minus duration
    assert (e.request_model, e.response_model) == ("gpt-4.1", None)
    assert (e.input_tokens, e.output_tokens, e.duration_ms) == (812, 95, 1500.0)
    assert (e.status_code, e.error_type, e.error_message) == (200, None, None)
    assert e.reported_cost_usd == pytest.approx(0.007256)
    assert (e.session_id, e.user_id) == ("s-1", "test-user-001")
    assert e.server_address == "api.holysheep.ai" and e.operation_name == "chat"
    assert e.metadata == {"source": "elk-integration-test", "client_ip": "203.0.113.7", "order.id": 42}


def test_gateway_timestamp_as_start() -> None:
    assert event(GATEWAY, gateway_timestamp="start").event_time == datetime(
        2025, 3, 1, 12, 0, 1, 500000, tzinfo=UTC
    )


def test_gateway_error_record() -> None:
    doc = GATEWAY | {
        "status_code": 429,
        "error_message": '{"error": "rate limit"}',
        "request_tokens": 0,
        "response_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
        "user_id": None,
    }
    e = event(doc)
    assert (e.status_code, e.error_type, e.error_message) == (429, "429", '{"error": "rate limit"}')
    assert e.user_id is None and e.reported_cost_usd == 0.0


def test_naive_timestamps_use_the_configured_zone() -> None:
    doc = GATEWAY | {"timestamp": "2025-03-01T21:00:01.5", "response_time_ms": 1500.0}
    assert event(doc).event_time == datetime(2025, 3, 1, 21, 0, 0, tzinfo=UTC)
    seoul = event(doc, naive_zone=parse_zone("Asia/Seoul")).event_time
    assert seoul == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert event(doc, naive_zone=parse_zone("+09:00")).event_time == seoul


def test_disagreeing_total_is_kept_visible() -> None:
    assert event(GATEWAY | {"total_tokens": 1000}).metadata["gateway.total_tokens"] == 1000


def test_callstream_wire_lines_pass_through() -> None:
    wire = {"event_id": "abc", "event_time": "2025-03-01T12:00:00Z", "request_model": "m", "duration_ms": 3.0}
    assert detect(wire) == "callstream"
    e = event(wire)
    assert (e.event_id, e.event_time, e.duration_ms) == ("abc", datetime(2025, 3, 1, 12, tzinfo=UTC), 3.0)


def test_invalid_gateway_lines_raise() -> None:
    with pytest.raises(ValueError):
        gateway_fields({k: v for k, v in GATEWAY.items() if k != "timestamp"})
    with pytest.raises(ValueError):
        event(GATEWAY | {"model": ""})
    with pytest.raises(ValueError):
        event(GATEWAY | {"request_tokens": -5})


def test_parse_time_variants() -> None:
    expected = datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert parse_time(expected.timestamp(), UTC) == expected
    assert parse_time(expected.timestamp() * 1000, UTC) == expected
    assert parse_time("2025-03-01 21:00:00+09:00", UTC) == expected
    assert parse_time("2025-03-01T12:00:00", timezone(timedelta(0))) == expected


def test_line_event_id_depends_on_file_position_and_content() -> None:
    assert line_event_id(b"{}", 7, 100) == line_event_id(b"{}", 7, 100)
    assert len({line_event_id(b"{}", 7, 100), line_event_id(b"{}", 8, 100), line_event_id(b"{}", 7, 101),
                line_event_id(b"{ }", 7, 100)}) == 4  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"timestamp": 1e20}, "timestamp 1e+20 is out of range"),
        ({"timestamp": float("nan")}, "timestamp nan is not a finite number"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "out of range once converted to UTC"),
        ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not ISO-8601"),
        ({"timestamp": True}, "timestamp True is not a time"),
        ({"response_time_ms": 1e300}, "response_time_ms 1e+300 is out of range"),
        ({"response_time_ms": "fast"}, "response_time_ms: 'fast' is not a number"),
        ({"request_tokens": "many"}, "request_tokens: 'many' is not a whole number"),
        ({"request_tokens": float("inf")}, "request_tokens: inf is not a whole number"),
        ({"status_code": [200]}, "status_code: [200] is not a whole number"),
        ({"metadata": [1, 2]}, "metadata must be a JSON object, got list"),
        ({"endpoint": "http://[::1"}, "is not a URL"),
    ],
)
def test_hostile_gateway_values_have_readable_reasons(doc: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        gateway_fields(GATEWAY | doc)
    assert reason in str(caught.value)


def test_numeric_ids_become_text_and_missing_tokens_are_missing_usage() -> None:
    fields = gateway_fields(GATEWAY | {"user_id": 42, "session_id": 7})
    assert (fields["user_id"], fields["session_id"]) == ("42", "7")
    assert "usage" not in fields
    bare = {
        k: v for k, v in GATEWAY.items() if k not in ("request_tokens", "response_tokens", "total_tokens")
    }
    assert gateway_fields(bare)["usage"] == "missing"
    assert "usage" not in gateway_fields(bare | {"status_code": 429})  # a failed call: nothing to price
