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
    [
        (None, 500, 500),
        (0, 500, 500),
        (-7, 500, 500),
        (1, 500, 1),
        (400, 500, 400),
        (500, 500, 500),
        (900, 500, 500),
    ],
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


@pytest.mark.parametrize(
    ("difference_ms", "span"),
    [
        (1, "1 ms"),
        (999, "999 ms"),
        (1000, "1 second"),
        (12_999, "12 seconds"),
        (MINUTE_MS - 1, "59 seconds"),
        (MINUTE_MS, "1 minute"),
        (7 * MINUTE_MS + 59_999, "7 minutes"),
        (3_600_000, "1 hour"),
        (DAY - 1, "23 hours"),
        (DAY, "1 day"),
        (3 * DAY + 5, "3 days"),
    ],
)
def test_reasons_state_the_distance_as_a_person_reads_it(difference_ms: int, span: str) -> None:
    strict = EventTimeBounds(max_age_ms=0, max_skew_ms=0)
    assert f" is {span} after the event was published " in str(
        strict.violation(PUBLISHED + difference_ms, PUBLISHED)
    )
    assert f" is {span} before the event was published " in str(
        strict.violation(PUBLISHED - difference_ms, PUBLISHED)
    )


def test_reasons_name_the_bound_and_both_times() -> None:
    ahead = BOUNDS.violation(PUBLISHED + 6 * MINUTE_MS, PUBLISHED)
    assert ahead == (
        "event_time 2026-05-28T20:32:40.000Z is 6 minutes after the event was published "
        "(2026-05-28T20:26:40.000Z); at most 5 minutes of clock skew is accepted "
        "(CALLSTREAM_STREAM_MAX_CLOCK_SKEW_MS)"
    )
    old = BOUNDS.violation(PUBLISHED - 31 * DAY, PUBLISHED)
    assert old == (
        "event_time 2026-04-27T20:26:40.000Z is 31 days before the event was published "
        "(2026-05-28T20:26:40.000Z); events older than 30 days are not accepted "
        "(CALLSTREAM_STREAM_MAX_EVENT_AGE_MS; replay older history instead)"
    )
    replay = EventTimeBounds(max_age_ms=DAY, max_skew_ms=0, range_ms=(10 * DAY, 12 * DAY))
    assert replay.violation(12 * DAY + 1, PUBLISHED) == (
        "event_time 1970-01-13T00:00:00.001Z is outside the replayed range "
        "[1970-01-11T00:00:00.000Z, 1970-01-13T00:00:00.000Z)"
    )
