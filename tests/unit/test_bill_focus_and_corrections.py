"""FOCUS rows validate against the FOCUS 1.0 column definitions; a price the bill implies becomes
an override file streams/pricing.py loads, re-pricing from the bill's day and not before."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from callstream.reports.bill import focus
from callstream.reports.bill.corrections import override_file
from callstream.reports.bill.reconcile import Usage, day_start_ms, reconcile
from callstream.reports.bill.rows import BillRow
from callstream.streams.pricing import PriceCatalogue, default_catalogue, load_price_file

DAY = date(2026, 11, 17)
CELLS = [
    focus.CostCell(DAY, "checkout", "gpt-4.1", "openai", 3, 4000, 32_000_000_000),
    focus.CostCell(date(2026, 11, 18), None, "claude-sonnet-4-5", "anthropic", 1, 100, 1_500_000_000),
]


def test_focus_rows_conform_to_the_column_definitions() -> None:
    rows = focus.rows(CELLS, "2026-11", "service", "acct", "Acme")
    assert [focus.validate(r) for r in rows] == [[], []]
    first = rows[0]
    assert first["BilledCost"] == first["EffectiveCost"] == first["ListCost"] == "0.032"
    assert (first["ChargePeriodStart"], first["ChargePeriodEnd"]) == (
        "2026-11-17T00:00:00Z",
        "2026-11-18T00:00:00Z",
    )
    assert (first["BillingPeriodStart"], first["BillingPeriodEnd"]) == (
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    )
    assert orjson.loads(first["Tags"] or "") == {"model": "gpt-4.1", "service": "checkout"}
    assert first["ServiceName"] == "checkout" and first["ProviderName"] == "OpenAI"
    assert orjson.loads(rows[1]["Tags"] or "") == {"model": "claude-sonnet-4-5"}  # no service: no tag


def test_focus_csv_has_every_column_in_spec_order() -> None:
    text = focus.to_csv(focus.rows(CELLS, "2026-11", "user", "acct", "Acme"))
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == focus.COLUMN_NAMES
    parsed = list(reader)
    assert [focus.validate({k: v or None for k, v in r.items()}) for r in parsed] == [[], []]
    mandatory = {c.name for c in focus.COLUMNS if c.level == "Mandatory"}
    assert len(mandatory) == 21 and mandatory <= set(focus.COLUMN_NAMES)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"BilledCost": None}, "BilledCost must not be null"),
        ({"BilledCost": "1e-3"}, "not a plain decimal"),
        ({"ChargePeriodStart": "2026-11-17 00:00"}, "not ISO 8601 UTC"),
        ({"ChargeCategory": "usage"}, "ChargeCategory 'usage' is not one of the allowed values"),
        ({"Tags": "[1]"}, "Tags must be a JSON object"),
        ({"BillingCurrency": "usd"}, "BillingCurrency is not an ISO 4217 code"),
        ({"Model": "x"}, "unknown column Model"),
        ({"ChargePeriodEnd": "2026-11-16T00:00:00Z"}, "ChargePeriodStart is not before ChargePeriodEnd"),
    ],
)
def test_validator_catches_each_kind_of_violation(change: dict[str, str | None], problem: str) -> None:
    row = focus.rows(CELLS[:1], "2026-11", "service", "acct", "Acme")[0] | change
    assert any(problem in p for p in focus.validate(row)), focus.validate(row)
    del row["ServiceName"]
    assert "missing column ServiceName" in focus.validate(row)


def test_suggested_price_becomes_an_override_that_pricing_reads(tmp_path: Path) -> None:
    gateway = default_catalogue()  # gpt-4.1 at $8 per million, every kind
    tokens = {"input": 1_000_000, "cache_read": 0, "cache_write": 0, "output": 100_000, "reasoning": 0}
    seen = Usage("openai", 5, tokens, 1_100_000 * 8_000_000)
    rows = [
        BillRow(DAY, "openai", "gpt-4.1", "input", 1_000_000, Decimal(2), "USD", "usage_cost"),
        BillRow(DAY, "openai", "gpt-4.1", "output", 100_000, Decimal("0.8"), "USD", "usage_cost"),
    ]
    result = reconcile(rows, {(DAY, "gpt-4.1"): seen}, gateway.lookup)
    [suggestion] = result.suggestions
    assert (suggestion.token_kind, suggestion.implied_usd_per_mtok) == ("input", Decimal(2))
    path = tmp_path / "bill-overrides.json"
    path.write_bytes(orjson.dumps(override_file(result.suggestions, gateway.lookup)))
    corrected = PriceCatalogue(load_price_file(path) + gateway.entries)
    after = corrected.lookup("gpt-4.1-2025-04-14", day_start_ms(DAY))
    before = corrected.lookup("gpt-4.1", day_start_ms(DAY) - 1)
    assert after is not None and after.id == "bill:gpt-4.1@2026-11-17"
    assert (after.input, after.output) == (2_000_000, 8_000_000)  # pico-$ per token
    assert before is not None and before.id == "bill:gateway:gpt-4.1@2025-01-01" and before.input == 8_000_000
    # re-reconciled with the corrected prices (what a replay re-rates history to), the day agrees
    replayed = Usage("openai", 5, tokens, 1_000_000 * 2_000_000 + 100_000 * 8_000_000)
    again = reconcile(rows, {(DAY, "gpt-4.1"): replayed}, corrected.lookup)
    assert [line.agrees for line in again.lines] == [True] and again.suggestions == []
