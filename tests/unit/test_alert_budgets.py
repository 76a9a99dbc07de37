"""callstream.budgets: the budgets file, calendar periods in a time zone, levels and the burn forecast."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callstream.budgets import (
    DEFAULT_BUDGETS_FILE,
    Budget,
    BudgetFileError,
    BudgetSettings,
    forecast_usd,
    load_budgets,
    parse_budgets,
    period_bounds,
)

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")


def ms(*args: int, tz: ZoneInfo | None = None) -> int:
    return int(datetime(*args, tzinfo=tz or UTC).timestamp() * 1000)  # type: ignore[misc]


def test_default_file_is_the_tutorials_daily_budget_in_korean_time() -> None:
    budgets = load_budgets(DEFAULT_BUDGETS_FILE)
    assert budgets.timezone == "Asia/Seoul"
    daily = budgets.by_name("daily-total")
    assert (daily.scope, daily.period, daily.amount_usd) == ("all", "day", 100.0)
    assert daily.warn_at_percent == (80.0, 90.0, 100.0)
    assert BudgetSettings().file == DEFAULT_BUDGETS_FILE


def test_settings_point_at_another_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("timezone: UTC\nbudgets:\n  - {name: x, period: month, amount_usd: 5}\n")
    monkeypatch.setenv("CALLSTREAM_BUDGETS_FILE", str(path))
    assert load_budgets().by_name("x").period == "month"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"timezone": "Mars/Olympus"}, "field timezone: unknown time zone 'Mars/Olympus'"),
        ({"budgets": [{"name": "a", "period": "week", "amount_usd": 1}]}, "budget 'a' field period"),
        ({"budgets": [{"name": "a", "period": "day", "amount_usd": 0}]}, "budget 'a' field amount_usd"),
        ({"budgets": [{"period": "day", "amount_usd": 1}]}, "budget #1 field name"),
        (
            {"budgets": [{"name": "m", "scope": "model", "period": "day", "amount_usd": 1}]},
            "budget 'm' field (budget): scope model needs a key",
        ),
        (
            {"budgets": [{"name": "m", "period": "day", "amount_usd": 1, "warn_at_percent": [90, 90]}]},
            "budget 'm' field warn_at_percent",
        ),
        (
            {"budgets": [{"name": "a", "period": "day", "amount_usd": 1}] * 2},
            "budget name 'a' is used twice",
        ),
        (
            {"budgets": [{"name": "a", "period": "day", "amount_usd": 1, "extra": 1}]},
            "budget 'a' field extra",
        ),
    ],
)
def test_errors_name_the_budget_and_the_field(document: dict, fragment: str) -> None:
    with pytest.raises(BudgetFileError) as caught:
        parse_budgets(document, "b.yaml")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("b.yaml: ")


def test_warning_level_is_the_highest_percentage_reached() -> None:
    budget = Budget(name="d", period="day", amount_usd=100, warn_at_percent=(100, 80, 90))
    assert budget.warn_at_percent == (80, 90, 100)
    assert budget.level(79.99) is None
    assert budget.level(80) == 80
    assert budget.level(95) == 90
    assert budget.level(250) == 100


def test_a_seoul_day_starts_at_15h_utc_the_day_before() -> None:
    at = ms(2026, 3, 1, 14, 59, 59)  # 23:59:59 KST on March 1st
    bounds = period_bounds("day", at, SEOUL)
    assert bounds.label == "2026-03-01"
    assert (bounds.start_ms, bounds.end_ms) == (ms(2026, 2, 28, 15), ms(2026, 3, 1, 15))
    after = period_bounds("day", at + 1000, SEOUL)  # midnight KST: the next day
    assert after.label == "2026-03-02" and after.start_ms == bounds.end_ms


def test_a_seoul_month_and_its_length() -> None:
    bounds = period_bounds("month", ms(2026, 2, 28, 15, 0, 0), SEOUL)  # March 1st 00:00 KST
    assert bounds.label == "2026-03"
    assert bounds.start_ms == ms(2026, 2, 28, 15)
    assert bounds.end_ms == ms(2026, 3, 31, 15)
    assert bounds.length_ms == 31 * 86_400_000
    december = period_bounds("month", ms(2026, 12, 31, 14), SEOUL)
    assert december.label == "2026-12" and december.end_ms == ms(2026, 12, 31, 15)


def test_days_where_clocks_change_last_23_and_25_hours() -> None:
    spring = period_bounds("day", ms(2026, 3, 8, 12, tz=NEW_YORK), NEW_YORK)
    autumn = period_bounds("day", ms(2026, 11, 1, 12, tz=NEW_YORK), NEW_YORK)
    assert spring.length_ms == 23 * 3_600_000
    assert autumn.length_ms == 25 * 3_600_000
    assert spring.start_ms == ms(2026, 3, 8, 5)  # EST midnight
    assert spring.end_ms == ms(2026, 3, 9, 4)  # EDT midnight


def test_forecast_is_linear_from_the_rate_so_far() -> None:
    bounds = period_bounds("day", ms(2026, 3, 1, 12), ZoneInfo("UTC"))
    # 30 USD by 06:00: a quarter of the day gone, so 120 USD by midnight at that rate.
    assert forecast_usd(30.0, bounds, ms(2026, 3, 1, 6)) == pytest.approx(120.0)
    assert forecast_usd(30.0, bounds, bounds.start_ms) == 30.0  # nothing elapsed: no rate yet
    assert forecast_usd(30.0, bounds, bounds.end_ms) == 30.0  # over: what was spent
    # 23-hour day: 10 USD in the first 11.5 hours projects to 20 USD, not 20.87.
    spring = period_bounds("day", ms(2026, 3, 8, 12, tz=NEW_YORK), NEW_YORK)
    half = spring.start_ms + spring.length_ms // 2
    assert forecast_usd(10.0, spring, half) == pytest.approx(20.0)
