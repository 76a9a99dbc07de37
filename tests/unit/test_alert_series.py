"""alerts.series: what a series keeps of the stream's window updates, and sums over time ranges."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from callstream.alerts.rules import parse_rules
from callstream.alerts.series import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    TOTAL,
    InvalidAggregate,
    SeriesData,
    SeriesId,
    SeriesUpdate,
    WindowStats,
    retention_for,
    routing_for,
    updates_from_aggregate,
    zone_needs_minutes,
)
from callstream.budgets import parse_budgets, period_bounds
from callstream.streams.contract import WindowAggregate
from callstream.streams.windows import WindowKey, WindowState

GPT = SeriesId("model", "gpt-4.1")
T0 = int(datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)


def update(
    start_ms: int,
    size: str = "1m",
    version: int = 1,
    requests: int = 10,
    errors: int = 0,
    cost_usd: float = 0.0,
    at_ms: int | None = None,
    series: SeriesId = GPT,
    source: str = "gpt-4.1",
) -> SeriesUpdate:
    stats = WindowStats(version, requests, errors, round(cost_usd * 10**12), 0, requests * 500_000)
    return SeriesUpdate(
        series, source, size, start_ms, stats, at_ms if at_ms is not None else start_ms + 1000
    )


def test_the_newest_version_of_a_window_wins_whatever_the_order() -> None:
    data = SeriesData()
    assert data.apply(update(T0, version=2, requests=20)) is not None
    assert data.apply(update(T0, version=1, requests=10)) is None  # an older re-delivery
    assert data.apply(update(T0, version=2, requests=99)) is None  # the same version again
    assert data.recent(T0 + 30_000, 1).requests == 20
    assert data.apply(update(T0, version=3, requests=25)) is not None
    assert data.recent(T0 + 30_000, 1).requests == 25


def test_recent_sums_the_last_n_minute_windows_including_the_filling_one() -> None:
    data = SeriesData()
    for i in range(10):
        data.apply(update(T0 + i * MINUTE_MS, requests=10 + i, errors=i))
    now = T0 + 9 * MINUTE_MS + 5_000  # 5 s into the 10th minute
    totals = data.recent(now, 5)
    assert totals.requests == sum(10 + i for i in range(5, 10))
    assert totals.errors == sum(range(5, 10))
    assert totals.metric("error_rate") == pytest.approx(35 / 85)  # a ratio of sums
    assert data.recent(now + 10 * MINUTE_MS, 5).requests == 0
    assert data.recent(now + 10 * MINUTE_MS, 5).metric("error_rate") is None


def test_latency_percentiles_come_from_the_merged_sketches() -> None:
    state_a, state_b = WindowState(), WindowState()
    for latency in range(1, 101):
        state_a.sketch.add(float(latency))
    for latency in range(1001, 1101):
        state_b.sketch.add(float(latency))
    data = SeriesData()
    for i, state in enumerate((state_a, state_b)):
        stats = WindowStats(1, 100, 0, 0, 0, 0, state.sketch)
        data.apply(SeriesUpdate(GPT, "gpt-4.1", "1m", T0 + i * MINUTE_MS, stats, T0))
    p95 = data.recent(T0 + MINUTE_MS, 2).metric("latency_p95_ms")
    exact = sorted([*range(1, 101), *range(1001, 1101)])[189]  # rank floor(0.95 * 199)
    assert p95 == pytest.approx(exact, rel=0.01)


def test_activity_is_when_calls_were_last_seen_arriving_not_later_than_the_window_end() -> None:
    data = SeriesData()
    data.apply(update(T0, version=1, requests=5, at_ms=T0 + 10_000))
    data.apply(update(T0, version=2, requests=9, at_ms=T0 + 40_000))
    assert data.last_active_ms() == T0 + 40_000
    data.apply(update(T0, version=3, requests=9, at_ms=T0 + 50_000))  # no new calls: no activity
    assert data.last_active_ms() == T0 + 40_000
    data.apply(update(T0, version=4, requests=10, at_ms=T0 + 9 * MINUTE_MS))  # a late correction
    assert data.last_active_ms() == T0 + MINUTE_MS


def seoul_day_data(now_ms: int) -> tuple[SeriesData, float]:
    """Hour windows for 15:00Z..23:00Z of Feb 28 (KST March 1st, 00:00-08:59) and the UTC day
    window of March 1st; plus hours of Feb 28 before 15:00Z that belong to the Seoul day before."""
    data = SeriesData()
    expected = 0.0
    feb28 = int(datetime(2026, 2, 28, tzinfo=UTC).timestamp() * 1000)
    for hour in range(24):
        start = feb28 + hour * HOUR_MS
        data.apply(update(start, "1h", cost_usd=1.0 + hour, series=TOTAL, source="openai"))
        if hour >= 15:
            expected += 1.0 + hour
    data.apply(update(feb28, "1d", cost_usd=sum(1.0 + h for h in range(24)), series=TOTAL, source="openai"))
    march1 = feb28 + DAY_MS
    data.apply(update(march1, "1d", cost_usd=7.5, series=TOTAL, source="openai"))
    data.apply(update(march1, "1d", cost_usd=2.5, series=TOTAL, source="google"))
    expected += 10.0
    return data, expected


def test_a_seoul_day_is_tiled_from_hour_windows_and_the_utc_day_window() -> None:
    now = int(datetime(2026, 3, 1, 6, tzinfo=UTC).timestamp() * 1000)  # 15:00 KST
    data, expected = seoul_day_data(now)
    bounds = period_bounds("day", now, ZoneInfo("Asia/Seoul"))
    totals = data.period(bounds.start_ms, bounds.end_ms, now)
    assert totals.cost_usd == pytest.approx(expected)
    # The same data in UTC: the whole UTC day of March 1st only.
    utc = period_bounds("day", now, ZoneInfo("UTC"))
    assert data.period(utc.start_ms, utc.end_ms, now).cost_usd == pytest.approx(10.0)


def test_a_window_that_reaches_past_the_period_counts_only_while_the_period_is_not_over() -> None:
    data = SeriesData()
    start = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    data.apply(update(start, "1d", cost_usd=5.0, series=TOTAL, source="openai"))
    data.apply(update(start, "1h", cost_usd=5.0, series=TOTAL, source="openai"))
    seoul_end = start + 15 * HOUR_MS  # the Seoul day ends at 15:00Z
    # Before 15:00Z everything in the UTC day window so far lies in the Seoul day.
    assert data.period(start - 9 * HOUR_MS, seoul_end, start + 2 * HOUR_MS).cost_usd == pytest.approx(5.0)
    # After it, the day window may hold calls of the next Seoul day: hour windows are used instead.
    assert data.period(start - 9 * HOUR_MS, seoul_end, seoul_end + HOUR_MS).cost_usd == pytest.approx(5.0)


def test_expiry_drops_windows_past_their_retention() -> None:
    data = SeriesData()
    data.apply(update(T0))
    data.apply(update(T0, "1h"))
    gone = data.expire(T0 + MINUTE_MS + 10 * MINUTE_MS + 1, {"1m": 10 * MINUTE_MS, "1h": DAY_MS})
    assert gone == [("gpt-4.1", "1m", T0)]
    assert not data.empty


def test_routing_follows_the_rules_and_budgets() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "e",
                    "type": "threshold",
                    "metric": "error_rate",
                    "threshold": 0.1,
                    "group_by": "model",
                },
                {"name": "t", "type": "threshold", "metric": "requests", "threshold": 1},
                {"name": "f", "type": "flatline", "group_by": "service"},
                {"name": "b", "type": "budget"},
            ]
        }
    )
    budgets = parse_budgets(
        {
            "timezone": "Asia/Kolkata",
            "budgets": [
                {"name": "all", "period": "day", "amount_usd": 1},
                {"name": "u", "scope": "user", "key": "*", "period": "month", "amount_usd": 1},
            ],
        }
    )
    routing = routing_for(rules, budgets)
    assert routing.targets("model", "gpt-4.1", "1m") == [GPT]
    assert routing.targets("model", "gpt-4.1", "1h") == []
    assert routing.targets("provider", "openai", "1m") == [TOTAL]
    assert routing.targets("provider", "openai", "1d") == [TOTAL]
    assert routing.targets("service", "bot", "1h") == [SeriesId("service", "bot")]
    assert routing.targets("user", "u1", "1d") == [SeriesId("user", "u1")]
    assert routing.targets("model_family", "gpt", "1m") == []
    assert zone_needs_minutes(ZoneInfo("Asia/Kolkata")) and not zone_needs_minutes(ZoneInfo("Asia/Seoul"))
    assert routing.targets("user", "u1", "1m") == [SeriesId("user", "u1")]  # +5:30: day edges in minutes
    retention = retention_for(rules, budgets)
    assert retention["1h"] >= 32 * DAY_MS  # a month budget
    assert retention["1m"] >= DAY_MS


def real_aggregate(errors: int = 3, requests: int = 40) -> dict:
    """An aggregate exactly as the stream publishes it (WindowState.to_aggregate)."""
    state = WindowState(provider="openai", model_family="gpt-4.1")
    for i in range(requests):
        state.add_event(
            {
                "error_category": "server_error" if i < errors else None,
                "input_tokens": 100,
                "output_tokens": 10,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "reasoning_output_tokens": 0,
                "priced": True,
                "cost_pico": 880_000_000,
                "duration_ms": 100.0 + i,
            }
        )
    doc = state.to_aggregate(WindowKey("model", "gpt-4.1", "1m", T0), 7)
    WindowAggregate.model_validate(doc)
    return orjson.loads(orjson.dumps(doc, option=orjson.OPT_UTC_Z))


def test_an_aggregate_update_becomes_the_updates_of_the_series_that_need_it() -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "name": "p",
                    "type": "threshold",
                    "metric": "latency_p95_ms",
                    "threshold": 1,
                    "group_by": "model",
                }
            ]
        }
    )
    routing = routing_for(rules, parse_budgets({}))
    (got,) = updates_from_aggregate(real_aggregate(), T0 + 5000, routing)
    assert (got.series, got.source_key, got.size, got.start_ms, got.at_ms) == (
        GPT,
        "gpt-4.1",
        "1m",
        T0,
        T0 + 5000,
    )
    assert (got.stats.version, got.stats.requests, got.stats.errors) == (7, 40, 3)
    assert got.stats.cost_pico == 40 * 880_000_000
    assert got.stats.latency_sum_us == sum(round((100.0 + i) * 1000) for i in range(40))
    assert got.stats.sketch is not None and got.stats.sketch.count == 40
    assert SeriesUpdate.from_bytes(got.to_bytes()).to_bytes() == got.to_bytes()
    assert updates_from_aggregate(dict(real_aggregate(), dimension="provider"), T0, routing) == []


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"dimension": "model"},
        {**real_aggregate(), "window_start": 12},
        {**real_aggregate(), "requests": "many"},
        {**real_aggregate(), "window_size": "5m"},
    ],
)
def test_unreadable_aggregates_are_refused_with_a_reason(broken: object) -> None:
    rules = parse_rules(
        {
            "rules": [
                {"name": "r", "type": "threshold", "metric": "errors", "threshold": 1, "group_by": "model"}
            ]
        }
    )
    with pytest.raises(InvalidAggregate):
        updates_from_aggregate(broken, T0, routing_for(rules, parse_budgets({})))
