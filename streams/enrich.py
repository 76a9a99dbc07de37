"""Enrichment rules: pure functions from a raw event to what dashboards and alerts need.

The rules of the Logstash pipeline callstream replaces, fixed and extended: timeouts and
connection errors are their own categories, an unknown model is flagged unpriced instead of
costing $0, and cost uses separate input, output, cached-input and reasoning prices from the price
in force at event time.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

from callstream.producers.contract import RawCallEvent
from callstream.streams.pricing import PICO_PER_USD, PriceCatalogue, cost_of

# Ordered: first match wins. (pattern on the lowercased model name, provider)
PROVIDER_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(gpt-|o[1-9](-|$)|chatgpt|text-embedding|davinci|babbage)"), "openai"),
    (re.compile(r"claude"), "anthropic"),
    (re.compile(r"(gemini|gemma|palm)"), "google"),
    (re.compile(r"deepseek"), "deepseek"),
    (re.compile(r"(mistral|mixtral|codestral|ministral)"), "mistral"),
    (re.compile(r"(meta-)?llama"), "meta"),
    (re.compile(r"(qwen|qwq)"), "alibaba"),
    (re.compile(r"grok"), "xai"),
    (re.compile(r"command"), "cohere"),
)
_TIER_SUFFIX = re.compile(r"-(mini|nano|lite|turbo)$")
_VERSION_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-latest|-preview(-\d{2}-\d{2})?|@[\w.-]+)$")

LATENCY_BOUNDS_MS: tuple[tuple[float, str], ...] = ((500, "fast"), (2000, "normal"), (5000, "slow"))
TIMEOUT_ERROR_TYPES = frozenset(
    {"timeout", "timeouterror", "apitimeouterror", "readtimeout", "connecttimeout"}
)
CONNECTION_ERROR_TYPES = frozenset(
    {"connection_error", "apiconnectionerror", "connecterror", "connectionerror"}
)


@functools.lru_cache(maxsize=4096)
def normalise_model(model: str) -> str:
    """Lowercase, without a 'provider/' routing prefix (e.g. 'openai/gpt-4.1')."""
    model = model.strip().lower()
    return model.rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=4096)
def provider_of(model: str, reported_provider: str | None = None) -> str:
    for pattern, provider in PROVIDER_RULES:
        if pattern.match(model):
            return provider
    return reported_provider.lower() if reported_provider else "other"


@functools.lru_cache(maxsize=4096)
def base_model(model: str) -> str:
    """The model name without its date/version suffix: 'gpt-4.1-2025-04-14' -> 'gpt-4.1'. What
    per-model figures group by, so that a call's request name and the dated name in its response
    fall into one model."""
    previous = None
    while previous != model:
        previous, model = model, _VERSION_SUFFIX.sub("", model)
    return model


@functools.lru_cache(maxsize=4096)
def model_family_of(model: str) -> str:
    """The base model without its size or tier variant: 'gpt-4.1-mini' -> 'gpt-4.1'."""
    previous, model = None, base_model(model)
    while previous != model:
        previous, model = model, _TIER_SUFFIX.sub("", model)
    return model


def latency_category(duration_ms: float) -> str:
    for bound, name in LATENCY_BOUNDS_MS:
        if duration_ms < bound:
            return name
    return "timeout_risk"


def error_category(status_code: int | None, error_type: str | None) -> str | None:
    """None for a success; else why the call failed. Timeouts and connection errors first:
    they have no HTTP status, and the seed lost them entirely."""
    raw = error_type.lower() if error_type else None
    if status_code is not None and 200 <= status_code < 300 and raw is None:
        return None
    if raw in TIMEOUT_ERROR_TYPES or status_code in (408, 504):
        return "timeout"
    if raw in CONNECTION_ERROR_TYPES:
        return "connection_error"
    if status_code == 401:
        return "authentication_failure"
    if status_code == 403:
        return "permission_denied"
    if status_code == 429:
        return "rate_limit_exceeded"
    if status_code is not None and 500 <= status_code < 600:
        return "provider_server_error"
    if status_code is not None and 400 <= status_code < 500:
        return "client_error"
    return "unknown_error"


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def enrich(event: RawCallEvent, prices: PriceCatalogue) -> dict[str, Any]:
    """The enriched event as a JSON-ready dict (the shape of streams.contract.EnrichedCallEvent)."""
    version = normalise_model(event.response_model or event.request_model)
    at_ms = epoch_ms(event.event_time)
    category = error_category(event.status_code, event.error_type)
    # Without usage, the tokens are unknown, not zero: such a call is never priced at $0.
    price = prices.lookup(version, at_ms) if event.usage == "reported" else None
    total_tokens = event.input_tokens + event.output_tokens
    doc = dict(event.__dict__)
    doc["model"] = base_model(version)
    doc["model_version"] = version
    doc["provider"] = provider_of(version, event.provider_name)
    doc["model_family"] = model_family_of(version)
    doc["total_tokens"] = total_tokens
    doc["latency_category"] = latency_category(event.duration_ms)
    doc["request_status"] = "success" if category is None else "error"
    doc["error_category"] = category
    doc["time_bucket"] = datetime.fromtimestamp(at_ms // 60_000 * 60, UTC)
    ip = event.metadata.get("client_ip")
    doc["client_ip"] = ip if isinstance(ip, str) else None
    doc["late"] = False
    if price is None:
        doc.update(
            priced=False,
            unpriced_reason="usage_missing" if event.usage == "missing" else "unknown_model",
            price_id=None,
            cost_usd=None,
            input_cost_usd=None,
            output_cost_usd=None,
            cost_per_token_usd=None,
            cost_pico=0,
        )
        return doc
    cost = cost_of(
        price,
        event.input_tokens,
        event.output_tokens,
        event.cache_read_input_tokens,
        event.cache_creation_input_tokens,
        event.reasoning_output_tokens,
    )
    total = cost.total_pico
    doc["priced"] = True
    doc["unpriced_reason"] = None
    doc["price_id"] = price.id
    doc["cost_usd"] = total / PICO_PER_USD
    doc["input_cost_usd"] = cost.input_pico / PICO_PER_USD
    doc["output_cost_usd"] = cost.output_pico / PICO_PER_USD
    doc["cost_per_token_usd"] = total / PICO_PER_USD / total_tokens if total_tokens else None
    doc["cost_pico"] = total
    return doc
