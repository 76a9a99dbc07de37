"""What moving traffic to another model would have cost, and what prompt caching saves. Pure.

The recorded tokens of each window (input, output, cache-read, cache-write and reasoning tokens
kept apart) are priced again with the target model's price in force at that time, by the same
`cost_of` the stream prices calls with. Windows are split where a price changes inside them
(`timeplan.refine`), so each piece has one price. Sums are exact fractions of pico-dollars,
rounded to whole pico-dollars once per day and once for the total.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

from callstream.reports.figures import AggregateDoc, ratio
from callstream.reports.model import Caching, CachingRow, SavingsDay, usd
from callstream.reports.timeplan import Window
from callstream.streams.pricing import Price, cost_of

PriceAt = Callable[[str, int], Price | None]


@dataclass(frozen=True, slots=True)
class UsageSlice:
    """What one model recorded in one window (or one bucket of calls)."""

    model: str
    window: Window
    requests: int
    unpriced: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    reasoning_output_tokens: int
    cost_pico: int

    @classmethod
    def from_aggregate(cls, doc: AggregateDoc) -> UsageSlice:
        s = doc.state
        return cls(
            doc.key,
            doc.window,
            s.requests,
            s.unpriced_requests,
            s.input_tokens,
            s.output_tokens,
            s.cache_read_input_tokens,
            s.cache_creation_input_tokens,
            s.reasoning_output_tokens,
            s.cost_pico,
        )

    def cost_at(self, price: Price) -> int:
        return cost_of(
            price,
            self.input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            self.cache_creation_input_tokens,
            self.reasoning_output_tokens,
        ).total_pico


def price_is_uniform(models: Iterable[str], price_at: PriceAt) -> Callable[[Window], bool]:
    """True when every model has one price over the whole window (checked at its first and last ms)."""
    names = tuple(models)

    def uniform(window: Window) -> bool:
        return all(price_at(m, window.start_ms) == price_at(m, window.end_ms - 1) for m in names)

    return uniform


@dataclass
class SavingsResult:
    days: list[SavingsDay]
    total: SavingsDay
    excluded: list[str]
    target_prices: list[str]


@dataclass
class _Sum:
    requests: int = 0
    moved: Fraction = Fraction(0)
    current: Fraction = Fraction(0)
    simulated: Fraction = Fraction(0)

    def add(self, other: _Sum) -> None:
        self.requests += other.requests
        self.moved += other.moved
        self.current += other.current
        self.simulated += other.simulated

    def day(self, label: str) -> SavingsDay:
        current, simulated = round(self.current), round(self.simulated)
        savings = round(self.current - self.simulated)
        return SavingsDay(
            day=label,
            requests=self.requests,
            moved_requests=float(self.moved),
            current_pico=current,
            current_usd=usd(current),
            simulated_pico=simulated,
            simulated_usd=usd(simulated),
            savings_pico=savings,
            savings_usd=usd(savings),
        )


def simulate(
    slices: Iterable[UsageSlice],
    day_of: Callable[[Window], str],
    to_model: str,
    share: Fraction,
    price_at: PriceAt,
) -> SavingsResult:
    """`share` of each slice's traffic re-priced at the target's price; the rest keeps its recorded cost.

    current = recorded cost; simulated = current + share * (target cost of the tokens - current).
    A slice whose calls were all unpriced has no current cost and is left out (and listed), as is
    a slice with no target price at its time."""
    per_day: dict[str, _Sum] = defaultdict(_Sum)
    excluded: dict[str, int] = defaultdict(int)
    used: dict[str, None] = {}
    for piece in sorted(slices, key=lambda s: s.window):
        if not piece.requests:
            continue
        label = day_of(piece.window)
        if piece.unpriced == piece.requests:
            excluded[f"{label}: calls of {piece.model} had no price, so no current cost"] += piece.requests
            continue
        target = price_at(to_model, piece.window.start_ms)
        if target is None:
            excluded[f"{label}: {to_model} had no price"] += piece.requests
            continue
        used[target.id] = None
        current = Fraction(piece.cost_pico)
        simulated = current + share * (piece.cost_at(target) - current)
        per_day[label].add(_Sum(piece.requests, share * piece.requests, current, simulated))
    total = _Sum()
    for day_sum in per_day.values():
        total.add(day_sum)
    return SavingsResult(
        days=[per_day[label].day(label) for label in per_day],
        total=total.day("total"),
        excluded=[f"{what} ({count} calls)" for what, count in excluded.items()],
        target_prices=list(used),
    )


def caching(slices: Iterable[UsageSlice], hit_rate: Fraction, price_at: PriceAt) -> Caching:
    """Per model: what cache reads saved (input price - cache-read price per cached token, less the
    extra of cache writes over the input price), and what a `hit_rate` share of input tokens read
    from the cache would save (cache-write cost of that hypothetical not counted)."""
    tokens: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    saved: dict[str, int] = defaultdict(int)
    at_rate: dict[str, Fraction] = defaultdict(Fraction)
    unpriced: set[str] = set()
    no_discount: set[str] = set()
    for piece in slices:
        t = tokens[piece.model]
        t[0] += piece.input_tokens
        t[1] += piece.cache_read_input_tokens
        t[2] += piece.cache_creation_input_tokens
        price = price_at(piece.model, piece.window.start_ms)
        if price is None:
            unpriced.add(piece.model)
            continue
        if price.cache_read >= price.input:
            no_discount.add(piece.model)
        discount = price.input - price.cache_read
        saved[piece.model] += piece.cache_read_input_tokens * discount - piece.cache_creation_input_tokens * (
            price.cache_write - price.input
        )
        at_rate[piece.model] += hit_rate * piece.input_tokens * discount
    rows = []
    for model in sorted(tokens):
        input_tokens, read, created = tokens[model]
        priced = model not in unpriced
        rows.append(
            CachingRow(
                model=model,
                input_tokens=input_tokens,
                cache_read_input_tokens=read,
                cache_creation_input_tokens=created,
                hit_rate=ratio(read, input_tokens),
                saved_pico=saved[model],
                saved_usd=usd(saved[model]),
                saved_at_rate_pico=round(at_rate[model]),
                saved_at_rate_usd=usd(round(at_rate[model])),
                priced=priced,
            )
        )
    notes = []
    if no_discount:
        notes.append(
            "cache reads cost as much as uncached input for "
            + ", ".join(sorted(no_discount))
            + " (their price entries give no cache-read discount): caching saves nothing at those prices"
        )
    if unpriced:
        notes.append("no price known for " + ", ".join(sorted(unpriced)) + ": their savings are not counted")
    notes.append("the hypothetical hit rate leaves out what writing the cache would cost")
    return Caching(
        hit_rate=float(hit_rate),
        rows=rows,
        total_saved_usd=usd(sum(saved.values())),
        total_saved_at_rate_usd=usd(round(sum(at_rate.values(), Fraction(0)))),
        notes=notes,
    )
