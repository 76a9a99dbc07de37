"""The provider's bill beside callstream's cost, per provider, model and UTC day, explained.

Inputs: the imported `BillRow`s, callstream's usage per (day, model) from the 1-day model
aggregates, and the dated price lookup the stream priced with. For every (day, provider, model) it
gives both sides' tokens per kind and cost, the differences, and the explanations it can prove:

- `price`: the provider's cost for a token kind divided by its tokens differs from the price in
  force (which price id), with the price the provider's rows imply;
- `token_kind`: the same number of input (or output) tokens split differently between kinds, e.g.
  cached tokens the provider billed as input;
- `alias`: a model the provider bills under a name that maps to another callstream model (by the
  `aliases` setting, or found: a billed name callstream never saw whose tokens equal those of a
  callstream model the provider did not bill that day);
- `coverage`: tokens the provider billed that callstream never saw (a whole day, or a share), or
  calls callstream saw that the provider did not bill;
- `currency`: a bill not in USD is compared in tokens only;
- `rounding`: a money difference within the tolerance.

The money difference is split into a price effect (the provider's tokens times the difference
between the price in force and the price it charged), a token effect (the token differences at the
price in force) and the rest, so a reader sees how much each cause accounts for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream.reports.bill.rows import BillRow
from callstream.streams.enrich import base_model, normalise_model
from callstream.streams.pricing import PICO_PER_USD, Price

PriceAt = Callable[[str, int], Price | None]
TOKEN_KINDS = ("input", "cache_read", "cache_write", "output", "reasoning")
INPUT_SIDE = ("input", "cache_read", "cache_write")
PRICE_ATTR = {
    "input": "input",
    "cache_read": "cache_read",
    "cache_write": "cache_write",
    "output": "output",
    "reasoning": "reasoning",
}
MTOK = Decimal(1_000_000)
PICO = Decimal(PICO_PER_USD)
ExplanationKind = Literal["price", "token_kind", "alias", "coverage", "currency", "rounding", "unexplained"]


class BillSettings(BaseSettings):
    """When the bill and callstream "agree". Environment prefix `CALLSTREAM_BILL_`."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_BILL_", extra="ignore")

    money_tolerance_usd: Decimal = Field(default=Decimal("0.01"), ge=0)  # per day and model
    money_tolerance_ratio: Decimal = Field(default=Decimal("0.01"), ge=0)  # of the provider's cost
    token_tolerance_ratio: Decimal = Field(default=Decimal(0), ge=0)  # of the provider's tokens per kind
    # A billed model name -> callstream's model, for names the stream's normalisation does not map.
    aliases: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """callstream's side of one (day, model), token kinds exclusive like the bill's."""

    provider: str
    requests: int
    tokens: Mapping[str, int]
    cost_pico: int

    @classmethod
    def from_aggregate(cls, doc: Mapping[str, Any]) -> Usage:
        t = doc["tokens"]
        read, write, reasoning = t["cache_read_input"], t["cache_creation_input"], t["reasoning_output"]
        tokens = {
            "input": t["input"] - read - write,
            "cache_read": read,
            "cache_write": write,
            "output": t["output"] - reasoning,
            "reasoning": reasoning,
        }
        cost = doc.get("cost_pico")
        if cost is None:
            cost = round(Decimal(str(doc["cost_usd"])) * PICO)
        return cls(doc.get("provider") or "other", int(doc["requests"]), tokens, int(cost))


def usage_by_day(aggregates: Iterable[Mapping[str, Any]]) -> dict[tuple[date, str], Usage]:
    """1-day `model` aggregates -> {(UTC day, model): Usage}."""
    out: dict[tuple[date, str], Usage] = {}
    for doc in aggregates:
        if doc.get("dimension") != "model" or doc.get("window_size") != "1d":
            continue
        start = doc["window_start"]
        day = (
            start.astimezone(UTC).date()
            if isinstance(start, datetime)
            else datetime.fromisoformat(str(start).replace("Z", "+00:00")).astimezone(UTC).date()
        )
        out[(day, doc["key"])] = Usage.from_aggregate(doc)
    return out


