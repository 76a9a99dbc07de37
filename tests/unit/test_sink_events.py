"""Valid enriched events for the sink's tests, built through the stream's contract (not by the stream app).

Other sink tests import `enriched_events`; the tests here check that what it builds is what the
contract promises, so a test failure elsewhere is never the generator's fault.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from callstream.streams.contract import EnrichedCallEvent

MODELS = [
    ("gpt-4.1", "openai", "gpt-4.1", 8.0),
    ("claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", 15.0),
    ("gemini-2.5-flash", "google", "gemini-2.5-flash", 2.5),
    ("deepseek-v3.2", "deepseek", "deepseek-v3.2", 0.42),
]
START = datetime(2026, 3, 1, tzinfo=UTC)


def enriched_events(n: int, seed: int = 0, days: int = 3, start: datetime = START) -> list[dict[str, Any]]:
    """`n` distinct valid events spread over `days` days from `start`, as the wire dicts of the topic."""
    rng = random.Random(seed)
    events = []
    for _ in range(n):
        model, provider, family, price = rng.choice(MODELS)
        event_time = start + timedelta(milliseconds=rng.randrange(days * 86_400_000))
        input_tokens, output_tokens = rng.randrange(1, 4000), rng.randrange(1, 1500)
        duration_ms = round(rng.uniform(80, 9000), 3)
        ok = rng.random() > 0.1
        input_cost, output_cost = input_tokens * price / 1e6, output_tokens * price / 1e6
        event = EnrichedCallEvent(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            event_time=event_time,
            request_model=model,
            response_model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            duration_ms=duration_ms,
            status_code=200 if ok else 429,
            error_type=None if ok else "rate_limit_exceeded",
            service_name="support-bot",
            user_id=f"user-{rng.randrange(50)}",
            metadata={"region": "ap-northeast-2", "client_ip": f"10.0.0.{rng.randrange(256)}"},
            model=model,
            model_version=model,
            provider=provider,
            model_family=family,
            total_tokens=input_tokens + output_tokens,
            latency_category="fast" if duration_ms < 500 else "normal" if duration_ms < 2000 else "slow",
            request_status="success" if ok else "error",
            error_category=None if ok else "rate_limit_exceeded",
            priced=True,
            price_id=f"{provider}/{model}",
            cost_usd=input_cost + output_cost,
            input_cost_usd=input_cost,
            output_cost_usd=output_cost,
            cost_per_token_usd=price / 1e6,
            time_bucket=event_time.replace(second=0, microsecond=0),
            client_ip=f"10.0.0.{rng.randrange(256)}",
        )
        events.append(event.model_dump(mode="json"))
    return events


def test_events_follow_the_contract_and_the_wire_format() -> None:
    events = enriched_events(200, seed=1)
    assert len({e["event_id"] for e in events}) == 200
    for event in events:
        assert EnrichedCallEvent.model_validate(event).event_id == event["event_id"]
        assert event["event_time"].endswith("Z") and event["time_bucket"].endswith("Z")


def test_events_are_reproducible_and_mixed() -> None:
    assert enriched_events(50, seed=3) == enriched_events(50, seed=3)
    statuses = {e["request_status"] for e in enriched_events(200, seed=3)}
    assert statuses == {"success", "error"}
