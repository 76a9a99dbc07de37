"""Savings and caching against hand computations on a small data set (prices in $/Mtok;
1 $/Mtok = 10^6 pico-dollars per token)."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from callstream.reports.savings import UsageSlice, caching, price_is_uniform, simulate
from callstream.reports.timeplan import Window, refine, window_sizes_used
from callstream.streams.pricing import Price, PriceCatalogue

PICO = 10**12


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def price(pid: str, match: str, start: str, **per_mtok: float) -> Price:
    return Price.from_dict(
        {"id": pid, "provider": "test", "match": match, "effective_from": start, **per_mtok}
    )


CATALOGUE = PriceCatalogue(
    [
        price("big", "big", "2026-01-01T00:00:00Z", input=9, output=9),
        # cheap: cache reads at a tenth of input; reasoning priced as output by default
        price("cheap@1", "cheap", "2026-05-04T00:00:00Z", input=1, output=4, cache_read=0.1),
        price("cheap@2", "cheap", "2026-05-05T12:00:00Z", input=2, output=4, cache_read=0.1),
        price(
            "cached", "cached", "2026-01-01T00:00:00Z", input=3, output=15, cache_read=0.3, cache_write=3.75
        ),
    ]
)


def piece(start: str, size: str = "1d", **kw: int) -> UsageSlice:
    values = dict(
        requests=10,
        unpriced=0,
        input_tokens=1_000_000,
        output_tokens=200_000,
        cache_read_input_tokens=400_000,
        cache_creation_input_tokens=0,
        reasoning_output_tokens=50_000,
        cost_pico=9 * PICO,
    )
    values.update(kw)
    return UsageSlice("big", Window(ms(start), size), **values)


def day_of(window: Window) -> str:
    return datetime.fromtimestamp(window.start_ms / 1000, UTC).strftime("%Y-%m-%d")


def test_savings_equal_the_hand_computation() -> None:
    # Target cost of the tokens at cheap@1: uncached input 600k x $1 + cache-read 400k x $0.10
    # + plain output 150k x $4 + reasoning 50k x $4 = 0.60 + 0.04 + 0.60 + 0.20 = $1.44.
    # A quarter moves: simulated = 9 + 0.25 x (1.44 - 9) = $7.11, savings $1.89.
    result = simulate([piece("2026-05-04T00:00:00+00:00")], day_of, "cheap", Fraction(1, 4), CATALOGUE.lookup)
    (day,) = result.days
    assert day.current_pico == 9 * PICO
    assert day.simulated_pico == 7_110_000_000_000
    assert day.savings_pico == 1_890_000_000_000
    assert day.moved_requests == 2.5
    assert result.total.savings_pico == 1_890_000_000_000
    assert result.target_prices == ["cheap@1"]
    assert result.excluded == []


def test_each_window_uses_the_target_price_in_force_then() -> None:
    # From 2026-05-05T12:00 input costs $2: the same tokens cost 0.6 more ($2.04).
    slices = [piece("2026-05-04T00:00:00+00:00"), piece("2026-05-05T12:00:00+00:00", "1h")]
    result = simulate(slices, day_of, "cheap", Fraction(1), CATALOGUE.lookup)
    assert [d.simulated_pico for d in result.days] == [1_440_000_000_000, 2_040_000_000_000]
    assert result.total.savings_pico == 18 * PICO - 3_480_000_000_000
    assert result.target_prices == ["cheap@1", "cheap@2"]


def test_windows_with_a_price_change_are_split_until_each_has_one_price() -> None:
    uniform = price_is_uniform(["big", "cheap"], CATALOGUE.lookup)
    day = Window(ms("2026-05-05T00:00:00+00:00"), "1d")
    assert not uniform(day)
    pieces = refine([day], uniform)
    assert window_sizes_used(pieces) == {"1h": 24}  # the change is on the hour
    assert all(uniform(w) for w in pieces)


def test_unpriced_source_and_unpriced_target_are_left_out_and_said() -> None:
    slices = [
        piece("2026-05-03T00:00:00+00:00"),  # cheap has no price before May 4
        piece("2026-05-04T00:00:00+00:00", unpriced=10, cost_pico=0),
        piece("2026-05-04T00:00:00+00:00", "1h", requests=0),
    ]
    result = simulate(slices, day_of, "cheap", Fraction(1, 2), CATALOGUE.lookup)
    assert result.days == []
    assert result.total.savings_pico == 0
    assert sorted(result.excluded) == [
        "2026-05-03: cheap had no price (10 calls)",
        "2026-05-04: calls of big had no price, so no current cost (10 calls)",
    ]


def test_caching_saved_and_what_if() -> None:
    # cached: input $3, cache read $0.30, cache write $3.75 per Mtok.
    # Saved now: 500k x (3 - 0.3) - 100k x (3.75 - 3) = 1.35 - 0.075 = $1.275.
    # At an 80% hit rate: 0.8 x 1M x (3 - 0.3) = $2.16.
    slices = [
        UsageSlice(
            "cached",
            Window(ms("2026-05-04T00:00:00+00:00"), "1d"),
            5,
            0,
            1_000_000,
            0,
            500_000,
            100_000,
            0,
            0,
        ),
        UsageSlice("nobody", Window(ms("2026-05-04T00:00:00+00:00"), "1d"), 1, 1, 10, 0, 0, 0, 0, 0),
        UsageSlice("big", Window(ms("2026-05-04T00:00:00+00:00"), "1d"), 1, 0, 1000, 0, 500, 0, 0, 9000),
    ]
    view = caching(slices, Fraction(4, 5), CATALOGUE.lookup)
    rows = {r.model: r for r in view.rows}
    assert rows["cached"].saved_pico == 1_275_000_000_000
    assert rows["cached"].saved_at_rate_pico == 2_160_000_000_000
    assert rows["cached"].hit_rate == pytest.approx(0.5)
    assert rows["big"].saved_pico == 0 and rows["big"].hit_rate == pytest.approx(0.5)
    assert not rows["nobody"].priced
    assert view.total_saved_usd == pytest.approx(1.275)
    assert any("big" in note and "saves nothing" in note for note in view.notes)
    assert any("nobody" in note for note in view.notes)
