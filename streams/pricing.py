"""Dated model prices and the cost of one call.

A price entry matches model names by a regular expression and is in force from its
`effective_from` until a newer entry of the same timeline takes over, so every event is priced
with the price in force at its event time, and a replay of history reproduces the same costs (or
the corrected ones, after the catalogue is fixed). Money is computed in integer pico-dollars, so
sums are exact and independent of the order in which workers merge them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

PICO_PER_USD = 10**12
PICO_PER_TOKEN_PER_USD_PER_MTOK = PICO_PER_USD // 1_000_000  # 1 $/Mtok = 1e6 pico-$ per token
DEFAULT_OVERRIDES = Path(__file__).parent / "prices" / "gateway_overrides.json"
# Named price profiles: override files priced before genai-prices. `list` is the providers' list
# prices alone (genai-prices); `gateway` is the ELK tutorial gateway's price sheet (the seed data's
# flat prices: gpt-4.1 at $8/$8 per million), which the demo and the tests' seed traffic use.
PRICE_PROFILES: dict[str, tuple[Path, ...]] = {"list": (), "gateway": (DEFAULT_OVERRIDES,)}
PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")
ENTRY_FIELDS = frozenset({"id", "provider", "match", "effective_from", *PRICE_FIELDS})
MAX_CACHED_MODELS = 10_000  # distinct model names whose timelines are kept; producers control names
# A compact date suffix (gpt-5.2-20251211, as LiteLLM and OpenRouter write it): when nothing matches
# a name, it is looked up once more with the dashed date (gpt-5.2-2025-12-11), as genai-prices does.
_COMPACT_DATE = re.compile(r"-(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")


def per_mtok_to_pico_per_token(
    usd_per_million_tokens: float | str | Decimal, round_to_pico: bool = False
) -> int:
    """USD per million tokens -> integer pico-dollars per token.

    Exact for up to 6 decimals. A price with more decimals is an error unless `round_to_pico`
    (then it is rounded half-to-even to a whole pico-dollar per token, i.e. to 6 decimals of $/Mtok).
    """
    if isinstance(usd_per_million_tokens, bool) or not isinstance(
        usd_per_million_tokens, int | float | str | Decimal
    ):
        raise ValueError(f"price must be a number of USD per million tokens, got {usd_per_million_tokens!r}")
    try:
        usd = Decimal(str(usd_per_million_tokens).strip())
    except InvalidOperation:
        raise ValueError(f"price {usd_per_million_tokens!r} is not a number") from None
    if not usd.is_finite() or usd < 0:
        raise ValueError(f"price {usd_per_million_tokens!r} must be a finite number >= 0")
    value = usd * PICO_PER_TOKEN_PER_USD_PER_MTOK
    whole = value.to_integral_value(rounding=ROUND_HALF_EVEN)
    if value != whole and not round_to_pico:
        raise ValueError(
            f"price {usd_per_million_tokens} $/Mtok has more than 6 decimals "
            "(prices are kept in whole pico-dollars per token)"
        )
    return int(whole)


@dataclass(frozen=True, slots=True)
class Price:
    """One dated price entry. Cache and reasoning prices default to the input/output price.

    `series` names the timeline the entry belongs to within its source (empty: the whole source is
    one timeline, as in an override file); the first matching (source, series) owns a model.
    """

    id: str
    provider: str
    match: re.Pattern[str]
    effective_from_ms: int
    input: int  # pico-USD per token
    output: int
    cache_read: int
    cache_write: int
    reasoning: int
    source: str = "override"
    series: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "override") -> Price:
        """An entry of a price file; ValueError naming the entry and the problem otherwise."""
        if not isinstance(raw, dict):
            raise ValueError(f"bad price entry {raw!r}: expected an object")
        label = raw.get("id", raw)
        try:
            unknown = sorted(k for k in raw if k not in ENTRY_FIELDS and not str(k).startswith("_"))
            if unknown:
                raise ValueError(f"unknown fields {unknown} (allowed: {sorted(ENTRY_FIELDS)})")
            missing = [
                k for k in ("id", "provider", "match", "effective_from", "input", "output") if k not in raw
            ]
            if missing:
                raise ValueError(f"missing fields {missing}")
            for name in ("id", "provider", "match", "effective_from"):
                if not isinstance(raw[name], str) or not raw[name].strip():
                    raise ValueError(f"{name} must be a non-empty string, got {raw[name]!r}")
            prices = {name: _price_field(raw, name) for name in PRICE_FIELDS}
            try:
                effective = datetime.fromisoformat(raw["effective_from"].replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"effective_from {raw['effective_from']!r} is not an ISO-8601 time "
                    "(e.g. 2025-01-01T00:00:00Z)"
                ) from None
            if effective.tzinfo is None:
                raise ValueError("effective_from needs a timezone (e.g. 2025-01-01T00:00:00Z)")
            try:
                match = re.compile(raw["match"], re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"match {raw['match']!r} is not a valid regular expression: {exc}") from None
            input_price, output_price = prices["input"], prices["output"]
            assert input_price is not None and output_price is not None  # required above
            return cls(
                id=raw["id"],
                provider=raw["provider"],
                match=match,
                effective_from_ms=round(effective.timestamp() * 1000),
                input=input_price,
                output=output_price,
                cache_read=_default(prices["cache_read"], input_price),
                cache_write=_default(prices["cache_write"], input_price),
                reasoning=_default(prices["reasoning"], output_price),
                source=source,
            )
        except ValueError as exc:
            raise ValueError(f"bad price entry {label!r}: {exc}") from None


def _price_field(raw: dict[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    try:
        return per_mtok_to_pico_per_token(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class Cost:
    input_pico: int
    output_pico: int

    @property
    def total_pico(self) -> int:
        return self.input_pico + self.output_pico


def cost_of(
    price: Price,
    input_tokens: int,
    output_tokens: int,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    reasoning_output_tokens: int = 0,
) -> Cost:
    """Cached and reasoning tokens are parts of the input/output totals: each token is priced once."""
    uncached = input_tokens - cache_read_input_tokens - cache_creation_input_tokens
    plain_output = output_tokens - reasoning_output_tokens
    return Cost(
        input_pico=uncached * price.input
        + cache_read_input_tokens * price.cache_read
        + cache_creation_input_tokens * price.cache_write,
        output_pico=plain_output * price.output + reasoning_output_tokens * price.reasoning,
    )


@dataclass
class PriceCatalogue:
    """Price entries, most specific source first; lookups are cached per model name."""

    entries: list[Price]
    _by_model: dict[str, tuple[list[int], list[Price]]] = field(default_factory=dict, repr=False)

    def lookup(self, model: str, at_ms: int) -> Price | None:
        """The entry in force for `model` at `at_ms` (epoch ms), or None if the model is unpriced."""
        timeline = self._by_model.get(model)
        if timeline is None:
            timeline = self._timeline(model)
            if len(self._by_model) >= MAX_CACHED_MODELS:
                self._by_model.clear()
            self._by_model[model] = timeline
        starts, prices = timeline
        i = bisect.bisect_right(starts, at_ms) - 1
        return prices[i] if i >= 0 else None

    def _timeline(self, model: str) -> tuple[list[int], list[Price]]:
        # The first source (in list order) that knows the model owns its whole timeline, so an
        # override never interleaves with another source's dates.
        matching = [p for p in self.entries if p.match.fullmatch(model)]
        if not matching:
            dashed = _COMPACT_DATE.sub(_dashed_date, model)
            if dashed != model:
                matching = [p for p in self.entries if p.match.fullmatch(dashed)]
        if matching:
            owner = (matching[0].source, matching[0].series)
            matching = sorted(
                (p for p in matching if (p.source, p.series) == owner), key=lambda p: p.effective_from_ms
            )
        return [p.effective_from_ms for p in matching], matching

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> PriceCatalogue:
        entries: list[Price] = []
        for path in paths:
            entries.extend(load_price_file(path))
        return cls(entries)


def _dashed_date(match: re.Match[str]) -> str:
    year, month, day = match.groups()
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return match.group(0)
    return f"-{year}-{month}-{day}"


def load_price_file(path: Path) -> list[Price]:
    """Entries of one override file; ValueError naming the file and the entry otherwise."""
    path = Path(path)
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"cannot read price file {path}: {exc}") from exc
    items = doc.get("prices") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"price file {path} must be an object with a 'prices' list")
    entries: list[Price] = []
    seen_ids: set[str] = set()
    seen_starts: dict[tuple[str, int], str] = {}
    for index, item in enumerate(items):
        try:
            price = Price.from_dict(item, source=f"override:{path.name}")
        except ValueError as exc:
            raise ValueError(f"price file {path}, entry #{index}: {exc}") from None
        if price.id in seen_ids:
            raise ValueError(f"price file {path}, entry #{index}: duplicate id {price.id!r}")
        slot = (price.match.pattern, price.effective_from_ms)
        if slot in seen_starts:
            raise ValueError(
                f"price file {path}, entry #{index} ({price.id!r}): same match and effective_from as "
                f"{seen_starts[slot]!r}, so which one is in force would be ambiguous"
            )
        seen_ids.add(price.id)
        seen_starts[slot] = price.id
        entries.append(price)
    return entries


def default_catalogue() -> PriceCatalogue:
    return PriceCatalogue.from_files([DEFAULT_OVERRIDES])