@dataclass(frozen=True)
class Explanation:
    kind: ExplanationKind
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Line:
    day: date
    provider: str
    model: str  # callstream's name
    billed_as: list[str]  # the names in the provider's rows
    currency: str
    provider_tokens: dict[str, int]
    callstream_tokens: dict[str, int]
    token_diff: dict[str, int]  # callstream - provider, per kind the provider reported
    provider_cost: Decimal | None
    callstream_cost: Decimal
    cost_diff: Decimal | None  # callstream - provider
    price_effect: Decimal = Decimal(0)
    token_effect: Decimal = Decimal(0)
    agrees: bool = True
    explanations: list[Explanation] = field(default_factory=list)

    def explained(self) -> bool:
        return self.agrees or all(e.kind != "unexplained" for e in self.explanations)


@dataclass(frozen=True)
class PriceSuggestion:
    """What the provider's rows imply for a token kind, beside the price in force."""

    day: date
    model: str
    token_kind: str
    implied_usd_per_mtok: Decimal
    in_force_usd_per_mtok: Decimal | None
    price_id: str | None


@dataclass
class Reconciliation:
    lines: list[Line]
    suggestions: list[PriceSuggestion]
    settings: BillSettings

    @property
    def disagreeing_days(self) -> list[date]:
        return sorted({line.day for line in self.lines if not line.agrees})


def _usd(pico: int) -> Decimal:
    return Decimal(pico) / PICO


def _per_mtok(pico_per_token: int) -> Decimal:
    return Decimal(pico_per_token) * MTOK / PICO


def _q(value: Decimal, places: str = "0.000001") -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


@dataclass
class _Billed:
    provider: str
    names: set[str] = field(default_factory=set)
    quantity: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Decimal] = field(default_factory=dict)
    currencies: set[str] = field(default_factory=set)

    def total_tokens(self) -> int:
        return sum(self.quantity.values())


def resolve_model(name: str, aliases: Mapping[str, str]) -> tuple[str, bool]:
    """callstream's model for a billed name, and whether the alias table mapped it."""
    if name in aliases:
        return aliases[name], True
    lowered = normalise_model(name)
    if lowered in aliases:
        return aliases[lowered], True
    return base_model(lowered), False


