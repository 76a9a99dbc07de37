"""alerts.silences: what a silence covers, for how long, and the durations the CLI takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from callstream.alerts.silences import SilenceBook, new_silence, parse_duration

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "2w", "-1h", "0m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def record(silence: object) -> tuple[bytes, bytes]:
    return silence.id.encode(), orjson.dumps(silence.model_dump(mode="json"))  # type: ignore[attr-defined]


def test_a_silence_covers_its_rule_and_key_for_its_time() -> None:
    book = SilenceBook()
    one_model = new_silence("error-rate", timedelta(hours=2), key="gpt-4.1", now=NOW)
    every_rule = new_silence("*", timedelta(minutes=10), dimension="provider", now=NOW)
    book.apply(*record(one_model))
    book.apply(*record(every_rule))
    assert book.matches("error-rate", "model", "gpt-4.1", NOW + timedelta(hours=1))
    assert not book.matches("error-rate", "model", "gemini-2.5-flash", NOW)
    assert not book.matches("slow-p95", "model", "gpt-4.1", NOW)
    assert not book.matches("error-rate", "model", "gpt-4.1", NOW + timedelta(hours=2))  # over
    assert not book.matches("error-rate", "model", "gpt-4.1", NOW - timedelta(seconds=1))  # not yet
    assert book.matches("budget", "provider", "openai", NOW)
    assert not book.matches("budget", "all", "*", NOW)
    # Ended early: the same id with an end in the past; a tombstone forgets it.
    book.apply(*record(one_model.model_copy(update={"ends_at": NOW})))
    assert not book.matches("error-rate", "model", "gpt-4.1", NOW + timedelta(minutes=1))
    book.apply(every_rule.id.encode(), None)
    assert [s.id for s in book.all()] == [one_model.id]
