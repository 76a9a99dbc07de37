"""Assemble a report: decide what to read (aggregates first, calls only where they are the only
answer), read it through the `Reader`, and hand plain records to the pure cores."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Literal

from callstream.budgets import EACH_KEY, BudgetFile, period_bounds
from callstream.durations import DAY_MS, HOUR_MS, MINUTE_MS
from callstream.reports import calls as calls_core
from callstream.reports import figures
from callstream.reports.calls import CallGroup
from callstream.reports.figures import AggregateDoc
from callstream.reports.model import BudgetRow, Caching, GroupRow, RangeInfo, Report, Savings
from callstream.reports.reader import Reader
from callstream.reports.savings import PriceAt, UsageSlice, caching, price_is_uniform, simulate
from callstream.reports.settings import ReportSettings
from callstream.reports.timeplan import (
    FINER,
    Bucket,
    TimeRange,
    Window,
    buckets,
    cover,
    window_sizes_used,
    windows_of,
)
from callstream.streams.sketch import RELATIVE_ACCURACY
from callstream.streams.windows import WindowState

GroupBy = Literal["model", "provider", "service", "user", "day", "hour"]
CALL_ATTRIBUTES = ("user", "session", "service")
MODEL = "model"


@dataclass(frozen=True)
class SavingsRequest:
    from_model: str
    to_model: str
    share: Fraction
    filters: Mapping[str, str] = field(default_factory=dict)
    automatic: bool = False


def over_time_bucket(length_ms: int) -> Literal["day", "hour", "minute"]:
    """Days from three days on, hours from three hours on, else minutes: enough points for a trend."""
    if length_ms >= 3 * DAY_MS:
        return "day"
    return "hour" if length_ms >= 3 * HOUR_MS else "minute"


def read_docs(
    reader: Reader, dimension: str, windows: list[Window], keys: list[str] | None = None
) -> list[AggregateDoc]:
    parsed = (figures.parse_aggregate(d) for d in reader.aggregates(dimension, windows, keys))
    return figures.select(parsed, windows)


def read_priced_docs(
    reader: Reader,
    dimension: str,
    windows: list[Window],
    price_at: PriceAt,
    also: Iterable[str] = (),
    keys: list[str] | None = None,
) -> tuple[list[AggregateDoc], list[Window]]:
    """Documents over `windows`, where a window in which a price of its model (or of `also`) changes
    is replaced by the finer windows inside it, down to minutes: each piece then has one price."""
    docs = read_docs(reader, dimension, windows, keys)
    extra = tuple(also)
    for _ in range(len(FINER)):
        mixed = {
            d.window
            for d in docs
            if d.window.size in FINER and not price_is_uniform((d.key, *extra), price_at)(d.window)
        }
        if not mixed:
            break
        finer = [
            Window(t, FINER[w.size])
            for w in sorted(mixed)
            for t in range(w.start_ms, w.end_ms, _ms(FINER[w.size]))
        ]
        docs = [d for d in docs if d.window not in mixed] + read_docs(reader, dimension, finer, keys)
        windows = [w for w in windows if w not in mixed] + finer
    return docs, windows


def _ms(size: str) -> int:
    from callstream.streams.contract import WINDOW_SIZES_MS

    return WINDOW_SIZES_MS[size]


def _sizes_note(sizes: Mapping[str, int], what: str) -> str:
    listed = ", ".join(f"{count} x {size}" for size, count in sizes.items()) or "none"
    return f"{what} read from window aggregates: {listed}"


def build_report(
    reader: Reader,
    span: TimeRange,
    group_by: GroupBy,
    price_at: PriceAt,
    settings: ReportSettings,
    savings: SavingsRequest | None = None,
    caching_hit_rate: float | None = None,
    now: datetime | None = None,
    budgets: BudgetFile | None = None,
) -> Report:
    notes: list[str] = [
        f"range rounded down to whole minutes: {span.describe()}",
        f"latency percentiles come from merging the windows' sketches (relative error at most "
        f"{RELATIVE_ACCURACY:.1%}); means from the stored means weighted by requests",
        "costs are sums of integer pico-dollars; each aggregate's cost_usd float is converted back to "
        "pico-dollars (exact below $2,251 per document)",
    ]
    length_ms = span.end_ms - span.start_ms
    over_time_by = over_time_bucket(length_ms)
    hours = buckets(span, "hour")
    days = buckets(span, "day")
    # Local hours (or minutes, for a short range's time chart): days and hours are unions of them.
    finest = buckets(span, "minute") if over_time_by == "minute" else hours
    hour_windows = windows_of(finest)
    present = reader.window_sizes(span)
    model_docs = read_docs(reader, MODEL, hour_windows)
    windows_used = window_sizes_used(hour_windows)
    notes.append(_sizes_note(windows_used, f"per-model figures, days and hours in {span.tz_name}"))
    if span.tz_name != "UTC" and any(span.local(b.start_ms).utcoffset() for b in days):
        notes.append(
            f"local days in {span.tz_name} do not align with the UTC 1d windows, so hours "
            + ("and minutes " if "1m" in windows_used else "")
            + "are used instead"
        )
    total_state = figures.total_state(model_docs)
    total_row = figures.group_row("(all)", total_state, total_state.cost_pico)
    model_states = figures.by_key(model_docs)

    models = figures.group_rows(model_states, total_state.cost_pico)
    if group_by == "model":
        groups = models
    elif group_by in ("day", "hour"):
        bucket_list = days if group_by == "day" else hours
        per = figures.assign(model_docs, bucket_list)
        groups = [
            figures.group_row(b.label, figures.total_state(per[b.label]), total_state.cost_pico)
            for b in bucket_list
        ]
    else:
        groups = []  # per service, user or provider: below, once the calls are read
    calls_total, distinct = reader.call_overview(span, CALL_ATTRIBUTES)
    call_groups = reader.call_groups(span, distinct, settings.top_n)
    attribution = [
        calls_core.attribution(a, "calls index", call_groups[a], calls_total, distinct[a], settings.top_n)
        for a in CALL_ATTRIBUTES
    ]
    if group_by not in ("model", "day", "hour"):
        groups, note = _groups_of(
            reader, group_by, span, present, total_state.cost_pico, settings, call_groups, distinct
        )
        notes.append(note)

    over_buckets = {"day": days, "hour": hours, "minute": finest}[over_time_by]
    over_time = figures.over_time(model_docs, over_buckets)
    samples = reader.error_samples(span, settings.error_samples_per_category)
    errors = calls_core.error_rows(model_states, samples)
    candidates, scanned, complete = reader.waste_candidates(span, settings.waste_ratio_threshold)
    waste = calls_core.waste(
        candidates, settings.waste_ratio_threshold, scanned, complete, calls_total, settings.top_n
    )
    reconciliation = calls_core.reconciliation(reader.reconcile_cells(span, days))

    if savings is None:
        savings = default_scenario(model_states, Fraction(str(settings.savings_share)))
    savings_report = build_savings(reader, span, savings, price_at) if savings else None
    if savings_report is None:
        notes.append("no savings scenario: fewer than two priced models in the range")
    hit_rate = Fraction(str(caching_hit_rate if caching_hit_rate is not None else settings.caching_hit_rate))
    caching_view = build_caching(reader, span, price_at, hit_rate)
    budget_rows = build_budgets(reader, budgets, span.end_ms, settings.top_n) if budgets else []
    if budgets:
        notes.append(
            "budgets: spend of the day or month (in the budgets file's time zone) that contains the "
            "range's end, up to that end; the forecast goes on at the rate so far"
        )
    if not total_state.requests:
        notes.insert(0, "no calls in this range")

    return Report(
        generated_at=now or datetime.now(UTC),
        range=RangeInfo(
            start=datetime.fromtimestamp(span.start_ms / 1000, UTC),
            end=datetime.fromtimestamp(span.end_ms / 1000, UTC),
            time_zone=span.tz_name,
            description=span.describe(),
        ),
        group_by=group_by,
        over_time_by=over_time_by,
        windows_used=windows_used,
        notes=notes,
        total=total_row,
        models=models,
        groups=groups,
        over_time=over_time,
        attribution=attribution,
        patterns=figures.patterns(model_docs, hours, span) if hours else None,
        errors=errors,
        waste=waste,
        reconciliation=reconciliation,
        savings=savings_report,
        caching=caching_view,
        budgets=budget_rows,
    )


# A budget's scope -> how an aggregate of the model dimension names its key (None: the calls index).
_MODEL_SCOPES: dict[str, Callable[[AggregateDoc], str]] = {
    "all": lambda d: "",
    "model": lambda d: d.key,
    "provider": lambda d: d.state.provider or "",
    "model_family": lambda d: d.state.model_family or "",
}


def build_budgets(reader: Reader, budgets: BudgetFile, as_of_ms: int, top_n: int) -> list[BudgetRow]:
    """Every budget's standing in the period that contains `as_of_ms` (the instant just before it:
    a range ending at midnight reports the day that just ended). Spend per model, provider, model
    family or in total comes from the model aggregates (whole windows tile the period up to the
    minute); per service or user from the calls index. A `key: "*"` budget lists its `top_n` keys by
    spend."""
    as_of_ms -= as_of_ms % MINUTE_MS
    zone = budgets.zone
    spend: dict[tuple[str, int], dict[str, int]] = {}
    model_docs: dict[int, list[AggregateDoc]] = {}  # per period start: read once for every scope
    rows: list[BudgetRow] = []
    for budget in budgets.budgets:
        bounds = period_bounds(budget.period, as_of_ms - 1, zone)
        cached = (budget.scope, bounds.start_ms)
        if cached not in spend:
            key_of = _MODEL_SCOPES.get(budget.scope)
            if key_of is None:
                spend[cached] = reader.cost_per_key(TimeRange(bounds.start_ms, as_of_ms), budget.scope)
            else:
                if bounds.start_ms not in model_docs:
                    model_docs[bounds.start_ms] = read_docs(reader, MODEL, cover(bounds.start_ms, as_of_ms))
                docs = model_docs[bounds.start_ms]
                spend[cached] = {k: s.cost_pico for k, s in figures.keyed(docs, key_of).items()}
        by_key = spend[cached]
        if budget.scope == "all":
            keys: list[str | None] = [None]
        elif budget.key == EACH_KEY:
            keys = [k for k, _ in sorted(by_key.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]]
        else:
            keys = [budget.key]
        for key in keys:
            spent = by_key.get("" if key is None else key, 0)
            rows.append(figures.budget_row(budget, key, spent, bounds, as_of_ms, budgets.timezone))
    return rows


def _groups_of(
    reader: Reader,
    attribute: str,
    span: TimeRange,
    present: Mapping[str, set[str]],
    total_cost_pico: int,
    settings: ReportSettings,
    call_groups: Mapping[str, list[CallGroup]],
    distinct: Mapping[str, int | None],
) -> tuple[list[GroupRow], str]:
    """Per-service or per-user figures: from their aggregates where the stream keeps that dimension
    (with merged-sketch percentiles), else from the calls index (top keys by cost, mean latency only).
    The one place that chooses, so adding the dimension to the stream switches every caller."""
    sizes = present.get(attribute)
    if sizes:
        usable = tuple(s for s in ("1d", "1h", "1m") if s in sizes)
        plan = [w for w in windows_of(buckets(span, "hour")) if w.size in usable]
        if "1m" not in usable:
            plan = [w for b in buckets(span, "hour") for w in b.windows if w.size != "1m"]
        docs = read_docs(reader, attribute, plan)
        rows = figures.group_rows(figures.by_key(docs), total_cost_pico)[: settings.top_n]
        return rows, _sizes_note(window_sizes_used(plan), f"{attribute} figures") + (
            ""
            if "1m" in usable
            else " (no 1m windows for this dimension: partial hours at the range's ends are left out)"
        )
    if attribute not in call_groups:
        _, distinct = reader.call_overview(span, [attribute])
        call_groups = reader.call_groups(span, distinct, settings.top_n)
    rows = [
        figures.group_row(g.key, g.state(), total_cost_pico, with_sketch=False)
        for g in calls_core.by_cost(call_groups[attribute])[: settings.top_n]
    ]
    return rows, (
        f"{attribute} figures come from the calls index (the stream keeps no {attribute} aggregates here): "
        f"top {settings.top_n} of about {distinct[attribute]} by cost, mean latency only (no percentiles)"
    )


def default_scenario(models: Mapping[str, WindowState], share: Fraction) -> SavingsRequest | None:
    """The tutorial's question, asked of this range: move the biggest spender's traffic to the priced
    model with the lowest cost per 1k tokens."""
    priced = {
        m: s for m, s in models.items() if figures.cost_per_1k_tokens(s) is not None and s.cost_pico > 0
    }
    if len(priced) < 2:
        return None
    biggest = max(priced, key=lambda m: (priced[m].cost_pico, m))
    cheapest = min(
        (m for m in priced if m != biggest), key=lambda m: (figures.cost_per_1k_tokens(priced[m]) or 0, m)
    )
    return SavingsRequest(biggest, cheapest, share, automatic=True)


def build_savings(reader: Reader, span: TimeRange, request: SavingsRequest, price_at: PriceAt) -> Savings:
    days = buckets(span, "day")
    plan = windows_of(days)
    if request.filters:
        # The aggregates know no service or user: the calls index answers, per planned window.
        windows = list(plan)
        for _ in range(len(FINER)):
            uniform = price_is_uniform((request.from_model, request.to_model), price_at)
            mixed = [w for w in windows if w.size in FINER and not uniform(w)]
            if not mixed:
                break
            windows = [w for w in windows if w not in mixed] + [
                Window(t, FINER[w.size])
                for w in mixed
                for t in range(w.start_ms, w.end_ms, _ms(FINER[w.size]))
            ]
        slices = reader.usage_slices(request.from_model, sorted(windows), request.filters, span)
        source = "calls index (filtered: " + ", ".join(f"{k}={v}" for k, v in request.filters.items()) + ")"
    else:
        docs, windows = read_priced_docs(
            reader, MODEL, plan, price_at, also=(request.to_model,), keys=[request.from_model]
        )
        slices = [UsageSlice.from_aggregate(d) for d in docs]
        source = "window aggregates (model dimension)"
    day_of = _day_of(days)
    result = simulate(slices, day_of, request.to_model, request.share, price_at)
    assumptions = [
        f"{float(request.share):.0%} of the selected {request.from_model} calls move to {request.to_model}; "
        "the rest keep their recorded cost",
        "the moved calls would use the same tokens of each kind: input, output, cache-read, cache-write and "
        "reasoning tokens are priced at the target's price for that kind, in force at the time of the call",
        "current cost is the cost recorded at ingestion (the price in force then); calls without a price "
        "have no current cost and are left out",
        "quality, latency and error rates of the target are not modelled",
    ]
    if request.automatic:
        assumptions.insert(
            0,
            "scenario chosen automatically: the model with the highest spend moves to the priced "
            "model with the lowest cost per 1k tokens in this range",
        )
    return Savings(
        from_model=request.from_model,
        to_model=request.to_model,
        share=float(request.share),
        filters=dict(request.filters),
        source=source,
        assumptions=assumptions,
        target_prices=result.target_prices,
        days=result.days,
        total=result.total,
        excluded=result.excluded,
        windows_used=window_sizes_used(windows),
    )


def _day_of(days: list[Bucket]) -> Callable[[Window], str]:
    starts = [b.start_ms for b in days]

    def day_of(window: Window) -> str:
        return days[bisect.bisect_right(starts, window.start_ms) - 1].label

    return day_of


def build_caching(
    reader: Reader, span: TimeRange, price_at: PriceAt, hit_rate: Fraction, filtered: bool = False
) -> Caching:
    """What prompt caching saved per model over the range, and what it would save at `hit_rate`."""
    docs, _ = read_priced_docs(reader, MODEL, windows_of(buckets(span, "day")), price_at)
    view = caching([UsageSlice.from_aggregate(d) for d in docs], hit_rate, price_at)
    if filtered:
        view.notes.insert(
            0, "the caching view covers every call in the range: the filters select the scenario only"
        )
    return view
