"""The normalised shape every provider export becomes: one row per day, provider, model and token kind.

Token kinds are exclusive (each token is in exactly one kind), like callstream's prices:
`input` is input that was neither read from nor written to a prompt cache, `cache_read` and
`cache_write` the cached parts, `output` output other than reasoning (or all output, when a
provider does not split reasoning out), `reasoning` reasoning output, `other` anything billed that
is not tokens (web searches, tool use, ...), kept so the money adds up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal, TypeVar

TokenKind = Literal["input", "cache_read", "cache_write", "output", "reasoning", "other"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("input", "cache_read", "cache_write", "output", "reasoning", "other")
Dataset = Literal["usage", "cost", "usage_cost"]
_N = TypeVar("_N", int, Decimal)
MAX_PROBLEMS_KEPT = 50  # unreadable rows listed with their place; all of them are counted
MAX_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class BillRow:
    """What the provider says about one day, model and token kind.

    `quantity` is a number of tokens (None when the export states only money, or for `other`);
    `cost` is in `currency` (None when the export states only quantities). `dataset` says which of
    the provider's exports a row came from: a usage export and a cost export of the same days are
    imported side by side, and an amended export replaces only the rows of its own kind.
    """

    day: date
    provider: str
    model: str
    token_kind: TokenKind
    quantity: int | None
    cost: Decimal | None
    currency: str
    dataset: Dataset

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.day.isoformat(), self.provider, self.dataset, self.model, self.token_kind)


@dataclass(frozen=True, slots=True)
class Problem:
    """A row that could not be read: where (line number, or JSON path) and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ParseResult:
    rows: list[BillRow] = field(default_factory=list)
    unreadable: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped: int = 0  # rows of other services (not LLM usage), read and left out on purpose
    format: str = ""

    def bad(self, where: str, reason: str) -> None:
        self.unreadable += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(Problem(where, reason[:MAX_REASON_CHARS]))


def combine(rows: Iterable[BillRow]) -> list[BillRow]:
    """Rows with the same key (several projects, regions or API keys of one day) summed into one;
    sorted by key. A missing quantity or cost stays missing only if every part lacks it."""
    merged: dict[tuple[str, str, str, str, str], BillRow] = {}
    for row in rows:
        key = row.key()
        seen = merged.get(key)
        if seen is None:
            merged[key] = row
            continue
        if seen.currency != row.currency:
            raise ValueError(
                f"{row.day} {row.provider} {row.model} {row.token_kind}: rows in {seen.currency} and "
                f"{row.currency}; one export holds one currency"
            )
        merged[key] = BillRow(
            day=row.day,
            provider=row.provider,
            model=row.model,
            token_kind=row.token_kind,
            quantity=_add(seen.quantity, row.quantity),
            cost=_add(seen.cost, row.cost),
            currency=row.currency,
            dataset=row.dataset,
        )
    return [merged[k] for k in sorted(merged)]


def _add(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b
