"""callstream's own cost as FOCUS 1.0 rows (FinOps Open Cost and Usage Specification).

One row per UTC day (the charge period), model and service (or user): BilledCost, EffectiveCost
and ListCost are callstream's computed cost at the price in force (callstream knows no discounts or
commitments, so the three are equal, and ContractedCost too); ConsumedQuantity is the tokens.
`Tags` is a JSON object with the service, user and model. `COLUMNS` encodes the FOCUS 1.0 column
definitions (name, data type, nullability, feature level) that `validate` checks a row against.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

FocusType = Literal["Decimal", "String", "DateTime", "JSON"]
Level = Literal["Mandatory", "Recommended", "Conditional"]


@dataclass(frozen=True)
class Column:
    name: str
    type: FocusType
    nullable: bool
    level: Level
    allowed: frozenset[str] | None = None


# FOCUS 1.0 columns (the spec's column library), in its alphabetical order.
COLUMNS: tuple[Column, ...] = (
    Column("AvailabilityZone", "String", True, "Recommended"),
    Column("BilledCost", "Decimal", False, "Mandatory"),
    Column("BillingAccountId", "String", False, "Mandatory"),
    Column("BillingAccountName", "String", True, "Mandatory"),
    Column("BillingCurrency", "String", False, "Mandatory"),
    Column("BillingPeriodEnd", "DateTime", False, "Mandatory"),
    Column("BillingPeriodStart", "DateTime", False, "Mandatory"),
    Column(
        "ChargeCategory",
        "String",
        False,
        "Mandatory",
        frozenset({"Usage", "Purchase", "Tax", "Credit", "Adjustment"}),
    ),
    Column("ChargeClass", "String", True, "Mandatory", frozenset({"Correction"})),
    Column("ChargeDescription", "String", True, "Mandatory"),
    Column(
        "ChargeFrequency", "String", False, "Recommended", frozenset({"One-Time", "Recurring", "Usage-Based"})
    ),
    Column("ChargePeriodEnd", "DateTime", False, "Mandatory"),
    Column("ChargePeriodStart", "DateTime", False, "Mandatory"),
    Column("CommitmentDiscountCategory", "String", True, "Conditional", frozenset({"Spend", "Usage"})),
    Column("CommitmentDiscountId", "String", True, "Conditional"),
    Column("CommitmentDiscountName", "String", True, "Conditional"),
    Column("CommitmentDiscountStatus", "String", True, "Conditional", frozenset({"Used", "Unused"})),
    Column("CommitmentDiscountType", "String", True, "Conditional"),
    Column("ConsumedQuantity", "Decimal", True, "Conditional"),
    Column("ConsumedUnit", "String", True, "Conditional"),
    Column("ContractedCost", "Decimal", False, "Mandatory"),
    Column("ContractedUnitPrice", "Decimal", True, "Conditional"),
    Column("EffectiveCost", "Decimal", False, "Mandatory"),
    Column("InvoiceIssuerName", "String", False, "Mandatory"),
    Column("ListCost", "Decimal", False, "Mandatory"),
    Column("ListUnitPrice", "Decimal", True, "Conditional"),
    Column(
        "PricingCategory",
        "String",
        True,
        "Conditional",
        frozenset({"Standard", "Dynamic", "Committed", "Other"}),
    ),
    Column("PricingQuantity", "Decimal", True, "Mandatory"),
    Column("PricingUnit", "String", True, "Mandatory"),
    Column("ProviderName", "String", False, "Mandatory"),
    Column("PublisherName", "String", False, "Mandatory"),
    Column("RegionId", "String", True, "Conditional"),
    Column("RegionName", "String", True, "Conditional"),
    Column("ResourceId", "String", True, "Conditional"),
    Column("ResourceName", "String", True, "Conditional"),
    Column("ResourceType", "String", True, "Conditional"),
    Column(
        "ServiceCategory",
        "String",
        False,
        "Mandatory",
        frozenset(
            {
                "AI and Machine Learning",
                "Analytics",
                "Business Applications",
                "Compute",
                "Databases",
                "Developer Tools",
                "Multicloud",
                "Identity",
                "Integration",
                "Internet of Things",
                "Management and Governance",
                "Media",
                "Migration",
                "Mobile",
                "Networking",
                "Security",
                "Storage",
                "Web",
                "Other",
            }
        ),
    ),
    Column("ServiceName", "String", False, "Mandatory"),
    Column("SkuId", "String", True, "Conditional"),
    Column("SkuPriceId", "String", True, "Conditional"),
    Column("SubAccountId", "String", True, "Conditional"),
    Column("SubAccountName", "String", True, "Conditional"),
    Column("Tags", "JSON", True, "Conditional"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # FOCUS: ISO 8601, UTC, 'Z'
_CURRENCY = re.compile(r"^[A-Z]{3}$")
PROVIDER_NAMES = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "deepseek": "DeepSeek",
    "mistral": "Mistral AI",
    "meta": "Meta",
    "xai": "xAI",
    "cohere": "Cohere",
    "alibaba": "Alibaba Cloud",
}
By = Literal["service", "user"]


@dataclass(frozen=True)
class CostCell:
    """callstream's cost of one UTC day, model, provider and service or user (from the calls)."""

    day: date
    key: str | None  # the service or user; None when the calls have none
    model: str
    provider: str
    requests: int
    tokens: int
    cost_pico: int


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-11' -> [2026-11-01T00:00Z, 2026-12-01T00:00Z)."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"month {month!r} is not YYYY-MM") from None
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _usd(pico: int) -> str:
    return (
        str((Decimal(pico) / Decimal(10**12)).quantize(Decimal("0.000000000001")).normalize())
        if pico
        else "0"
    )


