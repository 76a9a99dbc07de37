"""Event time as a value: bounds relative to publication, lateness, and a partition's clock."""

from __future__ import annotations

import pytest

from callstream.streams.clock import (
    MINUTE_MS,
    EventTimeBounds,
    PartitionClock,
    is_late,
    minute_window_closes_ms,
    publication_ms,
)

DAY = 86_400_000
PUBLISHED = 1_780_000_000_000  # 2026-05-28
BOUNDS = EventTimeBounds(max_age_ms=30 * DAY, max_skew_ms=5 * MINUTE_MS)


def test_bounds_are_inclusive_at_both_edges() -> None:
    assert BOUNDS.violation(PUBLISHED + 5 * MINUTE_MS, PUBLISHED) is None
    assert BOUNDS.violation(PUBLISHED - 30 * DAY, PUBLISHED) is None
    assert BOUNDS.violation(PUBLISHED, PUBLISHED) is None


def test_too_far_in_the_future_says_by_how_much_and_which_setting() -> None:
    reason = BOUNDS.violation(PUBLISHED + 5 * MINUTE_MS + 1, PUBLISHED)
    assert reason is not None
    assert "after the event was published" in reason and "MAX_CLOCK_SKEW_MS" in reason
    year_2100 = BOUNDS.violation(4_102_444_800_000, PUBLISHED)
    assert year_2100 is not None and "2100-01-01T00:00:00.000Z" in year_2100 and "days" in year_2100


def test_too_old_says_how_old_and_points_to_replays() -> None:
    reason = BOUNDS.violation(PUBLISHED - 30 * DAY - 1, PUBLISHED)
    assert reason is not None and "MAX_EVENT_AGE_MS" in reason and "replay" in reason


def test_a_replay_accepts_exactly_its_range() -> None:
    replay = EventTimeBounds(max_age_ms=DAY, max_skew_ms=0, range_ms=(10 * DAY, 12 * DAY))
    assert replay.violation(10 * DAY, PUBLISHED) is None  # far older than max_age: the range rules
    assert replay.violation(12 * DAY - 1, PUBLISHED) is None
    assert replay.violation(12 * DAY, PUBLISHED) is not None
    assert replay.violation(10 * DAY - 1, PUBLISHED) is not None


@pytest.mark.parametrize(
    ("timestamp", "now", "expected"),
    [(None, 500, 500), (0, 500, 500), (-7, 500, 500), (400, 500, 400), (900, 500, 500)],
)
def test_publication_is_the_message_timestamp_but_never_after_the_worker_clock(
    timestamp: int | None, now: int, expected: int
) -> None:
    assert publication_ms(timestamp, now) == expected


def test_lateness_boundary() -> None:
    """Late exactly when the minute window (end + grace) closed before the stream time."""
    event = 10 * MINUTE_MS + 30_000  # in the minute [10, 11)
    grace = 20_000
    closes = minute_window_closes_ms(event, grace)
    assert closes == 11 * MINUTE_MS + grace
    assert not is_late(event, closes, grace)
    assert is_late(event, closes + 1, grace)
    assert not is_late(event, 0, grace)


def test_clock_moves_forward_only_and_snapshots() -> None:
    clock = PartitionClock()
    clock.observe(100)
    clock.observe(50)
    assert clock.stream_time_ms == 100
    clock.next_offset = 8
    again = PartitionClock.from_bytes(clock.to_bytes())
    assert (again.stream_time_ms, again.next_offset) == (100, 8)
    assert PartitionClock.from_bytes(b"1234") == PartitionClock(1234, None)  # the older form
    assert PartitionClock.from_bytes(None) == PartitionClock(0, None)
