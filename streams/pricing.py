"""Dated model prices and the cost of one call.

A price entry matches model names by a regular expression and is in force from its
`effective_from` until a newer entry for the same model takes over, so every event is priced with
the price in force at its event time, and a replay of history reproduces the same costs (or the
corrected ones, after the catalogue is fixed). Money is computed in integer pico-dollars, so sums
are exact and independent of the order in which workers merge them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

PICO_PER_USD = 10**12
DEFAULT_OVERRIDES = Path(__file__).parent / "prices" / "gateway_overrides.json"


def per_mtok_to_pico_per_token(usd_per_million_tokens: float | str | Decimal) -> int:
    """USD per million tokens -> integer pico-dollars per token (exact for up to 6 decimals)."""
    value = Decimal(str(usd_per_million_tokens)) * 1_000_000
    if value != value.to_integral_value():
        raise ValueError(f"price {usd_per_million_tokens} $/Mtok has more than 6 decimals")
    return int(value)


@dataclass(frozen=True, slots=True)
class Price:
    """One dated price entry. Cache and reasoning prices default to the input/output price."""

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

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "override") -> Price:
        try:
            input_price = per_mtok_to_pico_per_token(raw["input"])
            output_price = per_mtok_to_pico_per_token(raw["output"])
            effective = datetime.fromisoformat(str(raw["effective_from"]).replace("Z", "+00:00"))
            if effective.tzinfo is None:
                raise ValueError("effective_from needs a timezone (e.g. 2025-01-01T00:00:00Z)")
            return cls(
                id=str(raw["id"]),
                provider=str(raw["provider"]),
                match=re.compile(str(raw["match"]), re.IGNORECASE),
                effective_from_ms=int(effective.timestamp() * 1000),
                input=input_price,
                output=output_price,
                cache_read=_optional_price(raw.get("cache_read"), input_price),
                cache_write=_optional_price(raw.get("cache_write"), input_price),
                reasoning=_optional_price(raw.get("reasoning"), output_price),
                source=source,
            )
        except (KeyError, ValueError, re.error) as exc:
            raise ValueError(f"bad price entry {raw.get('id', raw)!r}: {exc}") from exc


def _optional_price(value: Any, default: int) -> int:
    return default if value is None else per_mtok_to_pico_per_token(value)


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
            self._by_model[model] = timeline
        starts, prices = timeline
        i = bisect.bisect_right(starts, at_ms) - 1
        return prices[i] if i >= 0 else None

    def _timeline(self, model: str) -> tuple[list[int], list[Price]]:
        # The first source (in list order) that knows the model owns its whole timeline, so an
        # override never interleaves with another source's dates.
        matching = [p for p in self.entries if p.match.fullmatch(model)]
        if matching:
            first_source = matching[0].source
            matching = sorted(
                (p for p in matching if p.source == first_source), key=lambda p: p.effective_from_ms
            )
        return [p.effective_from_ms for p in matching], matching

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> PriceCatalogue:
        entries: list[Price] = []
        for path in paths:
            entries.extend(load_price_file(path))
        return cls(entries)


def load_price_file(path: Path) -> list[Price]:
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"cannot read price file {path}: {exc}") from exc
    items = doc.get("prices") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"price file {path} must be an object with a 'prices' list")
    return [Price.from_dict(item, source=f"override:{Path(path).name}") for item in items]


def default_catalogue() -> PriceCatalogue:
    return PriceCatalogue.from_files([DEFAULT_OVERRIDES])
