"""Enrichment rules: provider, family, latency and error categories, and the cost of one call."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import orjson
import pytest

from callstream.producers.contract import RawCallEvent
from callstream.streams.contract import EnrichedCallEvent
from callstream.streams.enrich import (
    base_model,
    enrich,
    error_category,
    latency_category,
    model_family_of,
    normalise_model,
    provider_of,
)
from callstream.streams.pricing import Price, PriceCatalogue

# $/Mtok, deliberately all different so a token priced at the wrong rate shows up.
RATES = {"input": "3", "output": "15", "cache_read": "0.3", "cache_write": "3.75", "reasoning": "20.5"}
CATALOGUE = PriceCatalogue(
    [
        Price.from_dict(
            {
                "id": "t:claude@2025",
                "provider": "anthropic",
                "match": r"claude-sonnet-4-5(-\d{8})?",
                "effective_from": "2025-01-01T00:00:00Z",
                **RATES,
            }
        )
    ]
)
T0 = datetime(2026, 2, 3, 4, 5, 6, 789_000, tzinfo=UTC)


def raw(**fields: Any) -> RawCallEvent:
    base: dict[str, Any] = {
        "event_id": "e",
        "event_time": T0,
        "request_model": "claude-sonnet-4-5",
        "duration_ms": 100.0,
        "status_code": 200,
    }
    return RawCallEvent(**(base | fields))


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-4.1", "openai"),
        ("gpt-4o-mini", "openai"),
        ("o1", "openai"),
        ("o3-mini", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("text-embedding-3-small", "openai"),
        ("claude-sonnet-4-5", "anthropic"),
        ("gemini-2.5-flash", "google"),
        ("gemma-3-27b", "google"),
        ("deepseek-v3.2", "deepseek"),
        ("mistral-large-latest", "mistral"),
        ("mixtral-8x7b", "mistral"),
        ("llama-3.3-70b", "meta"),
        ("meta-llama-3-8b", "meta"),
        ("qwen2.5-72b", "alibaba"),
        ("grok-3", "xai"),
        ("command-r-plus", "cohere"),
        ("omni-large", "other"),  # 'o' not followed by a digit is not an OpenAI o-series model
        ("o10", "other"),
        ("acme-experimental-1", "other"),
    ],
)
def test_provider_of(model: str, provider: str) -> None:
    assert provider_of(model) == provider


def test_provider_of_falls_back_to_the_reported_provider_only_for_unknown_models() -> None:
    assert provider_of("acme-experimental-1", "HolySheep-Gateway") == "holysheep-gateway"
    assert provider_of("gpt-4.1", "holysheep-gateway") == "openai"


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1", "gpt-4.1"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet@20241022", "claude-3-5-sonnet"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-preview", "gemini-2.5-flash"),
        ("o1-2024-12-17", "o1"),
        ("gpt-4-0613", "gpt-4"),
        ("mistral-large-latest", "mistral-large"),
        ("gpt-4o-2024-08-06-preview", "gpt-4o"),  # suffixes are stripped repeatedly
        ("deepseek-v3.2", "deepseek-v3.2"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),  # '-4-5' is a version, not a date
    ],
)
def test_base_model(model: str, family: str) -> None:
    assert base_model(model) == family


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-nano", "gpt-4.1"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash"),
        ("o4-mini", "o4"),
        ("gpt-3.5-turbo-0125", "gpt-3.5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("deepseek-v3.2", "deepseek-v3.2"),
    ],
)
def test_model_family_of(model: str, family: str) -> None:
    assert model_family_of(model) == family


def test_normalise_model() -> None:
    assert normalise_model("  OpenAI/GPT-4.1 ") == "gpt-4.1"
    assert normalise_model("openrouter/anthropic/claude-sonnet-4-5") == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("ms", "category"),
    [
        (0, "fast"),
        (499.9, "fast"),
        (500, "normal"),
        (1999, "normal"),
        (1999.999, "normal"),
        (2000, "slow"),
        (4999, "slow"),
        (5000, "timeout_risk"),
        (60_000, "timeout_risk"),
    ],
)
def test_latency_category_boundaries(ms: float, category: str) -> None:
    assert latency_category(ms) == category


@pytest.mark.parametrize(
    ("status", "error_type", "category"),
    [
        (200, None, None),
        (201, None, None),
        (299, None, None),
        (401, None, "authentication_failure"),
        (403, None, "permission_denied"),
        (429, None, "rate_limit_exceeded"),
        (500, None, "provider_server_error"),
        (503, None, "provider_server_error"),
        (400, None, "client_error"),
        (404, None, "client_error"),
        (422, None, "client_error"),
        (408, None, "timeout"),
        (504, None, "timeout"),
        (None, "timeout", "timeout"),
        (None, "APITimeoutError", "timeout"),
        (None, "ReadTimeout", "timeout"),
        (None, "connection_error", "connection_error"),
        (None, "APIConnectionError", "connection_error"),
        (None, "ValueError", "unknown_error"),  # an exception with no HTTP status
        (None, None, "unknown_error"),
        (200, "timeout", "timeout"),  # a 200 whose stream then timed out is still a failure
        (200, "RuntimeError", "unknown_error"),
        (302, None, "unknown_error"),
        (300, None, "unknown_error"),  # 2xx ends at 299
        (499, None, "client_error"),
        (599, None, "provider_server_error"),
        (600, None, "unknown_error"),  # outside HTTP's classes (the contract stops at 599)
    ],
)
def test_error_category(status: int | None, error_type: str | None, category: str | None) -> None:
    assert error_category(status, error_type) == category


def exact_cost(e: RawCallEvent) -> Fraction:
    """USD, from the $/Mtok rates: every token priced once, at the rate of its kind."""
    r = {k: Fraction(v) for k, v in RATES.items()}
    uncached = e.input_tokens - e.cache_read_input_tokens - e.cache_creation_input_tokens
    usd = (
        uncached * r["input"]
        + e.cache_read_input_tokens * r["cache_read"]
        + e.cache_creation_input_tokens * r["cache_write"]
        + (e.output_tokens - e.reasoning_output_tokens) * r["output"]
        + e.reasoning_output_tokens * r["reasoning"]
    )
    return usd / 1_000_000


def test_cost_with_cache_read_write_and_reasoning_prices() -> None:
    event = raw(
        input_tokens=10_000,
        cache_read_input_tokens=6_000,
        cache_creation_input_tokens=1_500,
        output_tokens=2_000,
        reasoning_output_tokens=777,
    )
    doc = enrich(event, CATALOGUE)
    want = exact_cost(event)
    assert doc["priced"] is True and doc["price_id"] == "t:claude@2025"
    assert doc["cost_pico"] == want * 10**12
    assert doc["cost_usd"] == float(want)
    input_usd = (Fraction(2_500 * 3) + Fraction(6_000 * 3, 10) + Fraction(1_500 * 375, 100)) / 1_000_000
    assert doc["input_cost_usd"] == float(input_usd)
    assert doc["output_cost_usd"] == pytest.approx(float(want - input_usd), rel=1e-15)
    assert doc["cost_per_token_usd"] == pytest.approx(float(want / 12_000), rel=1e-12)
    assert doc["total_tokens"] == 12_000


@pytest.mark.parametrize(
    "tokens",
    [
        {},
        {"input_tokens": 1},
        {"input_tokens": 5, "cache_read_input_tokens": 5},
        {"input_tokens": 5, "cache_creation_input_tokens": 5},
        {"output_tokens": 9, "reasoning_output_tokens": 9},
        {
            "input_tokens": 123_457,
            "cache_read_input_tokens": 99_999,
            "output_tokens": 31,
            "reasoning_output_tokens": 1,
        },
    ],
)
def test_cost_is_exact_in_pico_dollars(tokens: dict[str, int]) -> None:
    event = raw(**tokens)
    doc = enrich(event, CATALOGUE)
    assert Fraction(doc["cost_pico"]) == exact_cost(event) * 10**12
    if not tokens:
        assert doc["cost_per_token_usd"] is None and doc["cost_usd"] == 0.0


def test_request_and_response_names_fall_into_one_model() -> None:
    """A failed call knows only the request name, a successful one the dated response name: both
    must land in one per-model row (the dated name stays on the call as model_version)."""
    failed = enrich(raw(request_model="gpt-4.1", status_code=500, duration_ms=30.0), CATALOGUE)
    ok = enrich(raw(request_model="gpt-4.1", response_model="gpt-4.1-2025-04-14"), CATALOGUE)
    assert failed["model"] == ok["model"] == "gpt-4.1"
    assert (failed["model_version"], ok["model_version"]) == ("gpt-4.1", "gpt-4.1-2025-04-14")


def test_response_model_wins_and_is_normalised() -> None:
    doc = enrich(
        raw(
            request_model="claude-sonnet-4-5",
            response_model="Anthropic/Claude-Sonnet-4-5-20250929",
            input_tokens=10,
        ),
        CATALOGUE,
    )
    assert doc["model"] == "claude-sonnet-4-5"
    assert doc["model_version"] == "claude-sonnet-4-5-20250929"
    assert doc["model_family"] == "claude-sonnet-4-5"
    assert doc["provider"] == "anthropic"
    assert doc["priced"] is True


def test_unpriced_model_is_flagged_never_zero_cost() -> None:
    doc = enrich(raw(request_model="acme-experimental-1", input_tokens=100, output_tokens=10), CATALOGUE)
    assert doc["priced"] is False
    assert doc["price_id"] is None
    assert doc["cost_usd"] is None and doc["input_cost_usd"] is None and doc["output_cost_usd"] is None
    assert doc["cost_per_token_usd"] is None
    assert doc["cost_pico"] == 0


def test_missing_usage_is_unpriced_not_zero_cost() -> None:
    """A priced model whose response carried no usage: tokens unknown, so no cost at all."""
    doc = enrich(raw(usage="missing"), CATALOGUE)
    assert doc["priced"] is False and doc["unpriced_reason"] == "usage_missing"
    assert doc["cost_usd"] is None and doc["price_id"] is None and doc["cost_pico"] == 0
    assert enrich(raw(), CATALOGUE)["unpriced_reason"] is None
    assert enrich(raw(request_model="acme-x"), CATALOGUE)["unpriced_reason"] == "unknown_model"


def test_event_before_the_first_price_is_unpriced() -> None:
    doc = enrich(raw(event_time=datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC), input_tokens=5), CATALOGUE)
    assert doc["priced"] is False and doc["cost_usd"] is None


def test_categories_time_bucket_and_client_ip() -> None:
    ok = enrich(raw(duration_ms=1999, metadata={"client_ip": "10.1.2.3"}), CATALOGUE)
    assert ok["request_status"] == "success" and ok["error_category"] is None
    assert ok["latency_category"] == "normal"
    assert ok["time_bucket"] == datetime(2026, 2, 3, 4, 5, tzinfo=UTC)
    assert ok["client_ip"] == "10.1.2.3"
    assert ok["late"] is False
    failed = enrich(
        raw(status_code=None, error_type="timeout", duration_ms=30_000, metadata={"client_ip": 7}), CATALOGUE
    )
    assert failed["request_status"] == "error" and failed["error_category"] == "timeout"
    assert failed["latency_category"] == "timeout_risk"
    assert failed["client_ip"] is None


@pytest.mark.parametrize(
    "event",
    [
        raw(
            input_tokens=100,
            cache_read_input_tokens=50,
            output_tokens=20,
            reasoning_output_tokens=5,
            metadata={"client_ip": "10.0.0.1", "n": 1},
        ),
        raw(request_model="acme-experimental-1", status_code=None, error_type="connection_error"),
        raw(status_code=429, error_type="RateLimitError", error_message="slow down"),
    ],
)
def test_enriched_dict_validates_against_the_contract(event: RawCallEvent) -> None:
    doc = enrich(event, CATALOGUE)
    model = EnrichedCallEvent.model_validate(doc)
    assert model.event_id == event.event_id and model.cost_pico == doc["cost_pico"]
    # ... and so does its JSON form as the stream publishes it (times as ISO-8601 with Z).
    wire = orjson.dumps([doc], option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
    [decoded] = orjson.loads(wire)
    assert decoded["event_time"].endswith("Z") and decoded["time_bucket"].endswith("Z")
    assert EnrichedCallEvent.model_validate_json(orjson.dumps(decoded)) == model


def test_an_unknown_model_takes_the_provider_its_caller_reported() -> None:
    doc = enrich(raw(request_model="acme-experimental-1", provider_name="HolySheep"), CATALOGUE)
    assert doc["provider"] == "holysheep"
    assert enrich(raw(request_model="acme-experimental-1"), CATALOGUE)["provider"] == "other"
