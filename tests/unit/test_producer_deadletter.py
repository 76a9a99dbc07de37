"""The one dead-letter builder: bounded, always encodable, and redacted by key and pattern."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from callstream.producers.deadletter import (
    MAX_ORIGINAL_CHARS,
    MAX_REASON_CHARS,
    STRUCTURED_MAX_BYTES,
    TEXT_CAP_CHARS,
    dead_letter,
    encode_dead_letter,
    original_text,
)
from callstream.producers.redaction import REDACTED
from callstream.streams.contract import DeadLetter

CANARY = "sk-proj-CANARY0123456789abcdef"


def valid(letter: dict[str, object]) -> DeadLetter:
    parsed = DeadLetter.model_validate(letter)
    orjson.loads(encode_dead_letter(letter))
    return parsed


def test_json_text_is_redacted_by_key_and_keeps_its_form_when_clean() -> None:
    line = '{"model": "m", "api_key": "plain-value", "metadata": {"password": {"a": 1}}}'
    letter = valid(dead_letter("why", "ingest", line, source_file="/x.log", source_line=7))
    assert orjson.loads(letter.original) == {
        "model": "m",
        "api_key": REDACTED,
        "metadata": {"password": REDACTED},
    }
    assert (letter.source_file, letter.source_line) == ("/x.log", 7)
    clean = '{"model": "m",  "n": 1}'
    assert dead_letter("why", "ingest", clean)["original"] == clean  # exact text kept


@pytest.mark.parametrize(
    "original",
    [
        {"error_message": f"bad key {CANARY}"},
        f"not json {CANARY}",
        f'{{"a": "{CANARY}"}}'.encode(),
        [1, {"token": "t"}, CANARY],
        b"\xff\xfe" + CANARY.encode(),
    ],
)
def test_secrets_never_reach_a_dead_letter(original: object) -> None:
    letter = valid(dead_letter(f"reason with {CANARY}", "producer", original))
    assert "CANARY" not in letter.original and "CANARY" not in letter.reason


def test_registered_secrets_are_scrubbed() -> None:
    letter = dead_letter(
        "gateway said my-gateway-key", "x", {"e": "my-gateway-key"}, secrets=frozenset({"my-gateway-key"})
    )
    assert "my-gateway-key" not in str(letter)


def test_bounded_whatever_the_size() -> None:
    huge = b"x" * 60_000_000
    letter = valid(dead_letter("r" * 5_000, "ingest", huge))
    assert len(letter.original) == MAX_ORIGINAL_CHARS and letter.original_truncated
    assert letter.original_bytes == 60_000_000 and len(letter.reason) == MAX_REASON_CHARS
    small = valid(dead_letter("r", "ingest", b"abc"))
    assert (small.original, small.original_bytes, small.original_truncated) == ("abc", 3, False)


def test_unencodable_originals_still_make_a_letter() -> None:
    deep: list[object] = []
    cursor = deep
    for _ in range(5_000):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    for original in (deep, {"big": 2**100}, {1: object()}, None, float("nan")):
        valid(dead_letter("r", "stream", original))


def test_every_field_and_its_exact_form() -> None:
    when = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    letter = dead_letter(
        "why",
        "stream",
        b"x",
        source_topic="t",
        source_partition=2,
        source_offset=41,
        batch_index=3,
        detected_at=when,
    )
    assert letter == {
        "reason": "why",
        "stage": "stream",
        "original": "x",
        "original_bytes": 1,
        "original_truncated": False,
        "source_topic": "t",
        "source_partition": 2,
        "source_offset": 41,
        "batch_index": 3,
        "source_file": None,
        "source_line": None,
        "detected_at": "2025-03-01T12:00:00.123Z",
    }
    assert encode_dead_letter(letter) == orjson.dumps(letter)
    assert (
        dead_letter("r", "s", None, detected_at=datetime(2025, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))))[
            "detected_at"
        ]
        == "2025-01-01T00:00:00.000Z"
    )


def test_original_text_of_each_kind() -> None:
    assert original_text(None) == ""
    assert (
        original_text({1: "a", "b": datetime(2025, 1, 1, tzinfo=UTC)})
        == '{"1":"a","b":"2025-01-01T00:00:00+00:00"}'
    )
    assert original_text({"big": 2**100, "é": "ü"}) == '{"big": 1267650600228229401496703205376, "é": "ü"}'
    assert original_text({"o": object()}).startswith('{"o":"<object object at')
    deep: list[object] = []
    cursor = deep
    for _ in range(5_000):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    assert original_text(deep) == "[unprintable list]"  # past every encoder's depth, and repr's
    assert original_text(b"\xffab") == "\ufffdab"
    assert len(original_text("z" * 100_000)) == TEXT_CAP_CHARS
    assert len(original_text(b"z" * 100_000)) == TEXT_CAP_CHARS

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert original_text({Unprintable()}) == "[unprintable set]"


def test_only_json_objects_and_arrays_of_bounded_size_are_parsed() -> None:
    sensitive = {"credentials": {"user": "u", "note": "n"}}  # only a key-aware parse can see this
    text = orjson.dumps(sensitive).decode()
    for original in (text, "  " + text, text.encode(), b"  " + text.encode(), [sensitive]):
        assert '"note"' not in dead_letter("r", "s", original)["original"], original
    big = orjson.dumps([sensitive] + ["x" * 100] * (STRUCTURED_MAX_BYTES // 100)).decode()
    assert len(big) > STRUCTURED_MAX_BYTES
    for original in (big, big.encode()):
        letter = dead_letter("r", "s", original)
        assert '"note":"n"' in letter["original"] and letter["original_truncated"]  # cut and scrubbed only
    assert dead_letter("r", "s", "[1, 2")["original"] == "[1, 2"  # not JSON after all: kept as text
    assert dead_letter("r", "s", '"just text"')["original"] == '"just text"'


def test_truncation_flag_at_the_limits() -> None:
    assert not dead_letter("r", "s", "y" * MAX_ORIGINAL_CHARS)["original_truncated"]
    assert dead_letter("r", "s", "y" * (MAX_ORIGINAL_CHARS + 1))["original_truncated"]
    assert dead_letter("r", "s", "y" * TEXT_CAP_CHARS)["original_truncated"]


def test_lenient_encoder_keeps_objects_as_text() -> None:
    assert (
        original_text({"big": 2**100, "o": Marker()})
        == '{"big": 1267650600228229401496703205376, "o": "marker"}'
    )


class Marker:
    def __str__(self) -> str:
        return "marker"


def test_json_arrays_as_text_or_bytes_are_parsed_and_the_size_limit_is_inclusive() -> None:
    array = '[{"credentials": {"note": "n"}}]'
    for original in (array, array.encode()):
        assert '"note"' not in dead_letter("r", "s", original)["original"]
    exact = '{"credentials": {"note": "n"}, "pad": "' + "p" * (STRUCTURED_MAX_BYTES - 41) + '"}'
    assert len(exact) == STRUCTURED_MAX_BYTES
    for original in (exact, exact.encode()):
        assert '"note"' not in dead_letter("r", "s", original)["original"]


def test_registered_secrets_reach_text_and_json_originals() -> None:
    secrets = frozenset({"my-registered-value"})
    assert (
        dead_letter("r", "s", "plain my-registered-value", secrets=secrets)["original"] == "plain [redacted]"
    )
    letter = dead_letter("r", "s", '{"a": "my-registered-value"}', secrets=secrets)
    assert letter["original"] == '{"a":"[redacted]"}'  # redacted as JSON, so written again compactly


def test_a_text_shortened_by_scrubbing_is_still_flagged_as_cut() -> None:
    original = ("sk-" + "a" * 100 + " ") * 200  # 20,800 characters, every word a key
    letter = dead_letter("r", "s", original)
    assert len(letter["original"]) < MAX_ORIGINAL_CHARS and letter["original_truncated"]


def test_detected_at_is_utc_whatever_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    try:
        assert dead_letter("r", "s", "x")["detected_at"].endswith("Z")
        when = datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
        assert dead_letter("r", "s", "x", detected_at=when)["detected_at"] == "2025-01-01T00:00:00.000Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_lone_surrogates_become_encodable() -> None:
    letter = valid(dead_letter("bad \ud800 reason", "producer", {"k\ud800": "v\udfff"}))
    assert "\ud800" not in letter.original and "\ud800" not in letter.reason


def test_a_stage_that_knows_its_contract_keeps_only_its_fields_in_each_object() -> None:
    from callstream.producers.prepare import DROPPED_KEY, RAW_EVENT_FIELDS

    gateway_line = {
        "event_id": "e1",
        "input_tokens": "many",
        "messages": [{"role": "user", "content": "PROMPT-TEXT"}],
        "response": {"content": "ANSWER-TEXT"},
        "metadata": {"tenant": "t1", "api_key": "k"},
    }
    for original in (gateway_line, orjson.dumps(gateway_line), orjson.dumps([gateway_line, "text", [1]])):
        letter = valid(dead_letter("invalid event", "stream.validate", original, fields=RAW_EVENT_FIELDS))
        kept = orjson.loads(letter.original)
        first = kept[0] if isinstance(kept, list) else kept
        assert first == {
            "event_id": "e1",
            "input_tokens": "many",
            "metadata": {"tenant": "t1", "api_key": REDACTED},
            DROPPED_KEY: ["messages", "response"],
        }
        assert "PROMPT" not in letter.original and "ANSWER" not in letter.original
        if isinstance(kept, list):
            assert kept[1:] == ["text", "[list dropped]"]
    assert "PROMPT" in dead_letter("no contract given", "alert.apply", gateway_line)["original"]
