"""Reconciliation core: each planted difference between a bill and callstream's usage is explained
exactly (which cause, how many tokens, which prices), and agreeing days agree."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from callstream.reports.bill.reconcile import BillSettings, Usage, reconcile
from callstream.reports.bill.rows import BillRow
from callstream.streams.pricing import Price, PriceCatalogue

DAY = date(2026, 11, 17)
CATALOGUE = PriceCatalogue(
    [
        Price.from_dict(
            {
                "id": "gw:gpt",
                "provider": "openai",
                "match": "gpt-4\\.1",
                "effective_from": "2025-01-01T00:00:00Z",
                "input": 2,
                "output": 8,
                "cache_read": 0.5,
            }
        ),
        Price.from_dict(
            {
                "id": "gw:claude",
                "provider": "anthropic",
                "match": "claude-sonnet-4-5",
                "effective_from": "2025-01-01T00:00:00Z",
                "input": 3,
                "output": 15,
            }
        ),
    ]
)


def usage(
    provider: str, inp: int, read: int, out: int, price_in: int, price_read: int, price_out: int
) -> Usage:
    tokens = {"input": inp, "cache_read": read, "cache_write": 0, "output": out, "reasoning": 0}
    cost = inp * price_in + read * price_read + out * price_out  # pico-$ per token
    return Usage(provider, 10, tokens, cost)


def row(
    model: str, kind: str, quantity: int | None, cost: str | None, provider: str = "openai", day: date = DAY
) -> BillRow:
    return BillRow(day, provider, model, kind, quantity, Decimal(cost) if cost else None, "USD", "usage_cost")  # type: ignore[arg-type]


GPT = usage("openai", 1_000_000, 400_000, 100_000, 2_000_000, 500_000, 8_000_000)  # $2 + $0.2 + $0.8


def test_agreeing_bill_agrees() -> None:
    rows = [
        row("gpt-4.1-2025-04-14", "input", 1_000_000, "2"),
        row("gpt-4.1-2025-04-14", "cache_read", 400_000, "0.2"),
        row("gpt-4.1-2025-04-14", "output", 100_000, "0.8"),
    ]
    result = reconcile(rows, {(DAY, "gpt-4.1"): GPT}, CATALOGUE.lookup)
    [line] = result.lines
    assert line.model == "gpt-4.1" and line.agrees and line.cost_diff == 0 and line.explanations == []


def test_wrong_price_is_named_with_the_implied_price() -> None:
    rows = [
        row("gpt-4.1", "input", 1_000_000, "3"),
        row("gpt-4.1", "cache_read", 400_000, "0.2"),
        row("gpt-4.1", "output", 100_000, "0.8"),
    ]
    result = reconcile(rows, {(DAY, "gpt-4.1"): GPT}, CATALOGUE.lookup)
    [line] = result.lines
    assert not line.agrees and line.cost_diff == Decimal(-1)
    [price] = line.explanations
    assert price.kind == "price"
    assert price.detail == {
        "token_kind": "input",
        "implied_usd_per_mtok": "3.000000",
        "in_force_usd_per_mtok": "2.000000",
        "price_id": "gw:gpt",
        "effect_usd": "-1.000000",
    }
    [suggestion] = result.suggestions
    assert (suggestion.token_kind, suggestion.implied_usd_per_mtok, suggestion.price_id) == (
        "input",
        Decimal(3),
        "gw:gpt",
    )


def test_cached_tokens_billed_as_input() -> None:
    rows = [row("gpt-4.1", "input", 1_400_000, "2.8"), row("gpt-4.1", "output", 100_000, "0.8")]
    [line] = reconcile(rows, {(DAY, "gpt-4.1"): GPT}, CATALOGUE.lookup).lines
    assert line.token_diff == {"input": -400_000, "cache_read": 400_000, "cache_write": 0, "output": 0}
    kinds = [e.kind for e in line.explanations]
    assert kinds == ["token_kind"]
    assert line.explanations[0].detail == {"side": "input", "moved": {"cache_read": 400_000}}
    assert "400,000 cache read tokens as input" in line.explanations[0].text
    assert line.cost_diff == Decimal("-0.6") and line.token_effect == Decimal("-0.6")


def test_unseen_day_is_coverage() -> None:
    other = date(2026, 11, 16)
    rows = [row("gpt-4.1", "input", 5000, "0.01", day=other)]
    [line] = reconcile(rows, {(DAY, "gpt-4.1"): GPT}, CATALOGUE.lookup).lines
    assert line.day == other and not line.agrees
    assert [e.kind for e in line.explanations] == ["coverage"]
    assert line.explanations[0].detail == {"unseen_tokens": 5000, "unseen_cost": "0.01"}


def test_alias_found_by_equal_tokens_and_by_setting() -> None:
    claude = usage("anthropic", 1000, 0, 100, 3_000_000, 3_000_000, 15_000_000)
    rows = [
        row("claude-4.5-sonnet", "input", 1000, "0.003", "anthropic"),
        row("claude-4.5-sonnet", "output", 100, "0.0015", "anthropic"),
    ]
    [line] = reconcile(rows, {(DAY, "claude-sonnet-4-5"): claude}, CATALOGUE.lookup).lines
    assert line.model == "claude-sonnet-4-5" and line.agrees
    assert [(e.kind, e.detail["found_by"]) for e in line.explanations] == [("alias", "tokens")]
    settings = BillSettings(aliases={"claude-4.5-sonnet": "claude-sonnet-4-5"})
    [line] = reconcile(rows, {(DAY, "claude-sonnet-4-5"): claude}, CATALOGUE.lookup, settings).lines
    assert line.agrees and line.explanations[0].detail["found_by"] == "setting"


def test_rounding_within_tolerance_and_unbilled_calls() -> None:
    rows = [
        row("gpt-4.1", "input", 1_000_000, "2.004"),
        row("gpt-4.1", "cache_read", 400_000, "0.2"),
        row("gpt-4.1", "output", 100_000, "0.8"),
    ]
    mini = usage("openai", 10, 0, 10, 1, 1, 1)
    lines = reconcile(rows, {(DAY, "gpt-4.1"): GPT, (DAY, "gpt-4.1-mini"): mini}, CATALOGUE.lookup).lines
    assert [(ln.model, ln.agrees) for ln in lines] == [("gpt-4.1", True), ("gpt-4.1-mini", False)]
    assert [e.kind for e in lines[0].explanations] == ["rounding"]
    assert [e.kind for e in lines[1].explanations] == ["coverage"]


def test_other_currency_compares_tokens_only() -> None:
    rows = [BillRow(DAY, "openai", "gpt-4.1", "input", 1_000_000, Decimal(9), "EUR", "usage_cost")]
    [line] = reconcile(rows, {(DAY, "gpt-4.1"): GPT}, CATALOGUE.lookup).lines
    assert line.cost_diff is None and not line.agrees
    assert line.explanations[0].kind == "currency"
