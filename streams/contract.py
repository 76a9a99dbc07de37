"""What the stream app publishes: enriched call events, window aggregates and dead letters.

The sink (downstream) imports these; the stream app builds the same shapes as plain dicts on its
hot path (validating a pydantic model per event would halve throughput), and unit tests check
that those dicts validate against these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callstream.durations import DAY_MS, HOUR_MS, MINUTE_MS
from callstream.producers.contract import RawCallEvent
from callstream.producers.deadletter import DeadLetter

__all__ = ["DeadLetter", "EnrichedCallEvent", "LatencySummary", "TokenSums", "WindowAggregate"]

LatencyCategory = Literal["fast", "normal", "slow", "timeout_risk"]
RequestStatus = Literal["success", "error"]
WindowSize = Literal["1m", "1h", "1d"]
Dimension = Literal["model", "provider", "model_family", "service", "user"]

WINDOW_SIZES_MS: dict[str, int] = {"1m": MINUTE_MS, "1h": HOUR_MS, "1d": DAY_MS}


class EnrichedCallEvent(RawCallEvent):
    """A raw event plus what the stream derives from it. `event_id` stays the idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        description="The model, without date or version suffix, so that a call's request and response "
        "names (gpt-4.1 and gpt-4.1-2025-04-14) fall into one model for every per-model figure"
    )
    model_version: str = Field(
        description="The exact model name that served the call (response model, else request model)"
    )
    provider: str = Field(description="openai, anthropic, google, deepseek, ... or other")
    model_family: str = Field(
        description="The model without its size or tier variant (gpt-4.1-mini -> gpt-4.1)"
    )
    total_tokens: int
    latency_category: LatencyCategory
    request_status: RequestStatus
    error_category: str | None = Field(description="rate_limit_exceeded, timeout, ... ; None on success")
    priced: bool = Field(description="False when no price was known for the model at event time")
    unpriced_reason: Literal["unknown_model", "usage_missing"] | None = Field(
        default=None, description="Why `priced` is False: no price for the model, or no token usage"
    )
    price_id: str | None = Field(description="Which price catalogue entry priced this event")
    cost_usd: float | None = Field(description="None when unpriced, never a silent 0")
    input_cost_usd: float | None
    output_cost_usd: float | None
    cost_per_token_usd: float | None
    cost_pico: int = Field(default=0, ge=0, description="Exact cost in pico-dollars (0 when unpriced)")
    time_bucket: datetime = Field(description="Start of the event's one-minute bucket")
    client_ip: str | None = None
    late: bool = Field(default=False, description="Arrived after its windows' grace period")


class LatencySummary(BaseModel):
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class TokenSums(BaseModel):
    input: int = 0
    output: int = 0
    cache_read_input: int = 0
    cache_creation_input: int = 0
    reasoning_output: int = 0
    total: int = 0


class WindowAggregate(BaseModel):
    """The full state of one window for one key, as published after every change.

    `doc_id` is deterministic per (dimension, key, window size, window start) and `version`
    grows with every update, so a store can keep the newest and ignore older re-deliveries.
    """

    model_config = ConfigDict(extra="forbid")

    doc_id: str
    version: int = Field(ge=1)
    dimension: Dimension
    key: str
    provider: str | None = None
    model_family: str | None = None
    window_size: WindowSize
    window_start: datetime
    window_end: datetime
    requests: int
    successes: int
    errors: int
    error_rate: float
    errors_by_type: dict[str, int]
    tokens: TokenSums
    cost_usd: float
    cost_pico: int | None = Field(
        default=None, description="Exact cost in pico-dollars; None when beyond 64 bits (use cost_usd)"
    )
    unpriced_requests: int
    usage_missing_requests: int = 0
    latency_ms: LatencySummary
    late_events: int = 0
    latency_sketch: dict[str, Any] = Field(default_factory=dict, description="Mergeable sketch state")
