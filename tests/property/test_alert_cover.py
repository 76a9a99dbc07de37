"""A calendar period's spend from the windows the alert worker keeps equals the spend of the calls
themselves, in any zone the tiling handles: ground truth sums the generated calls directly."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.alerts.rules import parse_rules
from callstream.alerts.series import TOTAL, SeriesData, SeriesUpdate, WindowStats, retention_for
from callstream.budgets import parse_budgets, period_bounds
from callstream.streams.contract import WINDOW_SIZES_MS

ZONES = ["UTC", "Asia/Seoul", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Adelaide"]
BASE_MS = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
DAY = 86_400_000


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, str, int, list[tuple[int, str, int]]]:
    zone = draw(st.sampled_from(ZONES))
    period = draw(st.sampled_from(["day", "month"]))
    if zone in ("Asia/Kolkata", "Australia/Adelaide"):
        period = "day"  # months of half-hour zones lose their first minutes after a day (documented)
    now = BASE_MS + draw(st.integers(0, 60 * DAY))
    calls = draw(
        st.lists(
            st.tuples(
                st.integers(0, 40 * DAY),  # how long before now
                st.sampled_from(["openai", "anthropic", "google"]),
                st.integers(1, 10**9),  # pico-dollars
            ),
            max_size=60,
        )
    )
    return zone, period, now, [(now - ago, provider, cost) for ago, provider, cost in calls]


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_period_spend_from_kept_windows_equals_the_calls_spend(
    scenario: tuple[str, str, int, list[tuple[int, str, int]]],
) -> None:
    zone_name, period, now, calls = scenario
    zone = ZoneInfo(zone_name)
    budgets = parse_budgets(
        {"timezone": zone_name, "budgets": [{"name": "b", "period": period, "amount_usd": 1}]}
    )
    retention = retention_for(parse_rules({"rules": [{"name": "b", "type": "budget"}]}), budgets)

    # What the stream publishes: every window of every size the calls fall into.
    windows: dict[tuple[str, str, int], int] = defaultdict(int)
    for at, provider, cost in calls:
        for size, length in WINDOW_SIZES_MS.items():
            windows[(provider, size, at - at % length)] += cost
    data = SeriesData()
    for version, ((provider, size, start), cost) in enumerate(sorted(windows.items()), 1):
        stats = WindowStats(version, 1, 0, cost)
        data.apply(SeriesUpdate(TOTAL, provider, size, start, stats, start))
    data.expire(now, retention)  # what the worker still holds

    bounds = period_bounds(period, now, zone)
    expected = sum(cost for at, _, cost in calls if bounds.start_ms <= at < bounds.end_ms)
    assert data.period(bounds.start_ms, bounds.end_ms, now).cost_pico == expected
