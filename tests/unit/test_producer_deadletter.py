"""The one dead-letter builder: bounded, always encodable, and redacted by key and pattern."""

from __future__ import annotations

import orjson
import pytest

from callstream.producers.deadletter import (
    MAX_ORIGINAL_CHARS,
    MAX_REASON_CHARS,
    dead_letter,
    encode_dead_letter,
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
