"""What a report says, as data: the JSON output, and what the terminal, CSV and HTML renderers format.

Money is carried twice: `*_pico` is the exact integer amount in pico-dollars (10^-12 USD) summed
as integers; `*_usd` is the same amount as a float for reading. Ratios (error rate, share of
spend, drift) and latencies are floats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from callstream.streams.contract import LatencySummary, TokenSums
from callstream.streams.pricing import PICO_PER_USD

REPORT_KIND: Literal["callstream.report"] = "callstream.report"
REPORT_VERSION = 1


def usd(pico: int | float) -> float:
    return pico / PICO_PER_USD


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GroupRow(_Row):
    """Figures of one group (a model, provider, day, hour, service or user) over its part of the range."""

    key: str
    requests: int
    successes: int
    errors: int
    error_rate: float | None = Field(description="errors / requests; None without requests")
    tokens: TokenSums
    cost_pico: int
    cost_usd: float
    unpriced_requests: int
    cost_per_1k_tokens_usd: float | None = Field(
        description="cost / (input + output tokens) * 1000; None when nothing in the group was priced"
    )
    share_of_spend: float | None = Field(description="This group's cost / the range's cost")
    latency_ms: LatencySummary
    percentiles: Literal["merged sketches", "unavailable"] = "merged sketches"


class TimePoint(_Row):
    """One model in one time bucket (local day or hour): the charts' series."""

    bucket: str
    start: datetime
    key: str
    requests: int
    errors: int
    error_rate: float | None
    cost_pico: int
    cost_usd: float


class PatternRow(_Row):
    """One hour of the day or one weekday, in the report's time zone, over the whole range."""

    slot: str
    occurrences: int = Field(description="How many such hours (or days) the range contains")
    requests: int
    errors: int
    error_rate: float | None
    cost_pico: int
    cost_usd: float
    requests_per_occurrence: float
    cost_usd_per_occurrence: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class Patterns(_Row):
    hour_of_day: list[PatternRow]
    weekday: list[PatternRow]


class ModelShare(_Row):
    model: str
    requests: int
    cost_pico: int
    cost_usd: float
    share_of_cost: float | None = Field(description="Of this key's cost")


class AttributionRow(_Row):
    key: str
    requests: int
    errors: int
    cost_pico: int
    cost_usd: float
    share_of_spend: float | None
    unpriced_requests: int
    input_tokens: int
    output_tokens: int
    latency_mean_ms: float | None
    models: list[ModelShare]


class Attribution(_Row):
    """Top keys of one call attribute (user, session, service) by cost, with their model mix."""

    dimension: str
    source: str
    distinct_keys: int | None = Field(description="Approximate (a cardinality count)")
    rows: list[AttributionRow]
    cost_pico_outside_top: int


class ErrorSample(_Row):
    message: str
    count: int


class ErrorCategory(_Row):
    category: str
    count: int
    rate: float | None = Field(description="Of the model's requests")
    samples: list[ErrorSample]


class ErrorModelRow(_Row):
    model: str
    requests: int
    errors: int
    error_rate: float | None
    categories: list[ErrorCategory]


class WastefulCall(_Row):
    event_id: str
    event_time: datetime
    model: str
    input_tokens: int
    output_tokens: int
    ratio: float
    cost_pico: int
    cost_usd: float
    session_id: str | None
    user_id: str | None
    service_name: str | None


class WastefulSession(_Row):
    session_id: str
    calls: int
    cost_pico: int
    cost_usd: float
    users: list[str]


class Waste(_Row):
    """Calls whose input/output token ratio exceeds the threshold (calls with no output excluded)."""

    threshold: float
    scanned_calls: int
    complete: bool = Field(description="False when the scan stopped at its limit")
    calls: int
    cost_pico: int
    cost_usd: float
    share_of_spend: float | None
    top_calls: list[WastefulCall]
    top_sessions: list[WastefulSession]


class ReconciliationRow(_Row):
    """Reported cost (from the source) against computed cost, on the calls that carry both."""

    model: str
    day: str
    calls: int
    calls_with_reported: int
    reported_usd: float
    computed_pico: int
    computed_usd: float
    drift_usd: float = Field(description="reported - computed")
    drift_ratio: float | None = Field(description="(reported - computed) / computed")
    reported_unpriced_calls: int = Field(description="Calls with a reported cost but no computed price")
    reported_unpriced_usd: float


class Reconciliation(_Row):
    rows: list[ReconciliationRow]
    total: ReconciliationRow | None


class SavingsDay(_Row):
    day: str
    requests: int
    moved_requests: float
    current_pico: int
    current_usd: float
    simulated_pico: int
    simulated_usd: float
    savings_pico: int
    savings_usd: float


class Savings(_Row):
    """Re-pricing of a model's recorded tokens with another model's dated prices."""

    from_model: str
    to_model: str
    share: float
    filters: dict[str, str]
    source: str
    assumptions: list[str]
    target_prices: list[str] = Field(description="Price entries of the target model that were used")
    days: list[SavingsDay]
    total: SavingsDay
    excluded: list[str] = Field(description="What could not be re-priced, and why")
    windows_used: dict[str, int]


class CachingRow(_Row):
    model: str
    input_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    hit_rate: float | None = Field(description="cache-read / input tokens")
    saved_pico: int = Field(description="What cache reads saved, less what cache writes cost extra")
    saved_usd: float
    saved_at_rate_pico: int = Field(description="What caching would save at the given hit rate")
    saved_at_rate_usd: float
    priced: bool


class Caching(_Row):
    hit_rate: float
    rows: list[CachingRow]
    total_saved_usd: float
    total_saved_at_rate_usd: float
    notes: list[str]


class BudgetRow(_Row):
    """One budget (or, for `key: "*"`, one key of it) in the day or month that contains the end of
    the report's range, up to that end: what was spent and where the rate so far leads."""

    name: str
    scope: str
    key: str | None = Field(description="The provider, model, ... (None: all calls)")
    period: Literal["day", "month"]
    period_label: str = Field(description="The day (2026-05-05) or month (2026-05) in the budget's zone")
    time_zone: str
    amount_usd: float
    spent_pico: int
    spent_usd: float
    spent_percent: float
    level_percent: float | None = Field(description="Highest warning percentage reached; None below all")
    elapsed_percent: float = Field(description="How much of the period lies before the range's end")
    forecast_usd: float = Field(description="Spend at the period's end if it goes on at the rate so far")
    forecast_percent: float


class RangeInfo(_Row):
    start: datetime
    end: datetime
    time_zone: str
    description: str


class Report(_Row):
    kind: Literal["callstream.report"] = REPORT_KIND
    version: int = REPORT_VERSION
    generated_at: datetime
    range: RangeInfo
    group_by: str
    over_time_by: Literal["day", "hour", "minute"]
    windows_used: dict[str, int] = Field(description="Aggregate windows read, by size")
    notes: list[str]
    total: GroupRow
    models: list[GroupRow] = Field(description="Per model, whatever the grouping")
    groups: list[GroupRow] = Field(description="Per the requested grouping (--by)")
    over_time: list[TimePoint]
    attribution: list[Attribution]
    patterns: Patterns | None
    errors: list[ErrorModelRow]
    waste: Waste | None
    reconciliation: Reconciliation | None
    savings: Savings | None
    caching: Caching | None
    budgets: list[BudgetRow] = Field(default_factory=list, description="From the budgets file, if read")
