"""The report's arithmetic over window aggregates: select, merge, group, share. Pure.

An aggregate document becomes the stream's own mergeable `WindowState` again (counts, integer
tokens, pico-dollars, the latency sketch), so a group over any set of windows is a merge, and its
percentiles come from the merged sketch: never from the stored per-window p95s, which do not add up.

Float notes: a document's `cost_usd` is turned back into integer pico-dollars (exact for documents
under 2^51 pico-dollars, about $2,251; within a few pico-dollars above), and the latency mean is
recovered from the stored mean times the request count (microsecond resolution, like the stream).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from callstream.budgets import Budget, PeriodBounds, elapsed_fraction, forecast_usd, spent_percent
from callstream.reports.model import BudgetRow, GroupRow, PatternRow, Patterns, TimePoint, usd
from callstream.reports.timeplan import Bucket, TimeRange, Window
from callstream.streams.contract import LatencySummary, TokenSums
from callstream.streams.pricing import PICO_PER_USD
from callstream.streams.windows import WindowState

K = TypeVar("K", bound=Hashable)
QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class AggregateDoc:
    """One stored window aggregate, as a mergeable state."""

    dimension: str
    key: str
    window: Window
    state: WindowState


def usd_to_pico(value: float) -> int:
    return round(value * PICO_PER_USD)


def window_of(doc: Mapping[str, Any]) -> Window:
    start = doc["window_start"]
    if isinstance(start, str):
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return Window(round(start.timestamp() * 1000), doc["window_size"])


def state_from_aggregate(doc: Mapping[str, Any]) -> WindowState:
    """A WindowAggregate document (as stored) back into the stream's mergeable state."""
    return WindowState.from_aggregate(dict(doc))


def parse_aggregate(doc: Mapping[str, Any]) -> AggregateDoc:
    return AggregateDoc(doc["dimension"], doc["key"], window_of(doc), state_from_aggregate(doc))


def select(docs: Iterable[AggregateDoc], windows: Iterable[Window]) -> list[AggregateDoc]:
    """Only the documents of planned windows: a store may hold more (e.g. a wider query)."""
    planned = set(windows)
    return [d for d in docs if d.window in planned]


def merge_by(items: Iterable[tuple[K, WindowState]]) -> dict[K, WindowState]:
    out: dict[K, WindowState] = {}
    for key, state in items:
        target = out.get(key)
        if target is None:
            target = out[key] = WindowState()
        target.merge(state)
    return out


def assign(docs: Iterable[AggregateDoc], bucket_list: list[Bucket]) -> dict[str, list[AggregateDoc]]:
    """Documents into the buckets that contain their windows, by time: windows of a finer plan fall
    into coarser buckets whose edges are among the finer plan's (local days are unions of local hours)."""
    starts = [b.start_ms for b in bucket_list]
    out: dict[str, list[AggregateDoc]] = {b.label: [] for b in bucket_list}
    for doc in docs:
        i = bisect.bisect_right(starts, doc.window.start_ms) - 1
        if i >= 0 and doc.window.end_ms <= bucket_list[i].end_ms:
            out[bucket_list[i].label].append(doc)
    return out


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def latency_of(state: WindowState) -> LatencySummary:
    sketch = state.sketch
    quantiles = {name: sketch.quantile(q) for name, q in QUANTILES.items()} if sketch.count else {}
    return LatencySummary(
        min=state.latency_min_ms,
        max=state.latency_max_ms,
        mean=state.latency_sum_us / 1000 / state.requests if state.requests else None,
        **quantiles,
    )


def tokens_of(state: WindowState) -> TokenSums:
    return TokenSums(
        input=state.input_tokens,
        output=state.output_tokens,
        cache_read_input=state.cache_read_input_tokens,
        cache_creation_input=state.cache_creation_input_tokens,
        reasoning_output=state.reasoning_output_tokens,
        total=state.input_tokens + state.output_tokens,
    )


def cost_per_1k_tokens(state: WindowState) -> float | None:
    """Cost over every token of the group; None when nothing in it was priced."""
    tokens = state.input_tokens + state.output_tokens
    if not tokens or (state.requests and state.unpriced_requests == state.requests):
        return None
    return state.cost_pico / PICO_PER_USD / tokens * 1000


def group_row(key: str, state: WindowState, total_cost_pico: int, with_sketch: bool = True) -> GroupRow:
    return GroupRow(
        key=key,
        requests=state.requests,
        successes=state.successes,
        errors=state.errors,
        error_rate=ratio(state.errors, state.requests),
        tokens=tokens_of(state),
        cost_pico=state.cost_pico,
        cost_usd=usd(state.cost_pico),
        unpriced_requests=state.unpriced_requests,
        cost_per_1k_tokens_usd=cost_per_1k_tokens(state),
        share_of_spend=ratio(state.cost_pico, total_cost_pico),
        latency_ms=latency_of(state),
        percentiles="merged sketches" if with_sketch and state.sketch.count else "unavailable",
    )


