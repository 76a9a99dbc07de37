"""alerts.evaluate: which groups a series has, and what each rule type observes in it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callstream.alerts.evaluate import Group, groups_for, observe
from callstream.alerts.rules import parse_rules
from callstream.alerts.series import (
    HOUR_MS,
    MINUTE_MS,
    TOTAL,
    SeriesData,
    SeriesId,
    SeriesUpdate,
    WindowStats,
)
from callstream.budgets import parse_budgets
from callstream.streams.sketch import LatencySketch

UTC_ZONE = ZoneInfo("UTC")
SEOUL = ZoneInfo("Asia/Seoul")
T0 = int(datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
GPT = SeriesId("model", "gpt-4.1")


def rule(**fields: object) -> Group:
    rules = parse_rules({"rules": [{"name": "r", **fields}]})
    return Group(rules.rules[0], GPT)


def minute(
    data: SeriesData, start: int, requests: int, errors: int = 0, latencies: list[float] | None = None
) -> None:
    sketch = None
    if latencies is not None:
        sketch = LatencySketch()
        for value in latencies:
            sketch.add(value)
    stats = WindowStats(1, requests, errors, 0, 0, 0, sketch)
    data.apply(SeriesUpdate(GPT, GPT.key, "1m", start, stats, start + 1000))


def test_groups_of_a_series() -> None:
    rules = parse_rules(
        {
            "rules": [
                {"name": "m", "type": "threshold", "metric": "errors", "threshold": 1, "group_by": "model"},
                {"name": "all", "type": "threshold", "metric": "errors", "threshold": 1},
                {"name": "f", "type": "flatline", "group_by": "model", "keys": ["claude-sonnet-4-5"]},
                {"name": "b", "type": "budget"},
                {"name": "d", "type": "dead_letters", "topics": ["sink"]},
                {"name": "c", "type": "consumer_stalled"},
            ]
        }
    )
    budgets = parse_budgets(
        {
            "budgets": [
                {"name": "total", "period": "day", "amount_usd": 100},
                {"name": "each-model", "scope": "model", "key": "*", "period": "day", "amount_usd": 10},
                {"name": "openai", "scope": "provider", "key": "openai", "period": "month", "amount_usd": 10},
            ]
        }
    )

    def ids(series: SeriesId) -> list[str]:
        return [g.alert_id for g in groups_for(series, rules, budgets)]

    assert ids(GPT) == ["m|model|gpt-4.1", "b|model|gpt-4.1|each-model"]
    assert ids(SeriesId("model", "claude-sonnet-4-5"))[1] == "f|model|claude-sonnet-4-5"
    assert ids(TOTAL) == ["all|all|*", "b|all|*|total"]
    assert ids(SeriesId("provider", "openai")) == ["b|provider|openai|openai"]
    assert ids(SeriesId("provider", "google")) == []
    assert ids(SeriesId("deadletters", "sink")) == ["d|deadletters|sink"]
    assert ids(SeriesId("deadletters", "stream")) == []
    assert ids(SeriesId("consumer", "stream")) == ["c|consumer|stream"]


def test_error_rate_is_a_ratio_of_sums_over_the_window_with_a_minimum_of_calls() -> None:
    group = rule(
        type="threshold",
        metric="error_rate",
        op=">",
        threshold=0.05,
        window_minutes=5,
        min_requests=50,
        group_by="model",
    )
    data = SeriesData()
    minute(data, T0, 90, 0)
    minute(data, T0 + MINUTE_MS, 15, 15)  # 0/90 then 15/15: 14.3%, not a mean of 0% and 100%
    seen = observe(group, data, T0 + MINUTE_MS + 1, UTC_ZONE)
    assert seen is not None and seen.firing
    assert seen.value == pytest.approx(15 / 105)
    thin = SeriesData()
    minute(thin, T0, 49, 49)  # every call failed, but below the minimum: not evaluated, not firing
    seen = observe(group, thin, T0 + 1, UTC_ZONE)
    assert seen is not None and not seen.firing and seen.details["evaluated"] is False
    # Five minutes later the errors have left the window.
    later = observe(group, data, T0 + 7 * MINUTE_MS, UTC_ZONE)
    assert later is not None and not later.firing


def test_slow_responses_p95_at_or_above_5000_ms() -> None:
    group = rule(
        type="threshold", metric="latency_p95_ms", op=">=", threshold=5000, window_minutes=5, group_by="model"
    )
    data = SeriesData()
    minute(data, T0, 100, latencies=[100.0] * 94 + [6000.0] * 6)
    seen = observe(group, data, T0 + 1, UTC_ZONE)
    assert seen is not None and seen.firing and seen.value == pytest.approx(6000, rel=0.01)
    calm = SeriesData()
    minute(calm, T0, 100, latencies=[100.0] * 96 + [6000.0] * 4)
    seen = observe(group, calm, T0 + 1, UTC_ZONE)
    assert seen is not None and not seen.firing


def test_spike_against_the_trailing_hour() -> None:
    group = rule(
        type="spike",
        metric="latency_p95_ms",
        factor=3,
        window_minutes=5,
        baseline_minutes=60,
        min_requests=50,
        group_by="model",
    )
    data = SeriesData()
    start = T0 - 65 * MINUTE_MS
    for i in range(60):
        minute(data, start + i * MINUTE_MS, 10, latencies=[1000.0] * 10)
    for i in range(60, 65):
        minute(data, start + i * MINUTE_MS, 10, latencies=[3100.0] * 10)
    now = start + 64 * MINUTE_MS + 1
    seen = observe(group, data, now, UTC_ZONE)
    assert seen is not None and seen.firing
    assert seen.threshold == pytest.approx(3 * 1000, rel=0.01)
    assert seen.details["baseline_requests"] == 600 and seen.details["requests"] == 50
    data2 = SeriesData()
    for i in range(65):
        minute(data2, start + i * MINUTE_MS, 10, latencies=[2900.0 if i >= 60 else 1000.0] * 10)
    seen = observe(group, data2, now, UTC_ZONE)
    assert seen is not None and not seen.firing  # 2.9x


def spend(data: SeriesData, start_ms: int, size: str, usd: float, provider: str = "openai") -> None:
    stats = WindowStats(1, 1, 0, round(usd * 10**12))
    data.apply(SeriesUpdate(TOTAL, provider, size, start_ms, stats, start_ms))


def test_daily_budget_levels_in_korean_time() -> None:
    budgets = parse_budgets(
        {"timezone": "Asia/Seoul", "budgets": [{"name": "d", "period": "day", "amount_usd": 100}]}
    )
    group = Group(
        parse_rules({"rules": [{"name": "b", "type": "budget"}]}).rules[0], TOTAL, budgets.budgets[0]
    )
    data = SeriesData()
    day_start = int(datetime(2026, 3, 1, 15, tzinfo=UTC).timestamp() * 1000)  # March 2nd 00:00 KST
    spend(data, day_start - HOUR_MS, "1h", 500.0)  # 23:00 KST the day before: not today's
    spend(data, day_start, "1h", 85.0)
    now = day_start + 2 * HOUR_MS
    seen = observe(group, data, now, SEOUL)
    assert seen is not None and seen.firing and seen.level == 80 and seen.value == pytest.approx(85.0)
    assert seen.details["period"] == "2026-03-02"
    spend(data, day_start + HOUR_MS, "1h", 10.0)
    seen = observe(group, data, now, SEOUL)
    assert seen is not None and seen.level == 90
    # At midnight KST a new day starts from nothing: the alert clears.
    seen = observe(group, data, day_start + 24 * HOUR_MS, SEOUL)
    assert seen is not None and not seen.firing and seen.value == 0


def linear_spend_run(budget_usd: float, rate_usd_per_h: list[tuple[int, float]]) -> list[tuple[int, bool]]:
    """Evaluate a forecast every minute of a UTC day while spend accrues per minute at the given
    hourly rates ((from hour, rate) steps); returns (minute of day, firing) per evaluation."""
    budgets = parse_budgets(
        {"timezone": "UTC", "budgets": [{"name": "d", "period": "day", "amount_usd": budget_usd}]}
    )
    forecast = parse_rules(
        {"rules": [{"name": "f", "type": "budget_forecast", "min_elapsed_minutes": 60}]}
    ).rules[0]
    group = Group(forecast, TOTAL, budgets.budgets[0])
    day = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    data = SeriesData()
    out = []
    for m in range(24 * 60):
        rate = [r for start_h, r in rate_usd_per_h if start_h * 60 <= m][-1]
        spend(data, day + m * MINUTE_MS, "1m", rate / 60)
        seen = observe(group, data, day + (m + 1) * MINUTE_MS, UTC_ZONE)
        assert seen is not None
        out.append((m + 1, seen.firing))
    return out


def test_forecast_fires_when_linear_spend_first_projects_past_the_budget() -> None:
    # 3 USD/h for 8 hours, then 9 USD/h; budget 100 USD/day.
    # Ground truth by hand: after t hours (t > 8) spend is 24 + 9 (t - 8); projected = spend * 24 / t.
    # (24 + 9t - 72) * 24 / t > 100  <=>  216 t - 1152 > 100 t  <=>  t > 9.931 h: minute 596.
    run = linear_spend_run(100.0, [(0, 3.0), (8, 9.0)])
    first = next(m for m, firing in run if firing)
    assert first == 596
    assert not any(firing for m, firing in run if m < first)


def test_forecast_waits_for_the_minimum_elapsed_time() -> None:
    run = linear_spend_run(10.0, [(0, 50.0)])  # over budget from the first minute
    assert next(m for m, firing in run if firing) == 60


def samples(data: SeriesData, values: list[tuple[int, dict]]) -> None:
    for at, value in values:
        data.add_sample(at, value)


def test_dead_letters_count_the_topic_end_offsets_moved_within_the_window() -> None:
    group = Group(
        parse_rules(
            {"rules": [{"name": "d", "type": "dead_letters", "threshold": 3, "window_minutes": 5}]}
        ).rules[0],
        SeriesId("deadletters", "stream"),
    )
    data = SeriesData()
    samples(data, [(T0 + i * 15_000, {"end": 100 + (i // 10)}) for i in range(40)])  # +1 every 150 s
    seen = observe(group, data, T0 + 39 * 15_000, UTC_ZONE)
    assert seen is not None and seen.value == 2 and not seen.firing  # 5 min = 2 increments
    samples(data, [(T0 + 40 * 15_000, {"end": 110})])
    seen = observe(group, data, T0 + 40 * 15_000, UTC_ZONE)
    assert seen is not None and seen.value == 110 - 102 and seen.firing
    assert observe(group, SeriesData(), T0, UTC_ZONE) is None  # nothing sampled yet: no opinion


def test_flatline_after_n_minutes_without_calls() -> None:
    group = rule(type="flatline", group_by="model", minutes=15)
    data = SeriesData()
    assert observe(group, data, T0, UTC_ZONE) is None  # never seen: nothing to say
    minute(data, T0, 5)  # active at T0 + 1 s
    seen = observe(group, data, T0 + 1000 + 14 * MINUTE_MS, UTC_ZONE)
    assert seen is not None and not seen.firing
    seen = observe(group, data, T0 + 1000 + 15 * MINUTE_MS, UTC_ZONE)
    assert seen is not None and seen.firing


def test_stalled_consumer_lag_growing_and_nothing_committed() -> None:
    group = Group(
        parse_rules({"rules": [{"name": "c", "type": "consumer_stalled", "minutes": 5}]}).rules[0],
        SeriesId("consumer", "stream"),
    )

    def sample(lag: int, committed: int) -> dict:
        return {
            "group": "g",
            "lag": lag,
            "committed": committed,
            "partitions": {"raw:0": [committed, committed + lag]},
        }

    data = SeriesData()
    samples(data, [(T0, sample(10, 500))])
    assert observe(group, data, T0 + 60_000, UTC_ZONE) is None  # not watched for 5 minutes yet
    samples(data, [(T0 + 5 * MINUTE_MS, sample(400, 500))])
    seen = observe(group, data, T0 + 5 * MINUTE_MS, UTC_ZONE)
    assert seen is not None and seen.firing and seen.details["stuck_partitions"] == ["raw:0"]
    busy = SeriesData()
    samples(busy, [(T0, sample(10, 500)), (T0 + 5 * MINUTE_MS, sample(400, 900))])
    seen = observe(group, busy, T0 + 5 * MINUTE_MS, UTC_ZONE)
    assert seen is not None and not seen.firing  # lagging but committing: slow, not stalled
    idle = SeriesData()
    samples(idle, [(T0, sample(0, 500)), (T0 + 5 * MINUTE_MS, sample(0, 500))])
    seen = observe(group, idle, T0 + 5 * MINUTE_MS, UTC_ZONE)
    assert seen is not None and not seen.firing  # nothing to do is not stalled


def test_days_in_a_zone_with_clock_changes() -> None:
    new_york = ZoneInfo("America/New_York")
    budgets = parse_budgets(
        {"timezone": "America/New_York", "budgets": [{"name": "d", "period": "day", "amount_usd": 10}]}
    )
    group = Group(
        parse_rules({"rules": [{"name": "b", "type": "budget"}]}).rules[0], TOTAL, budgets.budgets[0]
    )
    midnight = datetime(2026, 3, 8, tzinfo=new_york)  # a 23-hour day
    data = SeriesData()
    start = int(midnight.timestamp() * 1000)
    spend(data, start - HOUR_MS, "1h", 50.0)  # the day before
    for h in range(23):
        spend(data, start + h * HOUR_MS, "1h", 0.25)
    end = int((midnight + timedelta(days=1)).timestamp() * 1000)
    assert end - start == 23 * HOUR_MS
    seen = observe(group, data, end - 1, new_york)
    assert seen is not None and seen.value == pytest.approx(23 * 0.25) and seen.level is None