def rows(
    cells: Iterable[CostCell], month: str, by: By, account_id: str, account_name: str
) -> list[dict[str, str | None]]:
    period_start, period_end = month_bounds(month)
    out = []
    for c in sorted(cells, key=lambda c: (c.day, c.provider, c.model, c.key or "")):
        start = datetime(c.day.year, c.day.month, c.day.day, tzinfo=UTC)
        cost = _usd(c.cost_pico)
        tags = {"model": c.model, by: c.key}
        provider = PROVIDER_NAMES.get(c.provider, c.provider)
        resource = f"{c.key or '-'}/{c.model}"
        row: dict[str, str | None] = dict.fromkeys(COLUMN_NAMES)
        row.update(
            {
                "BilledCost": cost,
                "BillingAccountId": account_id,
                "BillingAccountName": account_name,
                "BillingCurrency": "USD",
                "BillingPeriodEnd": _ts(period_end),
                "BillingPeriodStart": _ts(period_start),
                "ChargeCategory": "Usage",
                "ChargeDescription": f"{c.model} tokens for {by} {c.key or '(none)'} ({c.requests} calls)",
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodEnd": _ts(start + timedelta(days=1)),
                "ChargePeriodStart": _ts(start),
                "ConsumedQuantity": str(c.tokens),
                "ConsumedUnit": "Tokens",
                "ContractedCost": cost,
                "EffectiveCost": cost,
                "InvoiceIssuerName": provider,
                "ListCost": cost,
                "PricingCategory": "Standard",
                "PricingQuantity": str(c.tokens),
                "PricingUnit": "Tokens",
                "ProviderName": provider,
                "PublisherName": provider,
                "ResourceId": resource,
                "ResourceName": resource,
                "ResourceType": "LLM model usage",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": c.key if by == "service" and c.key else c.model,
                "SkuId": c.model,
                "Tags": orjson.dumps({k: v for k, v in tags.items() if v is not None}).decode(),
            }
        )
        out.append(row)
    return out


def to_csv(focus_rows: Iterable[Mapping[str, str | None]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMN_NAMES), lineterminator="\n")
    writer.writeheader()
    for row in focus_rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def validate(row: Mapping[str, Any]) -> list[str]:
    """What in `row` breaks the FOCUS 1.0 column definitions (empty when it conforms)."""
    problems = [f"missing column {c.name}" for c in COLUMNS if c.level == "Mandatory" and c.name not in row]
    problems += [
        f"unknown column {name} (custom columns start with x_)"
        for name in row
        if name not in COLUMN_NAMES and not name.startswith("x_")
    ]
    for column in COLUMNS:
        value = row.get(column.name)
        if value is None or value == "":
            if not column.nullable and column.name in row:
                problems.append(f"{column.name} must not be null")
            continue
        text = str(value)
        if column.type == "Decimal":
            try:
                number = Decimal(text)
            except ArithmeticError:
                problems.append(f"{column.name} {text!r} is not a decimal")
                continue
            if not number.is_finite() or "e" in text.lower():
                problems.append(f"{column.name} {text!r} is not a plain decimal")
        elif column.type == "DateTime" and not _DATETIME.match(text):
            problems.append(f"{column.name} {text!r} is not ISO 8601 UTC (YYYY-MM-DDTHH:MM:SSZ)")
        elif column.type == "JSON":
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                problems.append(f"{column.name} is not JSON")
                continue
            if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
                problems.append(f"{column.name} must be a JSON object of string values")
        if column.allowed is not None and text not in column.allowed:
            problems.append(f"{column.name} {text!r} is not one of the allowed values")
    if row.get("BillingCurrency") and not _CURRENCY.match(str(row["BillingCurrency"])):
        problems.append("BillingCurrency is not an ISO 4217 code")
    for start, end in (("ChargePeriodStart", "ChargePeriodEnd"), ("BillingPeriodStart", "BillingPeriodEnd")):
        if row.get(start) and row.get(end) and str(row[start]) >= str(row[end]):
            problems.append(f"{start} is not before {end}")
    return problems
