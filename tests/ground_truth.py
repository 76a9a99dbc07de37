"""Expected aggregates computed straight from generated events, independently of callstream's code.

Written the obvious way (dicts, Fractions, sorted lists) from the rules as documented, so a bug in
the stream's enrichment, pricing or window arithmetic shows up as a mismatch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from callstream.producers.contract import RawCallEvent

# The tutorial gateway's prices, USD per million tokens: one price for every token kind.
SEED_PRICES = {
    "gpt-4.1": Fraction(8),
    "claude-sonnet-4-5": Fraction(15),
    "gemini-2.5-flash": Fraction(5, 2),
    "deepseek-v3.2": Fraction(42, 100),
}
PROVIDERS = {
    "gpt-4.1": "openai",
    "claude-sonnet-4-5": "anthropic",
    "gemini-2.5-flash": "google",
    "deepseek-v3.2": "deepseek",
}
SIZES_MS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}


def expected_error_type(event: RawCallEvent) -> str | None:
    status, kind = event.status_code, event.error_type
    if kind == "timeout":
        return "timeout"
    if kind == "connection_error":
        return "connection_error"
    if status is None:
        return "unknown_error"
    if 200 <= status < 300:
        return None
    return {401: "authentication_failure", 403: "permission_denied", 429: "rate_limit_exceeded"}.get(
        status, "provider_server_error" if status >= 500 else "client_error"
    )


@dataclass
class Expected:
    requests: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    reasoning: int = 0
    cost: Fraction = Fraction(0)
    unpriced: int = 0
    latencies: list[float] = field(default_factory=list)


def unique_events(events: list[RawCallEvent]) -> list[RawCallEvent]:
    seen: set[str] = set()
    out = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


PriceFn = Callable[[str, datetime], Fraction | None]


def seed_price(model: str, at: datetime) -> Fraction | None:
    return SEED_PRICES.get(model)


SERVICE_AND_USER_SIZES = ("1h", "1d")  # per-service and per-user windows are long-range only


def expected_windows(
    events: list[RawCallEvent], sizes: tuple[str, ...] = ("1m", "1h", "1d"), price: PriceFn = seed_price
) -> dict[str, Expected]:
    """doc_id -> expected values, for every dimension.

    The generated traffic names each model by its canonical name in the request (a success may
    carry a dated response name, which must not split the model). `price(model, event_time)` gives
    USD per million tokens (one price for every token kind)."""
    out: dict[str, Expected] = defaultdict(Expected)
    for event in unique_events(events):
        model = event.request_model.lower()
        names = {
            "model": model,
            "provider": PROVIDERS.get(model, "other"),
            "model_family": model,
            "service": event.service_name or "(none)",
            "user": event.user_id or "(none)",
        }
        at = int(event.event_time.timestamp() * 1000)
        error = expected_error_type(event)
        for size in sizes:
            start = at - at % SIZES_MS[size]
            for dimension, name in names.items():
                if dimension in ("service", "user") and size not in SERVICE_AND_USER_SIZES:
                    continue
                e = out[f"{dimension}|{name}|{size}|{start}"]
                e.requests += 1
                if error is not None:
                    e.errors += 1
                    e.errors_by_type[error] += 1
                e.input_tokens += event.input_tokens
                e.output_tokens += event.output_tokens
                e.cache_read += event.cache_read_input_tokens
                e.reasoning += event.reasoning_output_tokens
                usd_per_mtok = price(model, event.event_time)
                if usd_per_mtok is not None:
                    e.cost += (event.input_tokens + event.output_tokens) * usd_per_mtok / 1_000_000
                else:
                    e.unpriced += 1
                e.latencies.append(event.duration_ms)
    return dict(out)


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def compare(expected: dict[str, Expected], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable differences (empty when everything matches)."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"{len(missing)} windows missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected windows, e.g. {extra[:3]}")
    for doc_id in sorted(set(expected) & set(actual)):
        e, a = expected[doc_id], actual[doc_id]
        dimension, name = doc_id.split("|")[:2]
        want_provider = (
            name
            if dimension == "provider"
            else None
            if dimension in ("service", "user")
            else PROVIDERS.get(name, "other")
        )
        checks = {
            "provider": (want_provider, a["provider"]),
            "requests": (e.requests, a["requests"]),
            "errors": (e.errors, a["errors"]),
            "errors_by_type": (dict(e.errors_by_type), a["errors_by_type"]),
            "tokens.input": (e.input_tokens, a["tokens"]["input"]),
            "tokens.output": (e.output_tokens, a["tokens"]["output"]),
            "tokens.cache_read_input": (e.cache_read, a["tokens"]["cache_read_input"]),
            "tokens.reasoning_output": (e.reasoning, a["tokens"]["reasoning_output"]),
            "unpriced_requests": (e.unpriced, a["unpriced_requests"]),
            "latency_ms.min": (min(e.latencies), a["latency_ms"]["min"]),
            "latency_ms.max": (max(e.latencies), a["latency_ms"]["max"]),
        }
        for name, (want, got) in checks.items():
            if want != got:
                problems.append(f"{doc_id} {name}: expected {want}, got {got}")
        if abs(float(e.cost) - a["cost_usd"]) > 1e-9:
            problems.append(f"{doc_id} cost_usd: expected {float(e.cost):.9f}, got {a['cost_usd']:.9f}")
        for q in (0.5, 0.9, 0.95, 0.99):
            want_q = exact_quantile(e.latencies, q)
            got_q = a["latency_ms"][f"p{round(q * 100)}"]
            if abs(got_q - want_q) > 0.01 * want_q:
                problems.append(f"{doc_id} p{round(q * 100)}: expected {want_q} ±1%, got {got_q}")
    return problems