def reconcile(
    rows: Iterable[BillRow],
    usage: Mapping[tuple[date, str], Usage],
    price_at: PriceAt,
    settings: BillSettings | None = None,
) -> Reconciliation:
    settings = settings or BillSettings()
    billed: dict[tuple[date, str, str], _Billed] = {}
    aliased: dict[tuple[date, str, str], set[str]] = defaultdict(set)
    for row in rows:
        model, by_alias = resolve_model(row.model, settings.aliases)
        cell = billed.setdefault((row.day, row.provider, model), _Billed(row.provider))
        cell.names.add(row.model)
        cell.currencies.add(row.currency)
        if by_alias:
            aliased[(row.day, row.provider, model)].add(row.model)
        kind = row.token_kind
        if row.quantity is not None and kind != "other":
            cell.quantity[kind] = cell.quantity.get(kind, 0) + row.quantity
        if row.cost is not None:
            cell.cost[kind] = cell.cost.get(kind, Decimal(0)) + row.cost

    # Billed names callstream never saw, and callstream models the provider did not bill that day:
    # equal token totals pair them (an alias no table maps yet).
    unbilled = {
        (day, u.provider, model): u
        for (day, model), u in usage.items()
        if (day, u.provider, model) not in billed and any(k[0] == day and k[1] == u.provider for k in billed)
    }
    found_alias: dict[tuple[date, str, str], str] = {}
    for key, cell in sorted(billed.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        day, provider, model = key
        if (day, model) in usage or not cell.quantity:
            continue
        for ukey, u in sorted(unbilled.items(), key=lambda kv: kv[0][2]):
            if ukey[0] == day and ukey[1] == provider and sum(u.tokens.values()) == cell.total_tokens():
                found_alias[key] = ukey[2]
                del unbilled[ukey]
                break

    lines = []
    suggestions: list[PriceSuggestion] = []
    for key, cell in sorted(billed.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        day, provider, model = key
        explanations: list[Explanation] = []
        if key in found_alias:
            target = found_alias[key]
            names = ", ".join(sorted(cell.names))
            explanations.append(
                Explanation(
                    "alias",
                    f"the provider bills {names}, which callstream records as {target} (same tokens); "
                    f'map it with CALLSTREAM_BILL_ALIASES=\'{{"{sorted(cell.names)[0]}": "{target}"}}\'',
                    {"billed_as": sorted(cell.names), "callstream_model": target, "found_by": "tokens"},
                )
            )
            model = target
        elif key in aliased:
            explanations.append(
                Explanation(
                    "alias",
                    f"the provider bills {', '.join(sorted(aliased[key]))}, mapped to {model} by the aliases "
                    "setting",
                    {"billed_as": sorted(aliased[key]), "callstream_model": model, "found_by": "setting"},
                )
            )
        line, line_suggestions = _compare(
            day, provider, model, cell, usage.get((day, model)), price_at, settings
        )
        line.explanations[:0] = explanations
        lines.append(line)
        suggestions.extend(line_suggestions)
    for (day, provider, model), u in sorted(unbilled.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        lines.append(_unbilled(day, provider, model, u, settings))
    for line in lines:
        _finish(line, settings)
    return Reconciliation(lines, suggestions, settings)


def _compare(
    day: date,
    provider: str,
    model: str,
    cell: _Billed,
    seen: Usage | None,
    price_at: PriceAt,
    settings: BillSettings,
) -> tuple[Line, list[PriceSuggestion]]:
    currency = sorted(cell.currencies)[0] if len(cell.currencies) == 1 else "/".join(sorted(cell.currencies))
    cs_tokens = dict(seen.tokens) if seen else dict.fromkeys(TOKEN_KINDS, 0)
    if "reasoning" not in cell.quantity:  # the provider bills reasoning as output
        cs_tokens["output"] = cs_tokens.get("output", 0) + cs_tokens.pop("reasoning", 0)
    has_quantities = bool(cell.quantity)
    provider_tokens = {k: cell.quantity.get(k, 0) for k in cs_tokens} if has_quantities else {}
    token_diff = {k: cs_tokens[k] - provider_tokens[k] for k in provider_tokens}
    provider_cost = sum(cell.cost.values(), Decimal(0)) if cell.cost else None
    cs_cost = _usd(seen.cost_pico) if seen else Decimal(0)
    line = Line(
        day=day,
        provider=provider,
        model=model,
        billed_as=sorted(cell.names),
        currency=currency,
        provider_tokens=provider_tokens,
        callstream_tokens=cs_tokens,
        token_diff=token_diff,
        provider_cost=provider_cost,
        callstream_cost=cs_cost,
        cost_diff=(cs_cost - provider_cost) if provider_cost is not None and currency == "USD" else None,
    )
    if currency != "USD":
        line.explanations.append(
            Explanation(
                "currency",
                f"billed in {currency}; callstream prices in USD, so only tokens are compared",
                {"currency": currency},
            )
        )
    if seen is None:
        billed = f"{cell.total_tokens():,} tokens" if has_quantities else "usage"
        money = f" (${provider_cost:,.6f})" if provider_cost is not None else ""
        line.explanations.append(
            Explanation(
                "coverage",
                f"callstream saw no calls of {model} on {day}: the provider billed {billed}{money} "
                "for calls that never reached callstream",
                {"unseen_tokens": cell.total_tokens(), "unseen_cost": str(provider_cost)},
            )
        )
        return line, []
    price = price_at(model, day_start_ms(day))
    suggestions = []
    if has_quantities:
        line.explanations.extend(_token_explanations(line, settings))
    for kind, cost in sorted(cell.cost.items()):
        if kind not in TOKEN_KINDS or currency != "USD":
            continue
        quantity = cell.quantity.get(kind) if has_quantities else cs_tokens.get(kind)
        if not quantity:
            continue
        in_force = _per_mtok(getattr(price, PRICE_ATTR[kind])) if price else None
        expected = (Decimal(quantity) * in_force / MTOK) if in_force is not None else None
        if expected is not None and abs(expected - cost) <= settings.money_tolerance_usd:
            continue
        implied = _q(cost * MTOK / Decimal(quantity))
        suggestions.append(PriceSuggestion(day, model, kind, implied, in_force, price.id if price else None))
        if expected is not None and in_force is not None:
            line.price_effect += expected - cost
            line.explanations.append(
                Explanation(
                    "price",
                    f"the provider charged ${implied}/Mtok for {kind} ({cost:,.6f} for {quantity:,} tokens); "
                    f"the price in force is ${_q(in_force)}/Mtok ({price.id if price else '-'})",
                    {
                        "token_kind": kind,
                        "implied_usd_per_mtok": str(implied),
                        "in_force_usd_per_mtok": str(_q(in_force)),
                        "price_id": price.id if price else None,
                        "effect_usd": str(_q(expected - cost)),
                    },
                )
            )
        else:
            line.explanations.append(
                Explanation(
                    "price",
                    f"callstream has no price for {model} on {day}; the provider charged ${implied}/Mtok "
                    f"for {kind}",
                    {"token_kind": kind, "implied_usd_per_mtok": str(implied), "price_id": None},
                )
            )
    if price is not None and has_quantities:
        line.token_effect = sum(
            (Decimal(d) * _per_mtok(getattr(price, PRICE_ATTR[k])) / MTOK for k, d in token_diff.items()),
            Decimal(0),
        )
    return line, suggestions


def _token_explanations(line: Line, settings: BillSettings) -> list[Explanation]:
    out: list[Explanation] = []
    p, c = line.provider_tokens, line.callstream_tokens

    def side(kinds: Iterable[str]) -> tuple[int, int]:
        ks = [k for k in kinds if k in p]
        return sum(p[k] for k in ks), sum(c[k] for k in ks)

    for kinds, cached, plain, what in (
        (INPUT_SIDE, ("cache_read", "cache_write"), "input", "input"),
        (("output", "reasoning"), ("reasoning",), "output", "output"),
    ):
        billed, seen = side(kinds)
        moved = {k: c[k] - p[k] for k in cached if k in p and c[k] != p[k]}
        if billed == seen and moved:
            parts = [
                f"{abs(n):,} {k.replace('_', ' ')} tokens as {plain}"
                if n > 0
                else f"{-n:,} {plain} tokens as {k}"
                for k, n in moved.items()
            ]
            out.append(
                Explanation(
                    "token_kind",
                    f"same {what} tokens ({billed:,}), split differently: the provider counted "
                    + " and ".join(parts),
                    {"side": what, "moved": moved},
                )
            )
        elif billed != seen and billed and not _within(seen - billed, billed, settings):
            share = Decimal(seen) / Decimal(billed)
            if seen < billed:
                text = (
                    f"callstream recorded {share:.2%} of the {what} tokens the provider billed "
                    f"({billed - seen:,} fewer): calls that did not reach callstream"
                )
            else:
                text = f"callstream recorded {seen - billed:,} more {what} tokens than the provider billed"
            out.append(Explanation("coverage", text, {"side": what, "billed": billed, "seen": seen}))
    return out


def _within(diff: int, reference: int, settings: BillSettings) -> bool:
    return abs(Decimal(diff)) <= settings.token_tolerance_ratio * Decimal(reference)


def _unbilled(day: date, provider: str, model: str, u: Usage, settings: BillSettings) -> Line:
    cost = _usd(u.cost_pico)
    return Line(
        day=day,
        provider=provider,
        model=model,
        billed_as=[],
        currency="USD",
        provider_tokens={},
        callstream_tokens=dict(u.tokens),
        token_diff={},
        provider_cost=None,
        callstream_cost=cost,
        cost_diff=None,
        agrees=False,
        explanations=[
            Explanation(
                "coverage",
                f"callstream saw {u.requests:,} calls of {model} (${cost:,.6f}) that the provider's bill "
                f"for {day} does not have (billed elsewhere, or under a name nothing maps)",
                {"requests": u.requests},
            )
        ],
    )


def _finish(line: Line, settings: BillSettings) -> None:
    """Agreement within the tolerances; rounding and unexplained differences named."""
    if not line.billed_as:
        return
    tokens_agree = all(
        _within(d, line.provider_tokens.get(k, 0), settings) for k, d in line.token_diff.items()
    )
    money_agree = True
    if line.cost_diff is not None and line.provider_cost is not None:
        allowed = max(settings.money_tolerance_usd, settings.money_tolerance_ratio * abs(line.provider_cost))
        money_agree = abs(line.cost_diff) <= allowed
        if money_agree and tokens_agree and line.cost_diff != 0:
            line.explanations.append(
                Explanation(
                    "rounding",
                    f"${line.cost_diff:,.6f} apart, within the tolerance (${allowed:,.6f})",
                    {"allowed_usd": str(allowed)},
                )
            )
    line.agrees = tokens_agree and money_agree and line.currency == "USD"
    if not line.agrees and not [e for e in line.explanations if e.kind not in ("rounding", "alias")]:
        line.explanations.append(Explanation("unexplained", "no cause found for the difference"))
    elif not money_agree and line.cost_diff is not None and line.callstream_cost != 0:
        rest = line.cost_diff - line.price_effect - line.token_effect
        if abs(rest) > settings.money_tolerance_usd:
            line.explanations.append(
                Explanation(
                    "unexplained",
                    f"${rest:,.6f} of the money difference is not accounted for by prices or tokens",
                    {"rest_usd": str(_q(rest))},
                )
            )
