"""A price the reconciliation shows to be wrong, as a dated override file `streams/pricing.py` reads.

The first price source that knows a model owns its whole timeline (docs/pricing.md), so the file
holds, per corrected model, the entry in force before (copied, with its own start) and the
corrected entry from the first day the provider's rows imply the new price. List the file first in
`CALLSTREAM_STREAM_PRICE_FILES`, then `callstream replay --from DAY --to DAY --run` re-rates history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from callstream.reports.bill.reconcile import PriceAt, PriceSuggestion, day_start_ms
from callstream.streams.pricing import PICO_PER_USD, Price

FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")


def _per_mtok(pico: int) -> float:
    return float(Decimal(pico) * 1_000_000 / Decimal(PICO_PER_USD))


def _entry(price: Price, entry_id: str, effective_ms: int, changes: dict[str, Decimal]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": entry_id,
        "provider": price.provider,
        "match": price.match.pattern,
        "effective_from": datetime.fromtimestamp(effective_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for name in FIELDS:
        entry[name] = float(changes[name]) if name in changes else _per_mtok(getattr(price, name))
    return entry


def override_file(suggestions: Iterable[PriceSuggestion], price_at: PriceAt) -> dict[str, Any]:
    """The override document for the suggested prices (models callstream had no price for are
    left out: their match pattern is not known here; write those by hand)."""
    by_model: dict[str, list[PriceSuggestion]] = defaultdict(list)
    for s in suggestions:
        if s.price_id is not None:
            by_model[s.model].append(s)
    entries = []
    for model, items in sorted(by_model.items()):
        first = min(s.day for s in items)
        current = price_at(model, day_start_ms(first))
        if current is None:
            continue
        changes = {s.token_kind: s.implied_usd_per_mtok for s in items if s.day == first}
        entries.append(_entry(current, f"bill:{current.id}", current.effective_from_ms, {}))
        entries.append(_entry(current, f"bill:{model}@{first.isoformat()}", day_start_ms(first), changes))
    return {
        "_comment": "Prices the providers' bills imply (callstream report bill --suggest-overrides). "
        "List this file first in CALLSTREAM_STREAM_PRICE_FILES and replay the days it changes.",
        "prices": entries,
    }
