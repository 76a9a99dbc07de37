"""The report's arithmetic over what only the calls index knows: who spent, what failed and how,
which calls were wasteful, and how reported cost compares with computed cost. Pure.

The reader turns Elasticsearch answers into the plain records below; these functions rank, share
and reconcile them. Costs are integer pico-dollars (the calls carry `cost_pico`); reported costs
are floats, as the source reported them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction

from callstream.reports.figures import ratio
from callstream.reports.model import (
    Attribution,
    AttributionRow,
    ErrorCategory,
    ErrorModelRow,
    ErrorSample,
    ModelShare,
    Reconciliation,
    ReconciliationRow,
    Waste,
    WastefulCall,
    WastefulSession,
    usd,
)
from callstream.streams.windows import WindowState


@dataclass(frozen=True, slots=True)
class ModelUse:
    requests: int
    cost_pico: int


@dataclass(frozen=True, slots=True)
class CallGroup:
    """One key of a call attribute (a user, session or service) and what its calls add up to."""

    key: str
    requests: int
    errors: int
    cost_pico: int
    unpriced: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_output_tokens: int = 0
    latency_mean_ms: float | None = None
    models: Mapping[str, ModelUse] = field(default_factory=dict)

    def state(self) -> WindowState:
        """As a mergeable state without a sketch: the calls index gives no percentiles."""
        return WindowState.of(
            requests=self.requests,
            successes=self.requests - self.errors,
            errors=self.errors,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            reasoning_output_tokens=self.reasoning_output_tokens,
            cost_pico=self.cost_pico,
            unpriced_requests=self.unpriced,
            latency_sum_us=round(self.latency_mean_ms * self.requests * 1000) if self.latency_mean_ms else 0,
        )


@dataclass(frozen=True, slots=True)
class CallSample:
    """The fields of one call that the waste check needs."""

    event_id: str
    event_time_ms: int
    model: str
    input_tokens: int
    output_tokens: int
    cost_pico: int
    session_id: str | None = None
    user_id: str | None = None
    service_name: str | None = None


@dataclass(frozen=True, slots=True)
class ReconcileCell:
    """One model on one local day: all calls, and those with a reported cost, priced or not."""

    model: str
    day: str
    calls: int
    reported_priced_calls: int
    reported_priced_usd: float
    computed_priced_pico: int
    reported_unpriced_calls: int
    reported_unpriced_usd: float


def by_cost(groups: Iterable[CallGroup]) -> list[CallGroup]:
    return sorted(groups, key=lambda g: (-g.cost_pico, -g.requests, g.key))


def attribution(
    dimension: str,
    source: str,
    groups: Iterable[CallGroup],
    total_cost_pico: int,
    distinct_keys: int | None,
    top_n: int,
) -> Attribution:
    """The top `top_n` keys by cost with their model mix; what the rest spent is kept as a sum."""
    ranked = by_cost(groups)
    top = ranked[:top_n]
    rows = [
        AttributionRow(
            key=g.key,
            requests=g.requests,
            errors=g.errors,
            cost_pico=g.cost_pico,
            cost_usd=usd(g.cost_pico),
            share_of_spend=ratio(g.cost_pico, total_cost_pico),
            unpriced_requests=g.unpriced,
            input_tokens=g.input_tokens,
            output_tokens=g.output_tokens,
            latency_mean_ms=g.latency_mean_ms,
            models=[
                ModelShare(
                    model=model,
                    requests=use.requests,
                    cost_pico=use.cost_pico,
                    cost_usd=usd(use.cost_pico),
                    share_of_cost=ratio(use.cost_pico, g.cost_pico),
                )
                for model, use in sorted(g.models.items(), key=lambda kv: (-kv[1].cost_pico, kv[0]))
            ],
        )
        for g in top
    ]
    outside = total_cost_pico - sum(g.cost_pico for g in top)
    return Attribution(
        dimension=dimension,
        source=source,
        distinct_keys=distinct_keys,
        rows=rows,
        cost_pico_outside_top=max(outside, 0),
    )


def error_rows(
    models: Mapping[str, WindowState], samples: Mapping[tuple[str, str], list[tuple[str, int]]]
) -> list[ErrorModelRow]:
    """Errors per model and category with rates of the model's requests, and the most frequent
    messages of each (model, category). Models without errors are listed with a zero rate."""
    rows = []
    for model, state in sorted(models.items(), key=lambda kv: (-kv[1].errors, kv[0])):
        categories = [
            ErrorCategory(
                category=category,
                count=count,
                rate=ratio(count, state.requests),
                samples=[ErrorSample(message=m, count=c) for m, c in samples.get((model, category), [])],
            )
            for category, count in sorted(state.errors_by_type.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        rows.append(
            ErrorModelRow(
                model=model,
                requests=state.requests,
                errors=state.errors,
                error_rate=ratio(state.errors, state.requests),
                categories=categories,
            )
        )
    return rows


def is_wasteful(call: CallSample, threshold: Fraction) -> bool:
    """Input/output ratio above the threshold; a call without output has no ratio (it failed, or it
    was an embedding) and is left to the error section."""
    return call.output_tokens > 0 and call.input_tokens > threshold * call.output_tokens


def waste(
    calls: Iterable[CallSample],
    threshold: float,
    scanned: int,
    complete: bool,
    total_cost_pico: int,
    top_n: int,
) -> Waste:
    limit = Fraction(str(threshold))
    wasteful = [c for c in calls if is_wasteful(c, limit)]
    wasteful.sort(key=lambda c: (-c.cost_pico, c.event_id))
    cost = sum(c.cost_pico for c in wasteful)
    sessions: dict[str, list[CallSample]] = defaultdict(list)
    for call in wasteful:
        if call.session_id:
            sessions[call.session_id].append(call)
    top_sessions = sorted(sessions.items(), key=lambda kv: (-sum(c.cost_pico for c in kv[1]), kv[0]))
    return Waste(
        threshold=threshold,
        scanned_calls=scanned,
        complete=complete,
        calls=len(wasteful),
        cost_pico=cost,
        cost_usd=usd(cost),
        share_of_spend=ratio(cost, total_cost_pico),
        top_calls=[
            WastefulCall(
                event_id=c.event_id,
                event_time=datetime.fromtimestamp(c.event_time_ms / 1000, UTC),
                model=c.model,
                input_tokens=c.input_tokens,
                output_tokens=c.output_tokens,
                ratio=c.input_tokens / c.output_tokens,
                cost_pico=c.cost_pico,
                cost_usd=usd(c.cost_pico),
                session_id=c.session_id,
                user_id=c.user_id,
                service_name=c.service_name,
            )
            for c in wasteful[:top_n]
        ],
        top_sessions=[
            WastefulSession(
                session_id=session,
                calls=len(members),
                cost_pico=sum(c.cost_pico for c in members),
                cost_usd=usd(sum(c.cost_pico for c in members)),
                users=sorted({c.user_id for c in members if c.user_id}),
            )
            for session, members in top_sessions[:top_n]
        ],
    )


def reconciliation_row(model: str, day: str, cells: list[ReconcileCell]) -> ReconciliationRow:
    reported = sum(c.reported_priced_usd for c in cells)
    computed = sum(c.computed_priced_pico for c in cells)
    return ReconciliationRow(
        model=model,
        day=day,
        calls=sum(c.calls for c in cells),
        calls_with_reported=sum(c.reported_priced_calls + c.reported_unpriced_calls for c in cells),
        reported_usd=reported,
        computed_pico=computed,
        computed_usd=usd(computed),
        drift_usd=reported - usd(computed),
        drift_ratio=ratio(reported - usd(computed), usd(computed)),
        reported_unpriced_calls=sum(c.reported_unpriced_calls for c in cells),
        reported_unpriced_usd=sum(c.reported_unpriced_usd for c in cells),
    )


def reconciliation(cells: Iterable[ReconcileCell]) -> Reconciliation:
    """Per model and day, and in total. Drift compares the calls that have both a reported and a
    computed cost; calls reported but unpriced here are counted apart (no computed cost to compare)."""
    kept = [c for c in cells if c.reported_priced_calls or c.reported_unpriced_calls]
    rows = [reconciliation_row(c.model, c.day, [c]) for c in sorted(kept, key=lambda c: (c.model, c.day))]
    total = reconciliation_row("(all)", "(all)", kept) if kept else None
    return Reconciliation(rows=rows, total=total)