def group_rows(states: Mapping[str, WindowState], total_cost_pico: int) -> list[GroupRow]:
    """Rows by cost, then requests, then key (a stable order for tables and tests)."""
    ordered = sorted(states.items(), key=lambda kv: (-kv[1].cost_pico, -kv[1].requests, kv[0]))
    return [group_row(key, state, total_cost_pico) for key, state in ordered]


def total_state(docs: Iterable[AggregateDoc]) -> WindowState:
    total = WindowState()
    for doc in docs:
        total.merge(doc.state)
    return total


def by_key(docs: Iterable[AggregateDoc]) -> dict[str, WindowState]:
    return merge_by((d.key, d.state) for d in docs)


def by_bucket(docs: Iterable[AggregateDoc], buckets: list[Bucket]) -> dict[str, WindowState]:
    """Every bucket gets a row, traffic or not (an idle day is information too)."""
    return {label: total_state(members) for label, members in assign(docs, buckets).items()}


def over_time(docs: Iterable[AggregateDoc], buckets: list[Bucket]) -> list[TimePoint]:
    """Per bucket and key (model): requests, errors and cost, for the time charts."""
    per = assign(docs, buckets)
    merged = merge_by(((label, d.key), d.state) for label, members in per.items() for d in members)
    starts = {b.label: b.start_ms for b in buckets}
    points = []
    for (label, key), state in sorted(merged.items(), key=lambda kv: (starts[kv[0][0]], kv[0][1])):
        points.append(
            TimePoint(
                bucket=label,
                start=datetime.fromtimestamp(starts[label] / 1000, UTC),
                key=key,
                requests=state.requests,
                errors=state.errors,
                error_rate=ratio(state.errors, state.requests),
                cost_pico=state.cost_pico,
                cost_usd=usd(state.cost_pico),
            )
        )
    return points


def patterns(docs: Iterable[AggregateDoc], hours: list[Bucket], span: TimeRange) -> Patterns:
    """Hour of day and weekday in the report's time zone, from local-hour buckets.

    `occurrences` counts the local hours (or days) of each slot in the range, traffic or not, so
    per-occurrence means compare slots fairly even when a range holds two Mondays and one Sunday."""
    hour_slot: dict[str, str] = {}
    day_slot: dict[str, str] = {}
    hour_seen: dict[str, int] = defaultdict(int)
    days_seen: dict[str, set[str]] = defaultdict(set)
    for bucket in hours:
        local = span.local(bucket.start_ms)
        hour_slot[bucket.label] = f"{local.hour:02d}"
        day_slot[bucket.label] = WEEKDAYS[local.weekday()]
        hour_seen[f"{local.hour:02d}"] += 1
        days_seen[WEEKDAYS[local.weekday()]].add(local.date().isoformat())
    per_hour = by_bucket(docs, hours)
    hour_states = merge_by((hour_slot[label], state) for label, state in per_hour.items())
    day_states = merge_by((day_slot[label], state) for label, state in per_hour.items())
    hour_rows = [_pattern_row(s, hour_states[s], hour_seen[s]) for s in sorted(hour_states)]
    day_rows = [_pattern_row(d, day_states[d], len(days_seen[d])) for d in WEEKDAYS if d in day_states]
    return Patterns(hour_of_day=hour_rows, weekday=day_rows)


def _pattern_row(slot: str, state: WindowState, occurrences: int) -> PatternRow:
    sketch = state.sketch
    return PatternRow(
        slot=slot,
        occurrences=occurrences,
        requests=state.requests,
        errors=state.errors,
        error_rate=ratio(state.errors, state.requests),
        cost_pico=state.cost_pico,
        cost_usd=usd(state.cost_pico),
        requests_per_occurrence=state.requests / occurrences if occurrences else 0.0,
        cost_usd_per_occurrence=usd(state.cost_pico) / occurrences if occurrences else 0.0,
        latency_p50_ms=sketch.quantile(0.5) if sketch.count else None,
        latency_p95_ms=sketch.quantile(0.95) if sketch.count else None,
    )


def keyed(docs: Iterable[AggregateDoc], key: Callable[[AggregateDoc], K]) -> dict[K, WindowState]:
    return merge_by((key(d), d.state) for d in docs)


def budget_row(
    budget: Budget, key: str | None, spent_pico: int, bounds: PeriodBounds, as_of_ms: int, zone_name: str
) -> BudgetRow:
    """A budget's standing at `as_of_ms`, with the same arithmetic the alert worker's budget and
    forecast rules use (`callstream.budgets`)."""
    spent = usd(spent_pico)
    forecast = forecast_usd(spent, bounds, as_of_ms)
    return BudgetRow(
        name=budget.name,
        scope=budget.scope,
        key=key,
        period=budget.period,
        period_label=bounds.label,
        time_zone=zone_name,
        amount_usd=budget.amount_usd,
        spent_pico=spent_pico,
        spent_usd=spent,
        spent_percent=spent_percent(spent, budget.amount_usd),
        level_percent=budget.level(spent),
        elapsed_percent=100.0 * elapsed_fraction(bounds, as_of_ms),
        forecast_usd=forecast,
        forecast_percent=spent_percent(forecast, budget.amount_usd),
    )
