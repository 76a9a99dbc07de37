"""Provider export parsers: sample files written from each documented schema (tests/fixtures/bill),
every readable row normalised exactly, every unreadable one counted with its place and reason."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from callstream.reports.bill.formats import BillFormatError, parse
from callstream.reports.bill.rows import BillRow, ParseResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bill"
NOV17, NOV20 = date(2026, 11, 17), date(2026, 11, 20)


def load(provider: str, name: str) -> ParseResult:
    return parse(provider, (FIXTURES / name).read_bytes())


def table(result: ParseResult) -> set[tuple[object, ...]]:
    return {
        (r.day, r.provider, r.model, r.token_kind, r.quantity, r.cost, r.currency, r.dataset)
        for r in result.rows
    }


def problems(result: ParseResult) -> list[str]:
    return [str(p) for p in result.problems]


def test_openai_usage_api_json() -> None:
    result = load("openai", "openai_usage.json")
    m = "gpt-4.1-2025-04-14"
    assert table(result) == {
        (NOV20, "openai", m, "input", 101_000, None, "USD", "usage"),  # 120000-20000 + 1000 (two projects)
        (NOV20, "openai", m, "cache_read", 20_000, None, "USD", "usage"),
        (NOV20, "openai", m, "output", 30_500, None, "USD", "usage"),
    }
    assert result.unreadable == 2
    assert problems(result) == [
        "data[0].results[2]: no model (export with group_by=model)",
        "data[1].results[0]: output_tokens is -1, not a whole number of tokens >= 0",
    ]


def test_openai_costs_api_json_pages() -> None:
    result = load("openai", "openai_costs.json")
    m = "gpt-4.1-2025-04-14"
    assert table(result) == {
        (NOV20, "openai", m, "input", None, Decimal("0.8"), "USD", "cost"),
        (NOV20, "openai", m, "cache_read", None, Decimal("0.04"), "USD", "cost"),
        (NOV20, "openai", m, "output", None, Decimal("0.244"), "USD", "cost"),
    }
    assert problems(result) == [
        "[1].data[0].results[1]: line_item None is not '<model>, <kind>': export with group_by=line_item"
    ]


def test_openai_dashboard_csvs() -> None:
    usage = load("openai", "openai_usage.csv")
    assert table(usage) == {
        (NOV20, "openai", "gpt-4.1-2025-04-14", "input", 100_000, None, "USD", "usage"),
        (NOV20, "openai", "gpt-4.1-2025-04-14", "cache_read", 20_000, None, "USD", "usage"),
        (NOV20, "openai", "gpt-4.1-2025-04-14", "output", 30_000, None, "USD", "usage"),
        (NOV20, "openai", "gpt-4.1-mini", "input", 9000, None, "USD", "usage"),
        (NOV20, "openai", "gpt-4.1-mini", "cache_read", 0, None, "USD", "usage"),
        (NOV20, "openai", "gpt-4.1-mini", "output", 800, None, "USD", "usage"),
    }
    assert problems(usage) == ["line 4: input_tokens is 'many', not a number"]
    costs = load("openai", "openai_costs.csv")
    assert {(r.token_kind, r.cost) for r in costs.rows} == {
        ("input", Decimal("0.8")),
        ("output", Decimal("0.244")),
    }
    assert problems(costs) == ["line 4: currency 'dollars' is not a three-letter ISO 4217 code"]


def test_anthropic_admin_usage_report() -> None:
    result = load("anthropic", "anthropic_usage.json")
    m = "claude-sonnet-4-5-20250929"
    assert table(result) == {
        (NOV17, "anthropic", m, "input", 1500, None, "USD", "usage"),
        (NOV17, "anthropic", m, "cache_read", 200, None, "USD", "usage"),
        (NOV17, "anthropic", m, "cache_write", 1500, None, "USD", "usage"),
        (NOV17, "anthropic", m, "output", 500, None, "USD", "usage"),
    }
    assert problems(result) == [
        "data[0].results[1]: uncached_input_tokens is 3.5, not a whole number of tokens >= 0",
        "data[1].results[0]: bucket 2026-11-18T00:00:00Z..2026-11-18T01:00:00Z is not one day: "
        "export with bucket_width=1d",
    ]


def test_anthropic_cost_report_amounts_are_cents() -> None:
    result = load("anthropic", "anthropic_cost.json")
    m = "claude-sonnet-4-5-20250929"
    assert table(result) == {
        (NOV17, "anthropic", m, "input", None, Decimal("0.0225"), "USD", "cost"),
        (NOV17, "anthropic", m, "output", None, Decimal("0.075"), "USD", "cost"),
        (NOV17, "anthropic", m, "other", None, Decimal("0.01"), "USD", "cost"),
    }
    assert result.unreadable == 1 and "token_type 'image_tokens'" in problems(result)[0]


def test_google_billing_export_vertex_rows() -> None:
    result = load("google", "google_billing.csv")
    m = "gemini-2.5-flash"
    assert table(result) == {
        (
            NOV17,
            "google",
            m,
            "input",
            200_000,
            Decimal("0.05"),
            "USD",
            "usage_cost",
        ),  # 0.03 + 0.03 - 0.01 credit
        (NOV17, "google", m, "output", 100_000, Decimal("0.25"), "USD", "usage_cost"),
        (NOV17, "google", m, "cache_read", 40_000, Decimal("0.003"), "USD", "usage_cost"),
    }
    assert result.skipped == 1  # Compute Engine
    assert problems(result) == ["line 7: usage.unit 'characters' is not a token count"]


def test_aws_cur_bedrock_rows() -> None:
    result = load("aws", "aws_cur.csv")
    m = "claude-sonnet-4-5-20250929"
    assert table(result) == {
        (NOV17, "aws", m, "input", 120_000, Decimal("0.36"), "USD", "usage_cost"),
        (NOV17, "aws", m, "output", 10_500, Decimal("0.1575"), "USD", "usage_cost"),
    }
    assert result.format == "aws-cur-legacy"
    assert result.skipped == 2  # EC2, and the tax line
    assert problems(result) == [
        "line 6: usage type 'USE1-TitanImage-images' is not a Bedrock token usage type"
    ]


def test_aws_focus_bedrock_rows() -> None:
    result = load("aws", "aws_focus.csv")
    assert result.format == "aws-focus"
    assert table(result) == {
        (NOV17, "aws", "claude-sonnet-4-5-20250929", "input", 120_000, Decimal("0.36"), "USD", "usage_cost")
    }
    assert result.skipped == 1
    assert problems(result) == ["line 4: no x_UsageType: the token kind is unknown"]


def test_generic_csv() -> None:
    result = load("generic", "generic.csv")
    assert result.rows == [
        BillRow(NOV17, "deepseek", "deepseek-v3.2", "input", 1_000_000, Decimal("0.28"), "USD", "usage_cost"),
        BillRow(NOV17, "deepseek", "deepseek-v3.2", "output", 200_000, Decimal("0.084"), "USD", "usage_cost"),
    ]
    assert problems(result) == [
        "line 4: token_kind 'cached' is not one of ['input', 'cache_read', 'cache_write', 'output', "
        "'reasoning', 'other']",
        "line 5: neither quantity nor cost",
        "line 6: day '2026-11-32' is not YYYY-MM-DD",
    ]


@pytest.mark.parametrize(
    ("provider", "data", "message"),
    [
        ("openai", b"{not json", "not JSON"),
        ("openai", b'{"object": "list"}', "not an API page"),
        ("google", b"", "empty file"),
        ("google", b"a,b\n1,2\n", "not a Google Cloud billing export CSV: missing columns"),
        ("generic", b"\xff\xfe", "not UTF-8"),
        ("google", b'{"data": []}', "google exports are not read as JSON"),
        ("azure", b"", "unknown provider 'azure'"),
    ],
)
def test_malformed_files_are_readable_errors(provider: str, data: bytes, message: str) -> None:
    with pytest.raises(BillFormatError, match=message):
        parse(provider, data)


def test_short_row_is_reported_with_its_line() -> None:
    data = b"day,provider,model,token_kind,quantity,cost,currency\n2026-11-17,x,m,input,1\n"
    result = parse("generic", data)
    assert problems(result) == ["line 2: 5 fields, the header has 7"]
