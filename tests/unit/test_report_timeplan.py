"""Time ranges, local buckets and the windows that cover them: hand-computed expectations."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from callstream.errors import ConfigurationError
from callstream.reports.build import over_time_bucket
from callstream.reports.timeplan import (
    HOUR_MS,
    MINUTE_MS,
    TimeRange,
    Window,
    buckets,
    cover,
    refine,
    resolve_range,
    runs,
    window_sizes_used,
    windows_of,
)

DAY = 86_400_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_cover_uses_the_coarsest_whole_windows() -> None:
    start = ms("2026-05-03T23:58:00+00:00")
    end = ms("2026-05-06T01:02:00+00:00")
    assert [(w.size, w.start_ms) for w in cover(start, end)] == [
        ("1m", start),
        ("1m", start + MINUTE_MS),
        ("1d", ms("2026-05-04T00:00:00+00:00")),
        ("1d", ms("2026-05-05T00:00:00+00:00")),
        ("1h", ms("2026-05-06T00:00:00+00:00")),
        ("1m", ms("2026-05-06T01:00:00+00:00")),
        ("1m", ms("2026-05-06T01:01:00+00:00")),
    ]
    assert cover(start, start) == []
    with pytest.raises(ValueError):
        cover(start + 1, end)


def test_a_utc_day_is_one_daily_window() -> None:
    span = TimeRange(ms("2026-05-04T00:00:00+00:00"), ms("2026-05-06T00:00:00+00:00"), "UTC")
    days = buckets(span, "day")
    assert [b.label for b in days] == ["2026-05-04", "2026-05-05"]
    assert window_sizes_used(windows_of(days)) == {"1d": 2}


def test_a_seoul_day_is_24_hourly_windows() -> None:
    span = TimeRange(ms("2026-05-04T00:00:00+09:00"), ms("2026-05-05T00:00:00+09:00"), "Asia/Seoul")
    (day,) = buckets(span, "day")
    assert day.label == "2026-05-04"
    assert (day.start_ms, day.end_ms) == (ms("2026-05-03T15:00:00+00:00"), ms("2026-05-04T15:00:00+00:00"))
    assert window_sizes_used(day.windows) == {"1h": 24}


@pytest.mark.parametrize(
    ("zone", "offset", "minutes_before", "minutes_after"),
    [("Asia/Kolkata", "+05:30", 30, 30), ("Asia/Kathmandu", "+05:45", 45, 15)],
)
def test_half_and_quarter_hour_zones_need_minutes_at_the_edges(
    zone: str, offset: str, minutes_before: int, minutes_after: int
) -> None:
    span = TimeRange(ms(f"2026-05-04T00:00:00{offset}"), ms(f"2026-05-05T00:00:00{offset}"), zone)
    (day,) = buckets(span, "day")
    sizes = [w.size for w in day.windows]
    assert sizes == ["1m"] * minutes_before + ["1h"] * 23 + ["1m"] * minutes_after
    assert sum(w.end_ms - w.start_ms for w in day.windows) == DAY
    hours = buckets(span, "hour")
    assert len(hours) == 24
    assert all(window_sizes_used(h.windows) == {"1m": 60} for h in hours)


def test_a_daylight_saving_day_has_23_local_hours() -> None:
    span = TimeRange(ms("2026-03-08T00:00:00-05:00"), ms("2026-03-09T00:00:00-04:00"), "America/New_York")
    (day,) = buckets(span, "day")
    assert day.end_ms - day.start_ms == 23 * HOUR_MS
    hours = buckets(span, "hour")
    assert len(hours) == 23
    assert hours[2].label == "2026-03-08T03:00-04:00"  # 02:00 does not exist that day


def test_buckets_are_contiguous_and_cover_the_range_once() -> None:
    span = TimeRange(ms("2026-05-01T07:13:00+00:00"), ms("2026-05-04T19:41:00+00:00"), "Asia/Kolkata")
    for by in ("day", "hour", "range"):
        plan = buckets(span, by)  # type: ignore[arg-type]
        assert plan[0].start_ms == span.start_ms and plan[-1].end_ms == span.end_ms
        for a, b in itertools.pairwise(plan):
            assert a.end_ms == b.start_ms
        windows = windows_of(plan)
        assert len(set(windows)) == len(windows)
        assert sum(w.end_ms - w.start_ms for w in windows) == span.end_ms - span.start_ms


def test_empty_range_has_no_buckets() -> None:
    span = TimeRange(ms("2026-05-04T00:00:00+00:00"), ms("2026-05-04T00:00:00+00:00"))
    assert span.empty and buckets(span, "day") == []


def test_resolve_range() -> None:
    now = ms("2026-05-08T10:20:30+00:00")
    span = resolve_range(None, None, "7d", "UTC", now)
    assert (span.start_ms, span.end_ms) == (ms("2026-05-01T10:20:00+00:00"), ms("2026-05-08T10:20:00+00:00"))
    span = resolve_range("2026-05-01", "2026-05-03T12:00", None, "Asia/Seoul", now)
    assert span.start_ms == ms("2026-05-01T00:00:00+09:00")
    assert span.end_ms == ms("2026-05-03T12:00:00+09:00")
    assert resolve_range("2026-05-01T00:00:00Z", None, None, "Asia/Seoul", now).start_ms == ms(
        "2026-05-01T00:00:00+00:00"
    )
    for bad in [
        ("2026-05-01", None, "7d", "UTC"),
        (None, None, "7x", "UTC"),
        (None, None, "7d", "Mars/Base"),
    ]:
        with pytest.raises(ConfigurationError):
            resolve_range(*bad, now)
    with pytest.raises(ConfigurationError):
        resolve_range("2026-05-09", None, None, "UTC", now)


def test_runs_merge_contiguous_windows_per_size() -> None:
    h = HOUR_MS
    windows = [Window(0, "1h"), Window(h, "1h"), Window(3 * h, "1h"), Window(5 * MINUTE_MS, "1m")]
    assert runs(windows) == {"1m": [(5 * MINUTE_MS, 6 * MINUTE_MS)], "1h": [(0, 2 * h), (3 * h, 4 * h)]}


def test_refine_splits_only_windows_with_a_change_down_to_minutes() -> None:
    change = ms("2026-05-04T13:30:00+00:00")
    day = Window(ms("2026-05-04T00:00:00+00:00"), "1d")
    pieces = refine([day], lambda w: not (w.start_ms < change <= w.end_ms - 1))
    assert window_sizes_used(pieces) == {"1h": 23, "1m": 60}
    assert Window(change, "1m") in pieces
    assert sum(w.end_ms - w.start_ms for w in pieces) == DAY
    assert datetime.fromtimestamp(min(pieces).start_ms / 1000, UTC).hour == 0


def test_minute_buckets_for_short_ranges() -> None:
    span = TimeRange(ms("2026-05-04T10:58:00+05:30"), ms("2026-05-04T11:03:00+05:30"), "Asia/Kolkata")
    minutes = buckets(span, "minute")
    assert [b.label for b in minutes][:3] == [
        "2026-05-04T10:58+05:30",
        "2026-05-04T10:59+05:30",
        "2026-05-04T11:00+05:30",
    ]
    assert window_sizes_used(windows_of(minutes)) == {"1m": 5}
    assert [over_time_bucket(h * HOUR_MS) for h in (1, 3, 71, 72)] == ["minute", "hour", "hour", "day"]
