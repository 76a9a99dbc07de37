"""Window arithmetic: boundaries, keys, and fold + rollup against a brute-force computation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest

from callstream.producers.contract import RawCallEvent
from callstream.producers.synthetic import generate
from callstream.streams.contract import WindowAggregate
from callstream.streams.enrich import enrich
from callstream.streams.pricing import Price, PriceCatalogue
from callstream.streams.windows import WindowKey, WindowState, expired, fold, window_start, windows_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SIZES = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
# $/Mtok per token kind; acme-experimental-1 stays unpriced.
RATES: dict[str, dict[str, str]] = {
    "gpt-4.1": {"input": "2", "output": "8", "cache_read": "0.5", "cache_write": "2.5"},
    "claude-sonnet-4-5": {"input": "3", "output": "15", "cache_read": "0.3", "cache_write": "3.75"},
    "gemini-2.5-flash": {"input": "0.3", "output": "2.5"},
    "deepseek-v3.2": {"input": "0.28", "output": "0.42", "reasoning": "1.1"},
}


def catalogue() -> PriceCatalogue:
    return PriceCatalogue(
        [
            Price.from_dict(
                {
                    "id": f"t:{m}",
                    "provider": "p",
                    "match": m.replace(".", r"\.") + r"(-\d{4}-\d{2}-\d{2}|-\d{8})?",  # and dated names
                    "effective_from": "2020-01-01T00:00:00Z",
                    **r,
                }
            )
            for m, r in RATES.items()
        ]
    )


def exact_cost_usd(e: RawCallEvent, model: str) -> Fraction:
    r = {k: Fraction(v) for k, v in RATES[model].items()}
    cache_read, cache_write = r.get("cache_read", r["input"]), r.get("cache_write", r["input"])
    reasoning = r.get("reasoning", r["output"])
    uncached = e.input_tokens - e.cache_read_input_tokens - e.cache_creation_input_tokens
    plain = e.output_tokens - e.reasoning_output_tokens
    return (
        uncached * r["input"]
        + e.cache_read_input_tokens * cache_read
        + e.cache_creation_input_tokens * cache_write
        + plain * r["output"]
        + e.reasoning_output_tokens * reasoning
    ) / 1_000_000


@dataclass
class Expected:
    requests: int = 0
    successes: int = 0
    errors_by_type: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cost_usd: Fraction = Fraction(0)
    unpriced: int = 0
    latencies: list[Decimal] = field(default_factory=list)
    late: int = 0


def brute_force(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> dict[str, Expected]:
    out: dict[str, Expected] = defaultdict(Expected)
    for event, doc in pairs:
        at = (event.event_time - EPOCH) // timedelta(milliseconds=1)
        model = doc["model"]
        names = {
            "model": model,
            "provider": doc["provider"],
            "model_family": doc["model_family"],
            "service": event.service_name or "(none)",
            "user": event.user_id or "(none)",
        }
        cost = exact_cost_usd(event, model) if model in RATES else None
        latency = Decimal(repr(event.duration_ms))
        for size, size_ms in SIZES.items():
            for dimension, name in names.items():
                if dimension in ("service", "user") and size == "1m":
                    continue  # per-service and per-user windows are 1h and 1d only
                x = out[f"{dimension}|{name}|{size}|{at - at % size_ms}"]
                x.requests += 1
                if doc["error_category"] is None:
                    x.successes += 1
                else:
                    x.errors_by_type[doc["error_category"]] += 1
                x.tokens["input"] += event.input_tokens
                x.tokens["output"] += event.output_tokens
                x.tokens["cache_read_input"] += event.cache_read_input_tokens
                x.tokens["cache_creation_input"] += event.cache_creation_input_tokens
                x.tokens["reasoning_output"] += event.reasoning_output_tokens
                if cost is None:
                    x.unpriced += 1
                else:
                    x.cost_usd += cost
                x.latencies.append(latency)
                x.late += bool(doc["late"])
    return dict(out)


@pytest.fixture(scope="module")
def pairs() -> list[tuple[RawCallEvent, dict[str, Any]]]:
    # 25 minutes across a day boundary, with late events and some cache writes.
    events = generate(
        6000,
        seed=11,
        start=datetime(2025, 12, 31, 23, 48, 30, tzinfo=UTC),
        rate_per_s=4.0,
        late_share=0.02,
        late_by_s=3700,
    )
    prices = catalogue()
    out = []
    for i, e in enumerate(events):
        if i % 13 == 0 and e.input_tokens > e.cache_read_input_tokens:
            e = e.model_copy(
                update={"cache_creation_input_tokens": (e.input_tokens - e.cache_read_input_tokens) // 2}
            )
        doc = enrich(e, prices)
        doc["late"] = i % 17 == 0
        out.append((e, doc))
    return out


def test_fold_and_rollup_match_brute_force(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> None:
    windows = windows_of(doc for _, doc in pairs)
    expected = brute_force(pairs)
    got = {w.encode(): (w, s) for w, s in windows.items()}
    assert set(got) == set(expected)
    assert {w.size for w, _ in got.values()} == set(SIZES)
    assert len({w.start_ms for w, _ in got.values() if w.size == "1d"}) == 2  # crosses midnight
    for doc_id, want in expected.items():
        window, state = got[doc_id]
        assert state.requests == want.requests, doc_id
        assert state["successes"] == want.successes
        assert state["errors"] == want.requests - want.successes
        assert state["errors_by_type"] == dict(want.errors_by_type)
        assert state["input_tokens"] == want.tokens["input"]
        assert state["output_tokens"] == want.tokens["output"]
        assert state["cache_read_input_tokens"] == want.tokens["cache_read_input"]
        assert state["cache_creation_input_tokens"] == want.tokens["cache_creation_input"]
        assert state["reasoning_output_tokens"] == want.tokens["reasoning_output"]
        assert state["cost_pico"] == want.cost_usd * 10**12  # exact, in whole pico-dollars
        assert state["unpriced_requests"] == want.unpriced
        assert state["late_events"] == want.late
        assert state["latency_min_ms"] == float(min(want.latencies))
        assert state["latency_max_ms"] == float(max(want.latencies))
        aggregate = state.to_aggregate(window, version=3)
        mean = Fraction(sum(want.latencies)) / want.requests
        assert aggregate["latency_ms"]["mean"] == pytest.approx(float(mean), rel=1e-12)
        assert aggregate["cost_usd"] == float(want.cost_usd)
        assert aggregate["error_rate"] == (want.requests - want.successes) / want.requests
        assert aggregate["tokens"]["total"] == want.tokens["input"] + want.tokens["output"]
    totals = [s for w, s in got.values() if w.dimension == "provider" and w.size == "1d"]
    assert sum(s.requests for s in totals) == len(pairs)
    assert sum(s["unpriced_requests"] for s in totals) > 0 and sum(s["errors"] for s in totals) > 0
    services = {w.key for w in windows if w.dimension == "service"}
    assert len(services) > 1 and {w.size for w in windows if w.dimension == "user"} == {"1h", "1d"}


def test_aggregates_validate_against_the_contract(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> None:
    windows = windows_of(doc for _, doc in pairs[:800])
    for window, state in windows.items():
        aggregate = state.to_aggregate(window, version=1)
        model = WindowAggregate.model_validate(aggregate)
        assert model.doc_id == window.encode()
        assert WindowKey.decode(model.doc_id) == window
        assert model.window_start == datetime.fromtimestamp(window.start_ms / 1000, UTC)
        assert model.window_end - model.window_start == timedelta(milliseconds=SIZES[window.size])
        assert model.latency_ms.p50 is not None and model.latency_ms.min is not None
        assert model.latency_ms.min <= model.latency_ms.p50 * 1.01 and model.latency_ms.p99 is not None
        assert model.latency_ms.p99 <= model.latency_ms.max * 1.01  # type: ignore[operator]
        # As published: JSON with ISO-8601 times.
        wire = orjson.dumps(aggregate, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
        assert WindowAggregate.model_validate_json(wire) == model
        if window.dimension in ("service", "user"):
            assert model.provider is None and model.model_family is None
        elif window.dimension == "provider":
            assert model.model_family is None
        else:
            assert model.provider is not None and model.model_family is not None


@pytest.mark.parametrize(
    ("ts", "size", "start"),
    [
        (0, 60_000, 0),
        (59_999, 60_000, 0),
        (60_000, 60_000, 60_000),
        (3_599_999, 3_600_000, 0),
        (3_600_000, 3_600_000, 3_600_000),
        (1_767_225_599_999, 86_400_000, 1_767_139_200_000),  # 2025-12-31T23:59:59.999Z
        (1_767_225_600_000, 86_400_000, 1_767_225_600_000),  # 2026-01-01T00:00:00Z
    ],
)
def test_window_start_boundaries(ts: int, size: int, start: int) -> None:
    assert window_start(ts, size) == start


@pytest.mark.parametrize("key", ["gpt-4.1", "a|b", "|lead", "trail|", "a||b|1m|5", "", "model|x|1h|0"])
def test_window_key_roundtrip_with_separators(key: str) -> None:
    for size in SIZES:
        window = WindowKey("model", key, size, 1_767_225_600_000)
        assert WindowKey.decode(window.encode()) == window
        assert window.encode().endswith(f"|{size}|1767225600000")
    assert WindowKey("provider", "openai", "1h", 3_600_000).encode() == "provider|openai|1h|3600000"
    assert WindowKey("model", "m", "1h", 3_600_000).end_ms == 7_200_000


def test_expired_boundary() -> None:
    window = WindowKey("model", "m", "1m", 0)  # ends at 60 000
    retention = {"1m": 1000, "1h": 0, "1d": 0}
    assert not expired(window, 61_000, retention)
    assert expired(window, 61_001, retention)


def test_state_wire_roundtrip(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> None:
    for state in fold(doc for _, doc in pairs[:500]).states()[:20]:
        back = WindowState.from_wire(orjson.loads(orjson.dumps(state.to_wire())))
        assert back.to_wire() == state.to_wire()
        assert back.sketch.bins == state.sketch.bins


def test_event_time_from_json_strings(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> None:
    docs = [doc for _, doc in pairs[:300]]
    decoded = orjson.loads(orjson.dumps(docs, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC))
    fresh = {k: s.to_wire() for k, s in windows_of(docs).items()}
    assert {k: s.to_wire() for k, s in windows_of(decoded).items()} == fresh


def test_empty_state_is_an_identity_for_merge(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> None:
    for window, state in list(windows_of(doc for _, doc in pairs[:200]).items())[:30]:
        empty = WindowState()
        empty.merge(state)
        assert empty.to_wire() == state.to_wire(), window


def test_failed_and_successful_calls_of_one_model_share_its_windows() -> None:
    """The case a new user met: 40 errors knew only the request name, 55 successes carried the
    dated response name. One model row must hold all 95, with a 40/95 error rate."""
    t0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    common = {"request_model": "gpt-4.1", "duration_ms": 100.0, "input_tokens": 10}
    failed = [RawCallEvent(event_id=f"f{i}", event_time=t0, status_code=500, **common) for i in range(40)]
    ok = [
        RawCallEvent(
            event_id=f"s{i}", event_time=t0, status_code=200, response_model="gpt-4.1-2025-04-14", **common
        )
        for i in range(55)
    ]
    prices = catalogue()
    windows = windows_of(enrich(e, prices) for e in failed + ok)
    models = {w.key: s for w, s in windows.items() if w.dimension == "model" and w.size == "1d"}
    assert list(models) == ["gpt-4.1"]
    aggregate = models["gpt-4.1"].to_aggregate(WindowKey("model", "gpt-4.1", "1d", 0), 1)
    assert (aggregate["requests"], aggregate["errors"]) == (95, 40)
    assert aggregate["error_rate"] == 40 / 95
