"""Rule evaluation: which alert groups a series has, and what each rule sees in it now. Pure.

An *alert group* is one rule applied to one series (and, for budget rules, one budget). Its
observation says whether the condition holds at `now_ms`, with the value that decided, or is
None when nothing can be said (no data yet, a flatline series never seen, lag samples not
old enough): then the alert keeps its state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from callstream.alerts.rules import (
    BudgetRule,
    DeadLetterRule,
    FlatlineRule,
    ForecastRule,
    Rule,
    RulesFile,
    SpikeRule,
    StalledRule,
    ThresholdRule,
    compare,
)
from callstream.alerts.series import (
    CONSUMER_DIMENSION,
    DEADLETTER_DIMENSION,
    MINUTE_MS,
    TOTAL,
    TOTAL_DIMENSION,
    SeriesData,
    SeriesId,
    minute_floor,
)
from callstream.budgets import EACH_KEY, Budget, BudgetFile, elapsed_fraction, forecast_usd, period_bounds


@dataclass(frozen=True)
class Group:
    rule: Rule
    series: SeriesId
    budget: Budget | None = None

    @property
    def alert_id(self) -> str:
        base = f"{self.rule.name}|{self.series.encode()}"
        return f"{base}|{self.budget.name}" if self.budget is not None else base


@dataclass(frozen=True)
class Observation:
    firing: bool
    value: float | None = None
    threshold: float | None = None
    level: float | None = None  # budget warning percentage reached
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _selected(rule: BudgetRule | ForecastRule, budgets: BudgetFile) -> list[Budget]:
    return [b for b in budgets.budgets if rule.budgets is None or b.name in rule.budgets]


def groups_for(series: SeriesId, rules: RulesFile, budgets: BudgetFile) -> list[Group]:
    """Every alert group that watches `series`."""
    groups: list[Group] = []
    for rule in rules.rules:
        if isinstance(rule, ThresholdRule | SpikeRule):
            if (rule.group_by or TOTAL_DIMENSION) == series.dimension:
                groups.append(Group(rule, series))
        elif isinstance(rule, FlatlineRule):
            if rule.group_by == series.dimension and (rule.keys is None or series.key in rule.keys):
                groups.append(Group(rule, series))
        elif isinstance(rule, BudgetRule | ForecastRule):
            for budget in _selected(rule, budgets):
                if budget.scope == "all":
                    matches = series == TOTAL
                else:
                    matches = budget.scope == series.dimension and budget.key in (EACH_KEY, series.key)
                if matches:
                    groups.append(Group(rule, series, budget))
        elif isinstance(rule, DeadLetterRule):
            if series.dimension == DEADLETTER_DIMENSION and series.key in rule.topics:
                groups.append(Group(rule, series))
        elif (
            isinstance(rule, StalledRule)
            and series.dimension == CONSUMER_DIMENSION
            and series.key in rule.groups
        ):
            groups.append(Group(rule, series))
    return groups


def pipeline_series(rules: RulesFile) -> list[SeriesId]:
    """The sampled series the rules need (dead-letter topics, consumer groups)."""
    wanted: set[SeriesId] = set()
    for rule in rules.rules:
        if isinstance(rule, DeadLetterRule):
            wanted.update(SeriesId(DEADLETTER_DIMENSION, topic) for topic in rule.topics)
        elif isinstance(rule, StalledRule):
            wanted.update(SeriesId(CONSUMER_DIMENSION, group) for group in rule.groups)
    return sorted(wanted)


def observe(group: Group, data: SeriesData, now_ms: int, zone: ZoneInfo) -> Observation | None:
    rule = group.rule
    if isinstance(rule, ThresholdRule):
        return _threshold(rule, data, now_ms)
    if isinstance(rule, SpikeRule):
        return _spike(rule, data, now_ms)
    if isinstance(rule, BudgetRule):
        assert group.budget is not None
        return _budget(group.budget, data, now_ms, zone)
    if isinstance(rule, ForecastRule):
        assert group.budget is not None
        return _forecast(rule, group.budget, data, now_ms, zone)
    if isinstance(rule, DeadLetterRule):
        return _dead_letters(rule, data, now_ms)
    if isinstance(rule, FlatlineRule):
        return _flatline(rule, data, now_ms)
    if isinstance(rule, StalledRule):
        return _stalled(rule, data, now_ms)
    raise TypeError(f"no evaluation for rule type {type(rule).__name__}")


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric == "error_rate":
        return f"{value:.2%}"
    if metric == "cost_usd":
        return f"${value:,.2f}"
    if metric.endswith("_ms"):
        return f"{value:,.0f} ms"
    return f"{value:,.0f}"


def _threshold(rule: ThresholdRule, data: SeriesData, now_ms: int) -> Observation:
    totals = data.recent(now_ms, rule.window_minutes)
    value = totals.metric(rule.metric)
    details = {"requests": totals.requests, "errors": totals.errors, "window_minutes": rule.window_minutes}
    if totals.requests < rule.min_requests or value is None:
        return Observation(False, value, rule.threshold, details=details | {"evaluated": False})
    firing = compare(value, rule.op, rule.threshold)
    message = (
        f"{rule.metric} {format_value(rule.metric, value)} over {rule.window_minutes} min "
        f"({totals.requests:,} calls, {totals.errors:,} errors); "
        f"alert when {rule.op} {format_value(rule.metric, rule.threshold)}"
    )
    return Observation(firing, value, rule.threshold, message=message, details=details)


def _spike(rule: SpikeRule, data: SeriesData, now_ms: int) -> Observation:
    window = data.recent(now_ms, rule.window_minutes)
    window_start = minute_floor(now_ms) - (rule.window_minutes - 1) * MINUTE_MS
    baseline = data.minutes(window_start - rule.baseline_minutes * MINUTE_MS, window_start)
    value, base = window.metric(rule.metric), baseline.metric(rule.metric)
    details = {
        "requests": window.requests,
        "baseline_requests": baseline.requests,
        "baseline": base,
        "window_minutes": rule.window_minutes,
        "baseline_minutes": rule.baseline_minutes,
    }
    enough = window.requests >= rule.min_requests and baseline.requests >= rule.min_requests
    if not enough or value is None or base is None or base <= 0:
        return Observation(False, value, None, details=details | {"evaluated": False})
    threshold = rule.factor * base
    message = (
        f"{rule.metric} {format_value(rule.metric, value)} over {rule.window_minutes} min is "
        f"{value / base:.1f}x its {rule.baseline_minutes}-min baseline {format_value(rule.metric, base)} "
        f"(alert at {rule.factor:g}x)"
    )
    return Observation(value >= threshold, value, threshold, message=message, details=details)


def _budget(budget: Budget, data: SeriesData, now_ms: int, zone: ZoneInfo) -> Observation:
    bounds = period_bounds(budget.period, now_ms, zone)
    totals = data.period(bounds.start_ms, bounds.end_ms, now_ms)
    spent = totals.cost_usd
    level = budget.level(spent)
    percent = 100 * spent / budget.amount_usd
    details = {
        "period": bounds.label,
        "timezone": zone.key,
        "amount_usd": budget.amount_usd,
        "percent": round(percent, 2),
        "unpriced_requests": totals.unpriced,
    }
    message = (
        f"spent ${spent:,.2f} of ${budget.amount_usd:,.2f} ({percent:.1f}%) "
        f"in {bounds.label} ({zone.key}), budget {budget.name}"
        + (f"; {totals.unpriced:,} unpriced calls not counted" if totals.unpriced else "")
    )
    threshold = budget.amount_usd * (level if level is not None else budget.warn_at_percent[0]) / 100
    return Observation(level is not None, spent, threshold, level, message, details)


def _forecast(
    rule: ForecastRule, budget: Budget, data: SeriesData, now_ms: int, zone: ZoneInfo
) -> Observation:
    bounds = period_bounds(budget.period, now_ms, zone)
    spent = data.period(bounds.start_ms, bounds.end_ms, now_ms).cost_usd
    projected = forecast_usd(spent, bounds, now_ms)
    details = {
        "period": bounds.label,
        "timezone": zone.key,
        "spent_usd": spent,
        "amount_usd": budget.amount_usd,
        "elapsed_fraction": round(elapsed_fraction(bounds, now_ms), 4),
    }
    if now_ms - bounds.start_ms < rule.min_elapsed_minutes * MINUTE_MS:
        return Observation(False, projected, budget.amount_usd, details=details | {"evaluated": False})
    message = (
        f"projected ${projected:,.2f} by the end of {bounds.label} ({zone.key}) at the rate so far "
        f"(${spent:,.2f} spent), budget {budget.name} ${budget.amount_usd:,.2f}"
    )
    return Observation(
        projected > budget.amount_usd, projected, budget.amount_usd, message=message, details=details
    )


def _dead_letters(rule: DeadLetterRule, data: SeriesData, now_ms: int) -> Observation | None:
    newest = data.sample_at_or_before(now_ms)
    if newest is None:
        return None
    since = now_ms - rule.window_minutes * MINUTE_MS
    base = data.sample_at_or_before(since) or data.samples_since(since)[0]
    count = int(newest[1]["end"]) - int(base[1]["end"])
    message = f"{count:,} dead letters in {rule.window_minutes} min"
    details = {"window_minutes": rule.window_minutes, "since_ms": base[0]}
    return Observation(
        count >= rule.threshold, float(count), float(rule.threshold), message=message, details=details
    )


def _flatline(rule: FlatlineRule, data: SeriesData, now_ms: int) -> Observation | None:
    last = data.last_active_ms()
    if last is None:
        return None
    silent_min = max(0, now_ms - last) / MINUTE_MS
    message = f"no calls for {silent_min:.0f} min (alert after {rule.minutes:g} min)"
    return Observation(
        silent_min >= rule.minutes, silent_min, rule.minutes, message=message, details={"last_call_ms": last}
    )


def _stalled(rule: StalledRule, data: SeriesData, now_ms: int) -> Observation | None:
    newest = data.sample_at_or_before(now_ms)
    base = data.sample_at_or_before(now_ms - int(rule.minutes * MINUTE_MS))
    if newest is None or base is None or newest[0] == base[0]:
        return None  # not watched for long enough yet
    (_, now_sample), (_, then) = newest, base
    lag, lag_then = int(now_sample["lag"]), int(then["lag"])
    moved = int(now_sample["committed"]) != int(then["committed"])
    stuck = sorted(
        tp
        for tp, (committed, end) in now_sample.get("partitions", {}).items()
        if end > committed and then.get("partitions", {}).get(tp, [None])[0] == committed
    )
    firing = lag > 0 and lag > lag_then and not moved
    message = (
        f"consumer group {now_sample.get('group', '?')}: lag {lag:,} "
        f"(was {lag_then:,} {rule.minutes:g} min ago), "
        + ("nothing committed since" if not moved else "committing")
    )
    details = {"group": now_sample.get("group"), "lag_then": lag_then, "stuck_partitions": stuck[:50]}
    return Observation(firing, float(lag), float(lag_then), message=message, details=details)


def all_series(*sources: Iterable[SeriesId]) -> list[SeriesId]:
    seen: set[SeriesId] = set()
    for source in sources:
        seen.update(source)
    return sorted(seen)
