"""The report's arithmetic over window aggregates, against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callstream.reports import figures
from callstream.reports.timeplan import TimeRange, buckets
from callstream.streams.contract import WINDOW_SIZES_MS, WindowAggregate
from callstream.streams.sketch import RELATIVE_ACCURACY, LatencySketch

PICO = 10**12


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def aggregate(
    key: str,
    start: str,
    latencies: list[float],
    cost_pico: int,
    *,
    size: str = "1h",
    errors: dict[str, int] | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read: int = 0,
    unpriced: int = 0,
    provider: str = "openai",
) -> dict[str, Any]:
    """A stored aggregate document, written out by hand (sketch filled from the latencies)."""
    sketch = LatencySketch()
    for value in latencies:
        sketch.add(value)
    errors = errors or {}
    n = len(latencies)
    begin = datetime.fromisoformat(start)
    doc = {
        "doc_id": f"model|{key}|{size}|{int(begin.timestamp() * 1000)}",
        "version": 1,
        "dimension": "model",
        "key": key,
        "provider": provider,
        "model_family": key,
        "window_size": size,
        "window_start": begin.astimezone(UTC).isoformat(),
        "window_end": datetime.fromtimestamp(
            begin.timestamp() + WINDOW_SIZES_MS[size] / 1000, UTC
        ).isoformat(),
        "requests": n,
        "successes": n - sum(errors.values()),
        "errors": sum(errors.values()),
        "error_rate": sum(errors.values()) / n,
        "errors_by_type": errors,
        "tokens": {
            "input": input_tokens,
            "output": output_tokens,
            "cache_read_input": cache_read,
            "cache_creation_input": 0,
            "reasoning_output": 0,
            "total": input_tokens + output_tokens,
        },
        "cost_usd": cost_pico / PICO,
        "unpriced_requests": unpriced,
        "latency_ms": {
            "min": min(latencies),
            "max": max(latencies),
            "mean": sum(latencies) / n,
            "p50": sketch.quantile(0.5),
            "p90": sketch.quantile(0.9),
            "p95": sketch.quantile(0.95),
            "p99": sketch.quantile(0.99),
        },
        "late_events": 0,
        "latency_sketch": sketch.to_wire(),
    }
    WindowAggregate.model_validate(doc)  # the shape the sink stores
    return doc


def near(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= RELATIVE_ACCURACY * want


def docs() -> list[figures.AggregateDoc]:
    raw = [
        # gpt: two hours. Per-window p95s are 120 and 1000; over both windows the p95 is 130.
        aggregate(
            "gpt",
            "2026-05-04T10:00:00+00:00",
            [100, 110, 120, 130],
            3 * 10**11,
            errors={"rate_limit_exceeded": 1},
            input_tokens=3000,
            output_tokens=1000,
        ),
        aggregate("gpt", "2026-05-04T11:00:00+00:00", [1000], 10**11, input_tokens=500, output_tokens=500),
        aggregate(
            "claude",
            "2026-05-04T11:00:00+00:00",
            [400, 600],
            6 * 10**11,
            errors={"timeout": 1, "rate_limit_exceeded": 0},
            input_tokens=1000,
            output_tokens=1000,
            provider="anthropic",
        ),
        aggregate(
            "acme", "2026-05-04T16:00:00+00:00", [50], 0, unpriced=1, input_tokens=10, output_tokens=10
        ),
    ]
    return [figures.parse_aggregate(d) for d in raw]


def test_costs_are_summed_in_pico_dollars_not_floats() -> None:
    parts = [figures.usd_to_pico(0.1)] * 3
    assert sum(parts) == 3 * 10**11  # 0.1 + 0.1 + 0.1 == 0.30000000000000004 in floats
    assert figures.usd_to_pico(1234.567890123) == 1234567890123000


def test_merged_percentiles_are_not_the_stored_ones() -> None:
    states = figures.by_key(docs())
    gpt = figures.latency_of(states["gpt"])
    # 5 latencies 100, 110, 120, 130, 1000: rank floor(0.95 * 4) = 3 -> 130
    assert near(gpt.p95, 130)
    assert near(gpt.p50, 120)
    assert near(gpt.p99, 130)
    assert gpt.mean == pytest.approx((100 + 110 + 120 + 130 + 1000) / 5)
    assert (gpt.min, gpt.max) == (100, 1000)


def test_group_rows_with_shares_and_cost_per_1k_tokens() -> None:
    all_docs = docs()
    total = figures.total_state(all_docs)
    assert total.cost_pico == 10 * 10**11
    rows = {r.key: r for r in figures.group_rows(figures.by_key(all_docs), total.cost_pico)}
    assert [r.key for r in figures.group_rows(figures.by_key(all_docs), total.cost_pico)] == [
        "claude",
        "gpt",
        "acme",
    ]
    gpt = rows["gpt"]
    assert (gpt.requests, gpt.errors, gpt.successes) == (5, 1, 4)
    assert gpt.error_rate == pytest.approx(0.2)
    assert gpt.cost_pico == 4 * 10**11 and gpt.cost_usd == pytest.approx(0.4)
    assert gpt.share_of_spend == pytest.approx(0.4)
    assert gpt.cost_per_1k_tokens_usd == pytest.approx(0.4 / 5000 * 1000)  # $0.08 per 1k tokens
    assert gpt.tokens.total == 5000
    assert rows["claude"].share_of_spend == pytest.approx(0.6)
    acme = rows["acme"]
    assert acme.cost_per_1k_tokens_usd is None and acme.unpriced_requests == 1 and acme.share_of_spend == 0


def test_days_in_seoul_gather_the_hours_of_their_local_day() -> None:
    span = TimeRange(ms("2026-05-04T00:00:00+09:00"), ms("2026-05-06T00:00:00+09:00"), "Asia/Seoul")
    per_day = figures.by_bucket(docs(), buckets(span, "day"))
    # 10:00 and 11:00 UTC are 19:00 and 20:00 on May 4 in Seoul; 16:00 UTC is 01:00 on May 5.
    assert {day: s.requests for day, s in per_day.items()} == {"2026-05-04": 7, "2026-05-05": 1}


def test_over_time_points_per_bucket_and_model() -> None:
    span = TimeRange(ms("2026-05-04T10:00:00+00:00"), ms("2026-05-04T12:00:00+00:00"))
    points = figures.over_time(docs(), buckets(span, "hour"))
    assert [(p.bucket, p.key, p.requests, p.cost_pico) for p in points] == [
        ("2026-05-04T10:00+00:00", "gpt", 4, 3 * 10**11),
        ("2026-05-04T11:00+00:00", "claude", 2, 6 * 10**11),
        ("2026-05-04T11:00+00:00", "gpt", 1, 10**11),
    ]


def test_patterns_by_local_hour_and_weekday() -> None:
    span = TimeRange(ms("2026-05-04T00:00:00+09:00"), ms("2026-05-06T00:00:00+09:00"), "Asia/Seoul")
    result = figures.patterns(docs(), buckets(span, "hour"), span)
    by_hour = {r.slot: r for r in result.hour_of_day}
    assert len(by_hour) == 24 and all(r.occurrences == 2 for r in by_hour.values())
    assert by_hour["19"].requests == 4 and by_hour["20"].requests == 3 and by_hour["01"].requests == 1
    assert by_hour["19"].requests_per_occurrence == 2.0
    # 20:00 in Seoul holds 400, 600 (claude) and 1000 (gpt): rank floor(0.95 * 2) = 1 -> 600
    assert near(by_hour["20"].latency_p95_ms, 600)
    by_day = {r.slot: r for r in result.weekday}
    # 2026-05-04 is a Monday
    assert by_day["Mon"].requests == 7 and by_day["Tue"].requests == 1
    assert by_day["Mon"].occurrences == 1 and by_day["Mon"].cost_pico == 10 * 10**11


def test_select_keeps_only_planned_windows() -> None:
    span = TimeRange(ms("2026-05-04T11:00:00+00:00"), ms("2026-05-04T12:00:00+00:00"))
    kept = figures.select(docs(), [w for b in buckets(span, "range") for w in b.windows])
    assert sorted(d.key for d in kept) == ["claude", "gpt"]


def test_a_document_without_a_sketch_has_no_percentiles() -> None:
    doc = aggregate("gpt", "2026-05-04T10:00:00+00:00", [100, 200], 10)
    del doc["latency_sketch"]
    row = figures.group_row("gpt", figures.state_from_aggregate(doc), 10)
    assert row.latency_ms.p95 is None and row.percentiles == "unavailable"
    assert row.latency_ms.mean == pytest.approx(150)


def test_a_budget_row_has_spend_level_and_linear_forecast() -> None:
    """Day of Asia/Seoul 2026-05-05 = [2026-05-04T15:00Z, 2026-05-05T15:00Z); at 21:00Z a quarter
    of it has passed, so $85 spent projects to $340; 85% reached the 80% warning, not the 90%."""
    from zoneinfo import ZoneInfo

    from callstream.budgets import Budget, period_bounds

    budget = Budget(name="daily", period="day", amount_usd=100, warn_at_percent=(80, 90, 100))
    as_of = int(datetime(2026, 5, 4, 21, 0, tzinfo=UTC).timestamp() * 1000)
    bounds = period_bounds("day", as_of - 1, ZoneInfo("Asia/Seoul"))
    row = figures.budget_row(budget, None, 85 * 10**12, bounds, as_of, "Asia/Seoul")
    assert (row.period_label, row.spent_usd, row.spent_percent) == ("2026-05-05", 85.0, 85.0)
    assert (row.level_percent, row.elapsed_percent) == (80.0, 25.0)
    assert (row.forecast_usd, row.forecast_percent) == (340.0, 340.0)
    below = figures.budget_row(budget, None, 79 * 10**12, bounds, as_of, "Asia/Seoul")
    assert below.level_percent is None
    ended = figures.budget_row(budget, None, 85 * 10**12, bounds, bounds.end_ms, "Asia/Seoul")
    assert (ended.elapsed_percent, ended.forecast_usd) == (100.0, 85.0)  # a period that ended: what was spent
