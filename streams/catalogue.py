"""Build the price catalogue a worker uses: local override files first, then genai-prices.

genai-prices (PyPI) keeps per-provider model prices with start dates. Its model entries become
`Price` entries here: its match clauses become one regular expression, its dated prices a
timeline, and its provider resolution (the first provider whose `model_match` accepts the model
name, then the first of that provider's models that matches) is kept by gating every entry with
its provider's condition. What cannot be represented is listed in docs/pricing.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from callstream import logs
from callstream.streams.pricing import Price, PriceCatalogue, load_price_file, per_mtok_to_pico_per_token
from callstream.streams.settings import StreamSettings

log = logs.get(__name__)

GENAI_SOURCE = "genai-prices"
EPOCH = date(1970, 1, 1)


class UnsupportedClause(ValueError):
    """A genai-prices match clause with no regular-expression equivalent here."""


@dataclass
class ConversionReport:
    """What the genai-prices conversion kept and left out (logged once at startup)."""

    models: int = 0
    entries: int = 0
    rounded_prices: int = 0
    tiered_prices: int = 0
    not_token_priced: int = 0  # models without an input or output token price (images, audio, ...)
    unsupported_clauses: int = 0
    time_of_day_prices: int = 0  # off-peak prices, not represented: the standard price applies


def load_catalogue(settings: StreamSettings) -> PriceCatalogue:
    """Override files in the order given, then genai-prices (if enabled). Built once per worker."""
    started = time.perf_counter()
    entries: list[Price] = []
    for path in settings.price_sources():
        entries.extend(load_price_file(path))
    overrides = len(entries)
    report = ConversionReport()
    if settings.use_genai_prices:
        entries.extend(genai_price_entries(report=report))
    log.info(
        "price catalogue loaded",
        override_entries=overrides,
        price_profile=settings.price_profile,
        price_files=[str(p) for p in settings.price_sources()],
        genai_prices_entries=report.entries,
        genai_prices_models=report.models,
        rounded_prices=report.rounded_prices,
        tiered_prices_base_only=report.tiered_prices,
        skipped_not_token_priced=report.not_token_priced,
        skipped_unsupported_match=report.unsupported_clauses,
        ignored_time_of_day_prices=report.time_of_day_prices,
        load_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return PriceCatalogue(entries)


def genai_price_entries(
    providers: Sequence[Any] | None = None, report: ConversionReport | None = None
) -> list[Price]:
    """Price entries for every model of the genai-prices providers that own model names.

    Only providers with a `model_match` are used: without a provider id (the pipeline knows only
    the model name), genai-prices itself resolves a name through those alone. Entries come in
    provider order, each gated so that it applies only to names its provider is the first to
    claim, and within a provider in model order: the first matching series owns the name.
    """
    if providers is None:
        from genai_prices.data import providers as bundled

        providers = bundled
    report = report if report is not None else ConversionReport()
    by_id = {p.id: p for p in providers}
    entries: list[Price] = []
    claimed: list[str] = []  # model_match regexes of earlier providers
    for provider in providers:
        if provider.model_match is None:
            continue
        try:
            own = clause_regex(provider.model_match)
        except UnsupportedClause:
            report.unsupported_clauses += 1
            continue
        gate = "".join(f"(?!(?:{r})$)" for r in claimed) + f"(?=(?:{own})$)"
        claimed.append(own)
        # genai-prices falls back to other providers' models when none of this provider's match.
        for owner_id in [provider.id, *(provider.fallback_model_providers or [])]:
            owner = by_id.get(owner_id)
            if owner is None:
                continue
            for index, model in enumerate(owner.models):
                entries.extend(_model_entries(owner.id, index, model, gate, report))
    report.entries = len(entries)
    return entries


def _model_entries(
    provider_id: str, index: int, model: Any, gate: str, report: ConversionReport
) -> list[Price]:
    report.models += 1
    try:
        pattern = re.compile(gate + f"(?:{clause_regex(model.match)})", re.IGNORECASE)
    except (UnsupportedClause, re.error):
        report.unsupported_clauses += 1
        return []
    timeline = _timeline(model.prices, report)
    if not timeline or any(_token_prices(p, report) is None for _, p in timeline):
        report.not_token_priced += 1
        return []
    entries = []
    for start, model_price in timeline:
        token_prices = _token_prices(model_price, None)
        assert token_prices is not None
        picos = {name: _pico(value, report) for name, value in token_prices.items() if value is not None}
        entries.append(
            Price(
                id=f"{GENAI_SOURCE}:{provider_id}:{model.id}@{start.isoformat()}",
                provider=provider_id,
                match=pattern,
                effective_from_ms=_epoch_ms(start),
                input=picos.get("input", 0),
                output=picos.get("output", 0),
                cache_read=picos.get("cache_read", picos.get("input", 0)),
                cache_write=picos.get("cache_write", picos.get("input", 0)),
                reasoning=picos.get("reasoning", picos.get("output", 0)),
                source=GENAI_SOURCE,
                series=f"{provider_id}:{index}:{model.id}",
            )
        )
    return entries


def _timeline(prices: Any, report: ConversionReport) -> list[tuple[date, Any]]:
    """(start date, ModelPrice) steps that reproduce genai-prices' choice at every instant.

    genai-prices takes the last conditional price whose constraint holds, else the first one.
    Start-date constraints hold from 00:00 UTC of their date; time-of-day (off-peak) constraints
    are treated as never holding, so the standard price applies all day.
    """
    if not isinstance(prices, list):
        return [(EPOCH, prices)]
    if not prices:
        return []
    starts = {EPOCH}
    for conditional in prices:
        constraint = conditional.constraint
        if constraint is None:
            continue
        start = getattr(constraint, "start_date", None)
        if start is None:
            report.time_of_day_prices += 1
        else:
            starts.add(max(start, EPOCH))
    steps: list[tuple[date, Any]] = []
    for start in sorted(starts):
        chosen = prices[0].prices
        for conditional in reversed(prices):
            constraint = conditional.constraint
            if constraint is None or getattr(constraint, "start_date", start + _ONE_DAY) <= start:
                chosen = conditional.prices
                break
        if not steps or steps[-1][1] is not chosen:
            steps.append((start, chosen))
    return steps


_ONE_DAY = date(1970, 1, 2) - EPOCH


TOKEN_PRICE_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "reasoning": "output_reasoning_mtok",
}


def _token_prices(model_price: Any, report: ConversionReport | None) -> dict[str, Decimal | None] | None:
    """$/Mtok per token kind (tiered prices: the base tier), or None when not priced per token."""
    values: dict[str, Decimal | None] = {}
    for name, key in TOKEN_PRICE_KEYS.items():
        value = getattr(model_price, key, None)
        base = getattr(value, "base", None)  # TieredPrices: the price below the first tier
        if base is not None and report is not None:
            report.tiered_prices += 1
        values[name] = base if base is not None else value
    if values["input"] is None and values["output"] is None:
        return None
    return values


def _pico(value: Decimal, report: ConversionReport) -> int:
    exact = value * 1_000_000
    if exact != exact.to_integral_value():
        report.rounded_prices += 1
    return per_mtok_to_pico_per_token(value, round_to_pico=True)


def _epoch_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def clause_regex(clause: Any) -> str:
    """A regular expression that fully matches exactly the (lowercased) names the clause accepts.

    genai-prices compares lowercased names: starts_with/ends_with/contains/equals case-blind,
    `regex` with re.search. The result is used with fullmatch and re.IGNORECASE.
    """
    kind = type(clause).__name__
    if kind == "ClauseEquals":
        return re.escape(clause.equals)
    if kind == "ClauseStartsWith":
        return re.escape(clause.starts_with) + ".*"
    if kind == "ClauseEndsWith":
        return ".*" + re.escape(clause.ends_with)
    if kind == "ClauseContains":
        return ".*" + re.escape(clause.contains) + ".*"
    if kind == "ClauseRegex":
        re.compile(clause.regex)  # an invalid regex is genai-prices' bug, but must not hide here
        return f".*?(?:{clause.regex}).*"
    if kind == "ClauseOr":
        return "(?:" + "|".join(f"(?:{clause_regex(c)})" for c in clause.or_) + ")"
    if kind == "ClauseAnd":
        parts = [clause_regex(c) for c in clause.and_]
        return "".join(f"(?=(?:{p})$)" for p in parts) + ".*"
    raise UnsupportedClause(f"unsupported genai-prices match clause {kind}")


def describe_price(price: Price | None, model: str, at: datetime) -> dict[str, Any]:
    """What `callstream prices show` prints: the entry in force and the source it came from."""
    if price is None:
        return {"model": model, "at": at.isoformat(), "priced": False, "source": None}
    per_mtok = {
        name: float(Decimal(getattr(price, name)) / Decimal(1_000_000))
        for name in ("input", "output", "cache_read", "cache_write", "reasoning")
    }
    return {
        "model": model,
        "at": at.isoformat(),
        "priced": True,
        "price_id": price.id,
        "source": price.source,
        "provider": price.provider,
        "effective_from": datetime.fromtimestamp(price.effective_from_ms / 1000, UTC).isoformat(),
        "usd_per_million_tokens": per_mtok,
    }
