"""Synthetic LLM-call traffic that looks like a gateway's: skewed model shares, a few percent of
failures of several kinds, a tail of slow calls, and optionally late, duplicated and invalid events.

Deterministic for a seed, so tests compute their ground truth from the very events they publish.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from callstream.producers.contract import RawCallEvent


@dataclass(frozen=True)
class ModelProfile:
    name: str
    share: float
    median_latency_ms: float
    median_input_tokens: int
    median_output_tokens: int
    cache_read_share: float = 0.0  # of calls that read the prompt cache
    reasoning_share: float = 0.0  # of output tokens spent on reasoning
    response_name: str | None = None  # the dated name a provider returns, if it differs from `name`


# An LLM gateway's usual models plus one the price table does not know (it must show up unpriced).
DEFAULT_MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("gpt-4.1", 0.42, 900, 900, 280, cache_read_share=0.3, response_name="gpt-4.1-2025-04-14"),
    ModelProfile(
        "claude-sonnet-4-5",
        0.26,
        1400,
        1200,
        350,
        cache_read_share=0.4,
        response_name="claude-sonnet-4-5-20250929",
    ),
    ModelProfile("gemini-2.5-flash", 0.18, 450, 700, 220),
    ModelProfile("deepseek-v3.2", 0.12, 1100, 800, 400, reasoning_share=0.35),
    ModelProfile("acme-experimental-1", 0.02, 700, 500, 150),
)

# (share of all calls, status code, error type, message)
FAILURES: tuple[tuple[float, int | None, str | None, str], ...] = (
    (0.015, 429, None, "Rate limit reached for requests"),
    (0.010, 500, None, "The server had an error while processing your request"),
    (0.003, 401, None, "Incorrect API key provided"),
    (0.002, 400, None, "Invalid request: messages must not be empty"),
    (0.007, None, "timeout", "Request timed out"),
    (0.003, None, "connection_error", "Connection error"),
)
SLOW_TAIL_SHARE = 0.03
SERVICES = ("support-bot", "search-summary", "ticket-triage")


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def generate(
    count: int,
    seed: int = 0,
    start: datetime | None = None,
    rate_per_s: float = 200.0,
    models: tuple[ModelProfile, ...] = DEFAULT_MODELS,
    late_share: float = 0.0,
    late_by_s: float = 600.0,
) -> list[RawCallEvent]:
    """`count` calls starting at `start`, `rate_per_s` per second of event time on average.

    With `late_share`, that share of calls keeps an event time `late_by_s` seconds in the past of
    its neighbours: they arrive after their minute window closed.
    """
    return list(iter_events(count, seed, start, rate_per_s, models, late_share, late_by_s))


def iter_events(
    count: int,
    seed: int = 0,
    start: datetime | None = None,
    rate_per_s: float = 200.0,
    models: tuple[ModelProfile, ...] = DEFAULT_MODELS,
    late_share: float = 0.0,
    late_by_s: float = 600.0,
) -> Iterator[RawCallEvent]:
    rng = random.Random(seed)
    now = start or datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=count / rate_per_s)
    weights = [m.share for m in models]
    failure_weights = [f[0] for f in FAILURES]
    failure_total = sum(failure_weights)
    for i in range(count):
        now += timedelta(seconds=rng.expovariate(rate_per_s))
        model = rng.choices(models, weights)[0]
        event_time = now - timedelta(seconds=late_by_s) if rng.random() < late_share else now
        latency = _lognormal(rng, model.median_latency_ms, 0.5)
        if rng.random() < SLOW_TAIL_SHARE:
            latency = rng.uniform(5000, 30000)
        status: int | None = 200
        error_type: str | None = None
        message: str | None = None
        input_tokens = max(1, int(_lognormal(rng, model.median_input_tokens, 0.6)))
        output_tokens = max(1, int(_lognormal(rng, model.median_output_tokens, 0.7)))
        if rng.random() < failure_total:
            _, status, error_type, message = rng.choices(FAILURES, failure_weights)[0]
            output_tokens = 0
            if status is None:
                latency = max(latency, 30000.0) if error_type == "timeout" else min(latency, 50.0)
                input_tokens = 0
            else:
                input_tokens = 0 if status in (401, 429) else input_tokens
        cache_read = int(input_tokens * rng.uniform(0.2, 0.8)) if rng.random() < model.cache_read_share else 0
        reasoning = int(output_tokens * model.reasoning_share)
        yield RawCallEvent(
            event_id=f"evt-{seed}-{i:09d}",
            event_time=event_time,
            request_model=model.name,
            response_model=(model.response_name or model.name) if status == 200 else None,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_input_tokens=cache_read,
            reasoning_output_tokens=reasoning,
            duration_ms=round(latency, 3),
            status_code=status,
            error_type=error_type,
            error_message=message,
            server_address="api.holysheep.example",
            service_name=rng.choice(SERVICES),
            environment="demo",
            user_id=f"user-{rng.randrange(500)}",
            session_id=f"session-{rng.randrange(5000)}",
            metadata={"client_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"},
        )


def invalid_inputs() -> list[tuple[Any, str]]:
    """Inputs the stream must dead-letter, each with a fragment of the reason it must give."""
    base = {
        "event_id": "bad-base",
        "event_time": "2026-01-01T00:00:00Z",
        "request_model": "gpt-4.1",
        "duration_ms": 5,
    }
    return [
        ({**base, "event_id": "bad-negative-tokens", "input_tokens": -5}, "input_tokens"),
        ({**base, "event_id": "bad-no-model", "request_model": ""}, "request_model"),
        (
            {k: v for k, v in base.items() if k != "duration_ms"} | {"event_id": "bad-no-duration"},
            "duration_ms",
        ),
        ({**base, "event_id": "bad-naive-time", "event_time": "2026-01-01T00:00:00"}, "event_time"),
        ({**base, "event_id": "bad-status", "status_code": 999}, "status_code"),
        ({**base, "event_id": "bad-cache", "input_tokens": 10, "cache_read_input_tokens": 50}, "cache_read"),
        ("not an event at all", "expected an event object"),
    ]
