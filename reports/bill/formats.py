"""Parsers of the providers' usage and cost exports, each following its documented schema.

Every parser takes the file's bytes and returns a `ParseResult`: normalised `BillRow`s (summed per
day, provider, model and token kind) and the rows it could not read, each with its place (a CSV
line number, or a JSON path such as `data[3].results[1]`) and the reason. A row is never guessed:
a missing model, a negative or fractional token count, a bucket that is not one day, an unknown
token type make the row unreadable, counted and listed. Rows of other services (a Google Cloud or
AWS bill holds everything the account paid for) are skipped and counted as such.

Formats (docs/bill.md has the columns and fields each reads):

- `openai`: the organization Usage API (`/v1/organization/usage/completions`, `bucket_width=1d`,
  `group_by=model`) and Costs API (`/v1/organization/costs`, `group_by=line_item`) JSON, one page
  or a list of pages; the dashboard's CSV exports of the same (the API's field names as columns).
- `anthropic`: the Admin API usage report (`/v1/organizations/usage_report/messages`,
  `bucket_width=1d`, `group_by[]=model`) and cost report (`/v1/organizations/cost_report`,
  `group_by[]=description`) JSON; cost amounts are in cents, as the API states them.
- `google`: a Cloud Billing export to BigQuery saved as CSV (standard usage cost export: columns
  `service.description`, `sku.description`, `usage_start_time`, `usage.amount`, `usage.unit`,
  `cost`, `currency`, `credits`), rows of Vertex AI and the Gemini API.
- `aws`: a Cost and Usage Report (legacy `lineItem/...` or CUR 2.0 `line_item_...` columns) or an
  AWS FOCUS 1.x export, Amazon Bedrock rows.
- `generic`: `day,provider,model,token_kind,quantity,cost,currency`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from callstream.reports.bill.rows import TOKEN_KINDS, BillRow, Dataset, ParseResult, TokenKind, combine

PROVIDERS = ("openai", "anthropic", "google", "aws", "generic")
DAY_S = 86_400


class BillFormatError(ValueError):
    """The file as a whole is not the format asked for (not JSON, no header, wrong columns)."""


class _Bad(ValueError):
    """One row cannot be read; the message says why."""


# -- small readers ---------------------------------------------------------------------------------


def _tokens(value: Any, name: str) -> int:
    """A token count: a whole number >= 0 (an integral float or numeric string is accepted)."""
    if isinstance(value, bool) or value is None:
        raise _Bad(f"{name} is {value!r}, not a token count")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(f"{name} is {value!r}, not a number") from None
    if not number.is_finite() or number < 0 or number != number.to_integral_value():
        raise _Bad(f"{name} is {value!r}, not a whole number of tokens >= 0")
    return int(number)


def _money(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _Bad(f"{name} is {value!r}, not an amount")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(f"{name} is {value!r}, not a number") from None
    if not number.is_finite():
        raise _Bad(f"{name} is {value!r}, not a finite amount")
    return number


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        raise _Bad(f"currency {value!r} is not a three-letter ISO 4217 code")
    return value.strip().upper()


def _model(value: Any, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"no model ({hint})")
    return value.strip()


def _epoch_day(start: Any, end: Any) -> date:
    """A one-day bucket given as epoch seconds (OpenAI)."""
    if not isinstance(start, int) or isinstance(start, bool):
        raise _Bad(f"start_time {start!r} is not epoch seconds")
    if end is not None and (not isinstance(end, int) or end - start != DAY_S):
        raise _Bad(f"bucket {start}..{end} is not one day: export with bucket_width=1d")
    if start % DAY_S:
        raise _Bad(f"bucket start {start} is not 00:00 UTC")
    return datetime.fromtimestamp(start, UTC).date()


def _instant(value: Any, name: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"{name} is {value!r}, not a time")
    text = value.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Bad(f"{name} {value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # billing exports are in UTC
    return moment.astimezone(UTC)


def _iso_day(start: Any, end: Any = None) -> date:
    """A one-day bucket given as ISO times (Anthropic), or a day's start alone."""
    begin = _instant(start, "start")
    if begin.time() != datetime.min.time():
        raise _Bad(f"bucket start {start!r} is not 00:00 UTC: export with bucket_width=1d")
    if end is not None and (_instant(end, "end") - begin).total_seconds() != DAY_S:
        raise _Bad(f"bucket {start}..{end} is not one day: export with bucket_width=1d")
    return begin.date()


def _load_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BillFormatError(f"not JSON: {exc}") from None


def _pages(doc: Any) -> list[Any]:
    """One API page ({"data": [...]}) or a list of pages, as pagination writes them."""
    pages = doc if isinstance(doc, list) else [doc]
    for i, page in enumerate(pages):
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            where = f"[{i}]" if isinstance(doc, list) else "the document"
            raise BillFormatError(f"{where} is not an API page: expected an object with a 'data' list")
    return pages


def _buckets(doc: Any) -> Iterator[tuple[str, dict[str, Any], list[tuple[str, Any]]]]:
    """(path, bucket, [(path, result)]) for every bucket of every page."""
    pages = _pages(doc)
    for p, page in enumerate(pages):
        prefix = f"[{p}]." if isinstance(doc, list) else ""
        for b, bucket in enumerate(page["data"]):
            path = f"{prefix}data[{b}]"
            if not isinstance(bucket, dict) or not isinstance(bucket.get("results"), list):
                yield path, {}, []
                continue
            yield path, bucket, [(f"{path}.results[{r}]", res) for r, res in enumerate(bucket["results"])]


def _csv_rows(data: bytes) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header and (line number, row) pairs of a CSV file (UTF-8, a BOM allowed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BillFormatError(f"not UTF-8 text: {exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BillFormatError("empty file: no header row") from None
    except csv.Error as exc:
        raise BillFormatError(f"unreadable header: {exc}") from None
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        line = reader.line_num
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, {"__error__": str(exc)}
                line = reader.line_num
                continue
            start, line = line + 1, reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield start, {"__error__": f"{len(values)} fields, the header has {len(header)}"}
                continue
            yield start, dict(zip(header, values, strict=True))

    return header, rows()


def _require_columns(header: list[str], needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise BillFormatError(f"not {what}: missing columns {missing} (found {header[:12]})")


def _read_csv(
    data: bytes,
    result: ParseResult,
    needed: list[str],
    what: str,
    read: Callable[[dict[str, str]], list[BillRow] | None],
) -> None:
    header, rows = _csv_rows(data)
    _require_columns(header, needed, what)
    for line, row in rows:
        if "__error__" in row:
            result.bad(f"line {line}", row["__error__"])
            continue
        try:
            got = read(row)
        except _Bad as exc:
            result.bad(f"line {line}", str(exc))
            continue
        if got is None:
            result.skipped += 1
        else:
            result.rows.extend(got)


def _row(
    day: date,
    provider: str,
    model: str,
    kind: TokenKind,
    dataset: Dataset,
    quantity: int | None = None,
    cost: Decimal | None = None,
    currency: str = "USD",
) -> BillRow:
    return BillRow(day, provider, model, kind, quantity, cost, currency, dataset)


# -- OpenAI ----------------------------------------------------------------------------------------

OPENAI_USAGE_OBJECT = "organization.usage.completions.result"
OPENAI_COSTS_OBJECT = "organization.costs.result"
# Costs API line items are "<model>, <kind>" (group_by=line_item).
OPENAI_LINE_ITEM_KINDS: dict[str, TokenKind] = {
    "input": "input",
    "cached input": "cache_read",
    "output": "output",
}


def _openai_usage(day: date, res: Mapping[str, Any]) -> list[BillRow]:
    model = _model(res.get("model"), "export with group_by=model")
    total_in = _tokens(res.get("input_tokens"), "input_tokens")
    cached = _tokens(res.get("input_cached_tokens") or 0, "input_cached_tokens")
    output = _tokens(res.get("output_tokens"), "output_tokens")
    if cached > total_in:
        raise _Bad(f"input_cached_tokens {cached} exceed input_tokens {total_in}")
    return [
        _row(day, "openai", model, "input", "usage", total_in - cached),
        _row(day, "openai", model, "cache_read", "usage", cached),
        _row(day, "openai", model, "output", "usage", output),
    ]


def _openai_line_item(line_item: Any) -> tuple[str, TokenKind]:
    if not isinstance(line_item, str) or ", " not in line_item:
        raise _Bad(f"line_item {line_item!r} is not '<model>, <kind>': export with group_by=line_item")
    model, kind_text = line_item.rsplit(", ", 1)
    return _model(model, "line_item"), OPENAI_LINE_ITEM_KINDS.get(kind_text.strip().lower(), "other")


def _openai_cost(day: date, amount: Decimal, currency: str, line_item: Any) -> list[BillRow]:
    model, kind = _openai_line_item(line_item)
    return [_row(day, "openai", model, kind, "cost", cost=amount, currency=currency)]


def parse_openai_json(data: bytes) -> ParseResult:
    result = ParseResult(format="openai-api-json")
    for path, bucket, results in _buckets(_load_json(data)):
        if not bucket:
            result.bad(path, "not a bucket with a 'results' list")
            continue
        for where, res in results:
            try:
                if not isinstance(res, dict):
                    raise _Bad("not an object")
                day = _epoch_day(bucket.get("start_time"), bucket.get("end_time"))
                kind = res.get("object")
                if kind == OPENAI_USAGE_OBJECT:
                    result.rows.extend(_openai_usage(day, res))
                elif kind == OPENAI_COSTS_OBJECT:
                    amount = res.get("amount")
                    if not isinstance(amount, dict):
                        raise _Bad("no amount object")
                    result.rows.extend(
                        _openai_cost(
                            day,
                            _money(amount.get("value"), "amount.value"),
                            _currency(amount.get("currency")),
                            res.get("line_item"),
                        )
                    )
                else:
                    raise _Bad(
                        f"object {kind!r} is neither {OPENAI_USAGE_OBJECT!r} nor {OPENAI_COSTS_OBJECT!r}"
                    )
            except _Bad as exc:
                result.bad(where, str(exc))
    return result


def _openai_csv_day(row: Mapping[str, str]) -> date:
    iso = row.get("start_time_iso", "").strip()
    if iso:
        return _iso_day(iso, row.get("end_time_iso") or None)
    start = row.get("start_time", "").strip()
    end = row.get("end_time", "").strip()
    if not start.isdigit() or (end and not end.isdigit()):
        raise _Bad(f"start_time {start!r} is not epoch seconds")
    return _epoch_day(int(start), int(end) if end else None)


def parse_openai_csv(data: bytes) -> ParseResult:
    header, _ = _csv_rows(data)
    if "amount_value" in header:
        result = ParseResult(format="openai-costs-csv")

        def cost(row: dict[str, str]) -> list[BillRow]:
            return _openai_cost(
                _openai_csv_day(row),
                _money(row["amount_value"], "amount_value"),
                _currency(row.get("amount_currency") or None),
                row.get("line_item") or None,
            )

        _read_csv(data, result, ["amount_value", "amount_currency", "line_item"], "an OpenAI costs CSV", cost)
        return result
    if "start_time" not in header and "start_time_iso" not in header:
        raise BillFormatError("not an OpenAI usage CSV: no start_time or start_time_iso column")
    result = ParseResult(format="openai-usage-csv")

    def usage(row: dict[str, str]) -> list[BillRow]:
        return _openai_usage(_openai_csv_day(row), {k: (v if v != "" else None) for k, v in row.items()})

    _read_csv(data, result, ["model", "input_tokens", "output_tokens"], "an OpenAI usage CSV", usage)
    return result


# -- Anthropic -------------------------------------------------------------------------------------

ANTHROPIC_TOKEN_TYPES: dict[str, TokenKind] = {
    "uncached_input_tokens": "input",
    "output_tokens": "output",
    "cache_read_input_tokens": "cache_read",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write",
}
CENTS = Decimal(100)


def _anthropic_usage(day: date, res: Mapping[str, Any]) -> list[BillRow]:
    model = _model(res.get("model"), "export with group_by[]=model")
    creation = res.get("cache_creation") or {}
    if not isinstance(creation, dict):
        raise _Bad("cache_creation is not an object")
    write = _tokens(creation.get("ephemeral_1h_input_tokens") or 0, "ephemeral_1h_input_tokens")
    write += _tokens(creation.get("ephemeral_5m_input_tokens") or 0, "ephemeral_5m_input_tokens")
    uncached = _tokens(res.get("uncached_input_tokens"), "uncached_input_tokens")
    read = _tokens(res.get("cache_read_input_tokens") or 0, "cache_read_input_tokens")
    output = _tokens(res.get("output_tokens"), "output_tokens")
    return [
        _row(day, "anthropic", model, "input", "usage", uncached),
        _row(day, "anthropic", model, "cache_read", "usage", read),
        _row(day, "anthropic", model, "cache_write", "usage", write),
        _row(day, "anthropic", model, "output", "usage", output),
    ]


def _anthropic_cost(day: date, res: Mapping[str, Any]) -> list[BillRow]:
    model = _model(res.get("model"), "export with group_by[]=description")
    amount = _money(res.get("amount"), "amount") / CENTS  # "lowest currency units (e.g. cents)"
    cost_type = res.get("cost_type")
    kind: TokenKind
    if cost_type == "tokens":
        token_type = res.get("token_type")
        if token_type not in ANTHROPIC_TOKEN_TYPES:
            raise _Bad(f"token_type {token_type!r} is not one of {sorted(ANTHROPIC_TOKEN_TYPES)}")
        kind = ANTHROPIC_TOKEN_TYPES[token_type]
    elif isinstance(cost_type, str) and cost_type:
        kind = "other"  # web_search, code_execution, ...
    else:
        raise _Bad(f"cost_type {cost_type!r} is missing")
    return [_row(day, "anthropic", model, kind, "cost", cost=amount, currency=_currency(res.get("currency")))]


def parse_anthropic_json(data: bytes) -> ParseResult:
    result = ParseResult(format="anthropic-admin-json")
    for path, bucket, results in _buckets(_load_json(data)):
        if not bucket:
            result.bad(path, "not a bucket with a 'results' list")
            continue
        for where, res in results:
            try:
                if not isinstance(res, dict):
                    raise _Bad("not an object")
                day = _iso_day(bucket.get("starting_at"), bucket.get("ending_at"))
                if "amount" in res:
                    result.rows.extend(_anthropic_cost(day, res))
                elif "uncached_input_tokens" in res:
                    result.rows.extend(_anthropic_usage(day, res))
                else:
                    raise _Bad("neither a usage result (uncached_input_tokens) nor a cost result (amount)")
            except _Bad as exc:
                result.bad(where, str(exc))
    return result


# -- Google Cloud billing export -------------------------------------------------------------------

GOOGLE_SERVICES = frozenset({"vertex ai", "gemini api", "generative language api"})
GOOGLE_COLUMNS = [
    "service.description",
    "sku.description",
    "usage_start_time",
    "usage.amount",
    "usage.unit",
    "cost",
    "currency",
]
_GEMINI = re.compile(r"gemini[\s-]+(\d+(?:\.\d+)?)[\s-]+(flash[\s-]+lite|flash|pro)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s-]+")
GOOGLE_TOKEN_UNITS = frozenset({"count", "token", "tokens"})


def google_sku(description: str) -> tuple[str, TokenKind]:
    """Model and token kind of a Vertex AI / Gemini SKU description, e.g. 'Gemini 2.5 Flash Input
    Text Tokens' -> ('gemini-2.5-flash', 'input'); 'Gemini 2.5 Pro Cached Input' -> cache_read."""
    found = _GEMINI.search(description)
    if found is None:
        raise _Bad(f"sku.description {description!r} names no Gemini model")
    variant = _SEPARATORS.sub("-", found.group(2).lower())
    model = f"gemini-{found.group(1)}-{variant}"
    text = description.lower()
    kind: TokenKind
    if "storage" in text:
        kind = "other"  # context cache storage is billed per token-hour, not per token
    elif "cach" in text:
        kind = "cache_read"
    elif "output" in text or "thinking" in text:
        kind = "output"  # thinking tokens are billed as output
    elif "input" in text:
        kind = "input"
    else:
        kind = "other"
    return model, kind


def _google_credits(value: str) -> Decimal:
    """The `credits` column: a JSON list of {name, amount, ...} (BigQuery's repeated record), or empty."""
    if not value.strip():
        return Decimal(0)
    try:
        credits = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise _Bad(f"credits {value[:60]!r} is not a JSON list") from None
    if not isinstance(credits, list):
        raise _Bad("credits is not a JSON list")
    total = Decimal(0)
    for credit in credits:
        if not isinstance(credit, dict):
            raise _Bad("a credit is not an object")
        total += _money(credit.get("amount"), "credits.amount")
    return total


def parse_google_csv(data: bytes) -> ParseResult:
    result = ParseResult(format="google-billing-csv")

    def read(row: dict[str, str]) -> list[BillRow] | None:
        if row["service.description"].strip().lower() not in GOOGLE_SERVICES:
            return None
        model, kind = google_sku(row["sku.description"])
        day = _instant(row["usage_start_time"], "usage_start_time").date()
        cost = _money(row["cost"], "cost") + _google_credits(row.get("credits", ""))
        quantity = None
        if kind != "other":
            if row["usage.unit"].strip().lower() not in GOOGLE_TOKEN_UNITS:
                raise _Bad(f"usage.unit {row['usage.unit']!r} is not a token count")
            quantity = _tokens(row["usage.amount"], "usage.amount")
        return [_row(day, "google", model, kind, "usage_cost", quantity, cost, _currency(row["currency"]))]

    _read_csv(data, result, GOOGLE_COLUMNS, "a Google Cloud billing export CSV", read)
    return result


# -- AWS: Cost and Usage Report and FOCUS ----------------------------------------------------------

# Bedrock usage types: <region>-<model>-<kind>, e.g. USE1-Claude3.5Sonnet-input-tokens.
_BEDROCK_USAGE = re.compile(
    r"^(?:[A-Z]{2,4}\d?-)?(?P<model>.+?)-(?P<kind>input-tokens|output-tokens|input-token-count|"
    r"output-token-count|cache-read-input-token-count|cache-write-input-token-count)(?:-.*)?$",
    re.IGNORECASE,
)
BEDROCK_KINDS: dict[str, TokenKind] = {
    "input-tokens": "input",
    "input-token-count": "input",
    "output-tokens": "output",
    "output-token-count": "output",
    "cache-read-input-token-count": "cache_read",
    "cache-write-input-token-count": "cache_write",
}
# arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0
_FOUNDATION_MODEL = re.compile(r"foundation-model/(?:[a-z0-9-]+\.)?(?P<model>[^/]+?)(?:-v\d+(?::\d+)?)?$")
CUR_COLUMNS = {
    "legacy": {
        "start": "lineItem/UsageStartDate",
        "product": "lineItem/ProductCode",
        "usage_type": "lineItem/UsageType",
        "amount": "lineItem/UsageAmount",
        "cost": "lineItem/UnblendedCost",
        "currency": "lineItem/CurrencyCode",
        "type": "lineItem/LineItemType",
        "resource": "lineItem/ResourceId",
        "unit": "pricing/unit",
    },
    "cur2": {
        "start": "line_item_usage_start_date",
        "product": "line_item_product_code",
        "usage_type": "line_item_usage_type",
        "amount": "line_item_usage_amount",
        "cost": "line_item_unblended_cost",
        "currency": "line_item_currency_code",
        "type": "line_item_line_item_type",
        "resource": "line_item_resource_id",
        "unit": "pricing_unit",
    },
}
CUR_OPTIONAL = ("resource", "unit")
BEDROCK_PRODUCTS = frozenset({"amazonbedrock", "amazon bedrock"})
USAGE_LINE_TYPES = frozenset({"usage", "discountedusage"})


def bedrock_model_kind(usage_type: str, resource_id: str) -> tuple[str, TokenKind]:
    """The model (from the foundation-model ARN when the row has one, else the usage type's model
    segment, lowercased) and the token kind (from the usage type)."""
    found = _BEDROCK_USAGE.match(usage_type.strip())
    if found is None:
        raise _Bad(f"usage type {usage_type!r} is not a Bedrock token usage type")
    kind = BEDROCK_KINDS[found.group("kind").lower()]
    arn = _FOUNDATION_MODEL.search(resource_id.strip())
    model = arn.group("model") if arn else found.group("model")
    return model.lower(), kind


def _token_multiplier(unit: str) -> int:
    text = unit.strip().lower()
    if re.search(r"\b(1k|1,000|1000|thousand)\b", text):
        return 1000
    if re.search(r"\b(1m|1,000,000|1000000|million)\b", text):
        return 1_000_000
    return 1


def _scaled_tokens(amount: str, unit: str, name: str) -> int:
    value = _money(amount, name) * _token_multiplier(unit)
    return _tokens(value, f"{name} x unit ({unit or 'tokens'})")


def parse_aws_csv(data: bytes) -> ParseResult:
    header, _ = _csv_rows(data)
    if "ChargePeriodStart" in header and "BilledCost" in header:
        return parse_aws_focus(data)
    flavour = "legacy" if "lineItem/UsageStartDate" in header else "cur2"
    cols = CUR_COLUMNS[flavour]
    result = ParseResult(format=f"aws-cur-{flavour}")

    def read(row: dict[str, str]) -> list[BillRow] | None:
        if row[cols["product"]].strip().lower() not in BEDROCK_PRODUCTS:
            return None
        if row[cols["type"]].strip().lower() not in USAGE_LINE_TYPES:
            return None  # taxes, credits, refunds: not usage of a model
        model, kind = bedrock_model_kind(row[cols["usage_type"]], row.get(cols["resource"], ""))
        day = _instant(row[cols["start"]], cols["start"]).date()
        quantity = _scaled_tokens(row[cols["amount"]], row.get(cols["unit"], ""), cols["amount"])
        cost = _money(row[cols["cost"]], cols["cost"])
        return [_row(day, "aws", model, kind, "usage_cost", quantity, cost, _currency(row[cols["currency"]]))]

    needed = [v for k, v in cols.items() if k not in CUR_OPTIONAL]
    _read_csv(data, result, needed, "an AWS Cost and Usage Report", read)
    return result


AWS_FOCUS_COLUMNS = [
    "ChargePeriodStart",
    "ChargeCategory",
    "ServiceName",
    "BilledCost",
    "BillingCurrency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ResourceId",
]


def parse_aws_focus(data: bytes) -> ParseResult:
    """An AWS FOCUS 1.x export: the usage type is AWS's `x_UsageType` column (else `SkuPriceDetails`
    is not enough: the row is unreadable)."""
    result = ParseResult(format="aws-focus")

    def read(row: dict[str, str]) -> list[BillRow] | None:
        if "bedrock" not in row["ServiceName"].lower():
            return None
        if row["ChargeCategory"].strip().lower() != "usage":
            return None
        usage_type = row.get("x_UsageType", "")
        if not usage_type.strip():
            raise _Bad("no x_UsageType: the token kind is unknown")
        model, kind = bedrock_model_kind(usage_type, row["ResourceId"])
        day = _instant(row["ChargePeriodStart"], "ChargePeriodStart").date()
        quantity = _scaled_tokens(row["ConsumedQuantity"], row["ConsumedUnit"], "ConsumedQuantity")
        cost = _money(row["BilledCost"], "BilledCost")
        return [
            _row(day, "aws", model, kind, "usage_cost", quantity, cost, _currency(row["BillingCurrency"]))
        ]

    _read_csv(data, result, AWS_FOCUS_COLUMNS, "an AWS FOCUS export", read)
    return result


# -- generic ---------------------------------------------------------------------------------------

GENERIC_COLUMNS = ["day", "provider", "model", "token_kind", "quantity", "cost", "currency"]


def parse_generic_csv(data: bytes) -> ParseResult:
    result = ParseResult(format="generic-csv")

    def read(row: dict[str, str]) -> list[BillRow]:
        try:
            day = date.fromisoformat(row["day"].strip())
        except ValueError:
            raise _Bad(f"day {row['day']!r} is not YYYY-MM-DD") from None
        provider = row["provider"].strip().lower()
        if not provider:
            raise _Bad("no provider")
        kind = row["token_kind"].strip().lower()
        if kind not in TOKEN_KINDS:
            raise _Bad(f"token_kind {row['token_kind']!r} is not one of {list(TOKEN_KINDS)}")
        quantity = _tokens(row["quantity"], "quantity") if row["quantity"].strip() else None
        cost = _money(row["cost"], "cost") if row["cost"].strip() else None
        if quantity is None and cost is None:
            raise _Bad("neither quantity nor cost")
        currency = _currency(row["currency"]) if row["currency"].strip() else "USD"
        model = _model(row["model"], "model column")
        return [_row(day, provider, model, kind, "usage_cost", quantity, cost, currency)]

    _read_csv(data, result, GENERIC_COLUMNS, "a generic bill CSV", read)
    return result


# -- dispatch --------------------------------------------------------------------------------------


def parse(provider: str, data: bytes) -> ParseResult:
    """The rows of one export of `provider`; JSON or CSV is told from the first character."""
    if provider not in PROVIDERS:
        raise BillFormatError(f"unknown provider {provider!r}: one of {', '.join(PROVIDERS)}")
    is_json = data.lstrip()[:1] in (b"{", b"[")
    parsers: dict[str, Callable[[bytes], ParseResult]]
    if is_json:
        parsers = {"openai": parse_openai_json, "anthropic": parse_anthropic_json}
    else:
        parsers = {
            "openai": parse_openai_csv,
            "google": parse_google_csv,
            "aws": parse_aws_csv,
            "generic": parse_generic_csv,
        }
    parser = parsers.get(provider)
    if parser is None:
        kind = "JSON" if is_json else "CSV"
        raise BillFormatError(f"{provider} exports are not read as {kind} (see docs/bill.md)")
    result = parser(data)
    try:
        result.rows = combine(result.rows)
    except ValueError as exc:
        raise BillFormatError(str(exc)) from None
    return result
