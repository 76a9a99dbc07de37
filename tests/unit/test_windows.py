"""Window arithmetic: boundaries, keys, and fold + rollup against a brute-force computation."""

from __future__ import annotations

import math
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
from callstream.streams.sketch import RELATIVE_ACCURACY, LatencySketch
from callstream.streams.windows import (
    Field,
    WindowKey,
    WindowState,
    _compile,
    _compile_empty,
    _compile_wire,
    expired,
    fold,
    window_start,
    windows_of,
)

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
    providers: set[str] = field(default_factory=set)
    families: set[str] = field(default_factory=set)


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
                x.providers.add(doc["provider"])
                x.families.add(doc["model_family"])
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


def assert_sums(state: WindowState, want: Any, doc_id: str) -> None:
    """A state's counts, tokens and cost equal the brute-force window's, exactly."""
    assert (state.requests, state["successes"], state["errors"]) == (
        want.requests,
        want.successes,
        want.requests - want.successes,
    ), doc_id
    assert state["errors_by_type"] == dict(want.errors_by_type), doc_id
    assert state["input_tokens"] == want.tokens["input"]
    assert state["output_tokens"] == want.tokens["output"]
    assert state["cache_read_input_tokens"] == want.tokens["cache_read_input"]
    assert state["cache_creation_input_tokens"] == want.tokens["cache_creation_input"]
    assert state["reasoning_output_tokens"] == want.tokens["reasoning_output"]
    assert state["cost_pico"] == want.cost_usd * 10**12, doc_id  # exact, in whole pico-dollars
    assert (state["unpriced_requests"], state["late_events"]) == (want.unpriced, want.late), doc_id


def test_fold_and_rollup_match_brute_force(pairs: list[tuple[RawCallEvent, dict[str, Any]]]) -> None:
    windows = windows_of(doc for _, doc in pairs)
    expected = brute_force(pairs)
    got = {w.encode(): (w, s) for w, s in windows.items()}
    assert set(got) == set(expected)
    assert {w.size for w, _ in got.values()} == set(SIZES)
    assert len({w.start_ms for w, _ in got.values() if w.size == "1d"}) == 2  # crosses midnight
    for doc_id, want in expected.items():
        window, state = got[doc_id]
        assert_sums(state, want, doc_id)
        assert state["latency_min_ms"] == float(min(want.latencies))
        assert state["latency_max_ms"] == float(max(want.latencies))
        aggregate = state.to_aggregate(window, version=3)
        mean = Fraction(sum(want.latencies)) / want.requests
        assert aggregate["latency_ms"]["mean"] == pytest.approx(float(mean), rel=1e-12)
        assert aggregate["cost_usd"] == float(want.cost_usd)
        assert aggregate["error_rate"] == (want.requests - want.successes) / want.requests
        assert aggregate["tokens"]["total"] == want.tokens["input"] + want.tokens["output"]
        assert aggregate["late_events"] == want.late
        ordered = sorted(want.latencies)
        for q in (50, 90, 95, 99):
            exact = ordered[(q * (len(ordered) - 1)) // 100]  # nearest rank, lower
            assert abs(Decimal(aggregate["latency_ms"][f"p{q}"]) - exact) <= exact / 100, (doc_id, q)
        if window.dimension in ("service", "user"):  # such windows span providers and families
            assert (state.provider, state.model_family) == (None, None)
        elif window.dimension == "provider":
            assert (state.provider, state.model_family) == (window.key, None)
        else:
            assert state.provider in want.providers and state.model_family in want.families
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


def test_window_keys_from_the_first_to_the_last_representable_start() -> None:
    latest = int(datetime(2999, 12, 31, tzinfo=UTC).timestamp() * 1000)
    for start in (0, latest):
        assert WindowKey.decode(f"model|m|1m|{start}") == WindowKey("model", "m", "1m", start)
    with pytest.raises(ValueError, match=f"start {latest + 1} is out of range"):
        WindowKey.decode(f"model|m|1m|{latest + 1}")
    with pytest.raises(ValueError, match="start -1 is out of range"):
        WindowKey.decode("model|m|1m|-1")


def test_bad_window_keys_are_quoted_up_to_200_characters() -> None:
    long_key = "model|" + "k" * 300
    with pytest.raises(ValueError) as size:
        WindowKey.decode(long_key + "|2m|0")
    assert str(size.value) == f"window key {long_key[:200]!r}: unknown window size '2m'"
    with pytest.raises(ValueError) as start:
        WindowKey.decode(long_key + "|1h|-3600000")
    assert str(start.value) == f"window key {long_key[:200]!r}: start -3600000 is out of range"


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


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, 0),
        (2**63 - 1, 2**63 - 1),
        (2**63, "9223372036854775808"),
        (-(2**63), -(2**63)),
        (-(2**63) - 1, "-9223372036854775809"),
        (-5, -5),
    ],
)
def test_integers_beyond_64_bits_travel_as_decimal_strings(value: int, wire: int | str) -> None:
    state = WindowState.of(cost_pico=value, errors_by_type={"timeout": value})
    encoded = state.to_wire()
    assert (encoded.get("c", 0), encoded["et"]) == (wire, {"timeout": wire})
    assert ("c" in encoded) == (value != 0)  # an empty field is left out of the wire
    back = WindowState.from_wire(orjson.loads(orjson.dumps(encoded)))
    assert (back["cost_pico"], back["errors_by_type"]) == (value, {"timeout": value})


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"n": True}, "expected an integer, got bool"),
        ({"n": 1.5}, "expected an integer, got float"),
        ({"n": None}, "expected an integer, got NoneType"),
        ({"et": {"timeout": False}}, "expected an integer, got bool"),
        ({"lmin": "12"}, "expected a number, got str"),
        ({"lmax": True}, "expected a number, got bool"),
    ],
)
def test_wire_values_of_the_wrong_type_are_refused(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        WindowState.from_wire(wire)
    assert str(caught.value) == message


def test_wire_fields_missing_from_an_older_record_start_empty() -> None:
    full = WindowState.of(
        "openai", "gpt-4.1", requests=3, usage_missing_requests=1, latency_min_ms=2.0, late_events=1
    )
    older = {k: v for k, v in full.to_wire().items() if k != "um"}  # before usage_missing_requests
    back = WindowState.from_wire(older)
    assert (back.requests, back["usage_missing_requests"]) == (3, 0)
    assert (back["latency_min_ms"], back["late_events"], back.provider) == (2.0, 1, "openai")
    assert WindowState.from_wire({"n": "7"}).requests == 7


def test_aggregate_of_an_empty_window() -> None:
    aggregate = WindowState().to_aggregate(WindowKey("model", "m", "1m", 0), 1)
    assert (aggregate["requests"], aggregate["error_rate"], aggregate["cost_usd"]) == (0, 0.0, 0.0)
    assert aggregate["latency_ms"] == {
        "min": None,
        "max": None,
        "mean": None,
        "p50": None,
        "p90": None,
        "p95": None,
        "p99": None,
    }


def test_aggregate_percentiles_are_the_nearest_ranks() -> None:
    """101 latencies 5% apart: each percentile is one exact value, its neighbours far outside 1%."""
    latencies = [100 * 1.05**i for i in range(101)]
    state = WindowState()
    for ms in reversed(latencies):
        state.add_event(
            {
                "error_category": None,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "reasoning_output_tokens": 0,
                "priced": False,
                "duration_ms": ms,
            }
        )
    summary = state.to_aggregate(WindowKey("model", "m", "1h", 0), 1)["latency_ms"]
    assert sorted(summary) == ["max", "mean", "min", "p50", "p90", "p95", "p99"]
    for q in (50, 90, 95, 99):
        assert summary[f"p{q}"] == pytest.approx(latencies[q], rel=0.01), q
    assert (summary["min"], summary["max"]) == (latencies[0], latencies[100])


@pytest.mark.parametrize(("cost_pico", "published"), [(2**63 - 1, 2**63 - 1), (2**63, None)])
def test_aggregate_sums_beyond_64_bits_are_left_out(cost_pico: int, published: int | None) -> None:
    aggregate = WindowState.of(requests=1, cost_pico=cost_pico).to_aggregate(
        WindowKey("model", "m", "1d", 0), 1
    )
    assert aggregate["cost_pico"] == published
    assert aggregate["cost_usd"] == cost_pico / 10**12


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


def stored(window: WindowKey, state: WindowState) -> dict[str, Any]:
    """An aggregate as a store returns it: the published JSON, decoded."""
    aggregate = state.to_aggregate(window, version=1)
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(aggregate, option=orjson.OPT_UTC_Z))
    return loaded


def test_minutes_read_back_from_a_store_merge_into_the_brute_force_hours(
    pairs: list[tuple[RawCallEvent, dict[str, Any]]],
) -> None:
    """What reports do: per-minute aggregates as stored, turned back into states and merged, give
    the same hourly figures as the events themselves."""
    windows = windows_of(doc for _, doc in pairs)
    hours: dict[str, WindowState] = {}
    for window, state in windows.items():
        if window.size != "1m":
            continue
        hour = WindowKey(window.dimension, window.key, "1h", window_start(window.start_ms, SIZES["1h"]))
        back = WindowState.from_aggregate(stored(window, state))
        if hour.encode() in hours:
            hours[hour.encode()].merge(back)
        else:
            hours[hour.encode()] = back
    expected = brute_force(pairs)
    assert len(hours) > 10
    for doc_id, state in hours.items():
        want = expected[doc_id]
        assert_sums(state, want, doc_id)
        assert state["latency_min_ms"] == float(min(want.latencies))
        assert state["latency_max_ms"] == float(max(want.latencies))
        # The sum of latencies comes back from each minute's mean, to the microsecond.
        assert abs(state["latency_sum_us"] - sum(want.latencies) * 1000) <= len(want.latencies)
        assert state.sketch.count == want.requests
        median = state.sketch.quantile(0.5)
        exact_median = sorted(want.latencies)[(want.requests - 1) // 2]
        assert median is not None and abs(Decimal(median) - exact_median) <= exact_median / 100
        dimension, key = doc_id.split("|")[:2]
        if dimension == "provider":  # a provider's windows span several families
            assert (state.provider, state.model_family) == (key, None)
        else:
            assert state.provider is not None and state.model_family is not None
    assert {k.split("|")[0] for k in hours} == {"model", "provider", "model_family"}


def test_older_and_sparse_aggregates_read_back() -> None:
    """Documents from before cost_pico, or whose cost passed 64 bits, carry cost_usd only; a
    document without latency figures reads as a state without them."""
    older = {"requests": 3, "cost_usd": 0.125, "provider": "openai", "model_family": "gpt-4.1"}
    state = WindowState.from_aggregate(older)
    assert (state.requests, state["cost_pico"], state["latency_sum_us"]) == (3, 125_000_000_000, 0)
    assert (state.provider, state.model_family, state.sketch.count) == ("openai", "gpt-4.1", 0)
    beyond = {"requests": 40, "cost_pico": None, "cost_usd": 3.0e7, "errors_by_type": {"timeout": 2}}
    state = WindowState.from_aggregate(beyond)
    assert state["cost_pico"] == 30_000_000 * 10**12 and state["errors_by_type"] == {"timeout": 2}
    assert (state.provider, state.model_family) == (None, None)
    assert WindowState.from_aggregate({})["cost_pico"] == 0
    with_mean = {"requests": 4, "latency_ms": {"mean": 2.5, "min": 1.0, "max": 4.0}}
    state = WindowState.from_aggregate(with_mean)
    assert (state["latency_sum_us"], state["latency_min_ms"], state["latency_max_ms"]) == (10_000, 1.0, 4.0)


def test_states_built_from_values_and_read_as_attributes() -> None:
    state = WindowState.of("openai", "gpt-4.1", requests=7, cost_pico=12)
    assert (state.provider, state.model_family, state.requests, state.cost_pico) == (
        "openai",
        "gpt-4.1",
        7,
        12,
    )
    assert state.errors == 0 and state.errors_by_type == {} and state.latency_min_ms is None
    with pytest.raises(TypeError, match=r"not window fields: \['bogus', 'nope'\]"):
        WindowState.of(bogus=1, nope=2, requests=1)
    with pytest.raises(AttributeError, match="bogus"):
        _ = state.bogus


def test_an_aggregate_read_back_keeps_its_exact_cost_and_is_not_changed_by_merges() -> None:
    """cost_pico is read as it is (cost_usd, a double, cannot carry 10^17 pico-dollars exactly),
    and merging into the state read back never writes into the document it came from."""
    doc = {"requests": 2, "cost_pico": 123_456_789_012_345_679, "cost_usd": 123_456.789_012_345_679}
    doc["errors_by_type"] = {"timeout": 1}
    state = WindowState.from_aggregate(doc)
    assert state["cost_pico"] == 123_456_789_012_345_679
    state.merge(WindowState.of(requests=1, errors_by_type={"timeout": 4, "client_error": 1}))
    assert state["errors_by_type"] == {"timeout": 5, "client_error": 1}
    assert doc["errors_by_type"] == {"timeout": 1}


# A field table of its own for the compilers (FIELDS is compiled at import): one field of each kind.
ONE_FIELD_OF_EACH_KIND = (
    Field("calls", "n", "sum", "1", None),
    Field("tokens", "t", "sum", 'doc["tokens"]', None),
    Field("kinds", "k", "counts", 'doc["kind"]', None),
    Field("fastest", "lo", "min", 'doc["ms"]', None),
    Field("slowest", "hi", "max", 'doc["ms"]', None),
    Field("sketch", "sk", "sketch", 'doc["ms"]', None),
)


def test_any_field_table_compiles_into_contribution_apply_and_merge() -> None:
    """The table is compiled once, at import, into the hot path; compiled here again (with a table of
    its own, one field of each kind), so that what the compiler writes is tested, not only its output
    for FIELDS."""
    contribution, apply, merge = _compile(ONE_FIELD_OF_EACH_KIND)

    def folded(*docs: dict[str, Any]) -> list[Any]:
        values: list[Any] = [0, 0, {}, None, None, LatencySketch()]
        for doc in docs:
            apply(values, contribution(doc))
        return values

    gamma = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
    bucket_30ms = math.ceil(math.log(30.0) / math.log(gamma))
    assert contribution({"tokens": 5, "kind": "a", "ms": 30.0}) == (1, 5, "a", 30.0, 30.0, bucket_30ms)
    left = folded({"tokens": 5, "kind": "a", "ms": 30.0}, {"tokens": 7, "kind": None, "ms": 10.0})
    assert left[:5] == [2, 12, {"a": 1}, 10.0, 30.0]
    right = folded({"tokens": 11, "kind": "a", "ms": 0.0}, {"tokens": 13, "kind": "b", "ms": 50.0})
    assert right[:5] == [2, 24, {"a": 1, "b": 1}, 0.0, 50.0]
    merge(left, right)
    assert left[:5] == [4, 36, {"a": 2, "b": 1}, 0.0, 50.0]
    sketch: LatencySketch = left[5]
    assert (sketch.count, sketch.zero_count, sketch.bins[bucket_30ms]) == (4, 1, 1)
    assert right[:5] == [2, 24, {"a": 1, "b": 1}, 0.0, 50.0]  # merge reads the other side, never writes it
    nothing_yet = folded()
    merge(nothing_yet, folded({"tokens": 1, "kind": None, "ms": 20.0}))
    assert nothing_yet[:5] == [1, 1, {}, 20.0, 20.0]


def test_a_new_states_values_are_fresh_empty_values_of_each_kind() -> None:
    fields = (
        Field("calls", "n", "sum", "1", None),
        Field("kinds", "k", "counts", 'doc["kind"]', None),
        Field("fastest", "lo", "min", 'doc["ms"]', None),
        Field("slowest", "hi", "max", 'doc["ms"]', None),
        Field("sketch", "sk", "sketch", 'doc["ms"]', None),
    )
    empty = _compile_empty(fields)
    first, second = empty(), empty()
    assert first[:4] == [0, {}, None, None] and first[4].count == 0
    assert first[1] is not second[1] and first[4] is not second[4]  # never shared between states


def test_any_field_table_compiles_into_a_wire_form_and_its_reader() -> None:
    """Compiled at import like the fold, so compiled here again with a table of its own: one field
    of each kind, with the values that need care (a sum beyond 64 bits, a minimum of 0)."""
    to_wire, read_wire = _compile_wire(ONE_FIELD_OF_EACH_KIND)
    sketch = LatencySketch()
    sketch.add(30.0)
    values: list[Any] = [3, 2**64, {"a": 2, "b": 2**63}, 0.0, None, sketch]
    wire = to_wire(values)
    big = {"t": str(2**64), "k": {"a": 2, "b": str(2**63)}}
    assert wire == {"n": 3, **big, "lo": 0.0, "sk": sketch.to_wire()}
    back: list[Any] = [0, 0, {}, None, None, LatencySketch()]
    read_wire(orjson.loads(orjson.dumps(wire)), back)
    assert back[:5] == [3, 2**64, {"a": 2, "b": 2**63}, 0.0, None]
    assert back[5].bins == sketch.bins
    assert to_wire([0, 0, {}, None, None, LatencySketch()]) == {}  # empty fields are left out
    assert to_wire([-(2**63), 2**63 - 1, {}, None, 7.5, LatencySketch()]) == {
        "n": -(2**63),
        "t": 2**63 - 1,
        "hi": 7.5,
    }
    for bad in ({"n": True}, {"n": 1.5}, {"k": {"a": "x"}}, {"lo": "fast"}, {"hi": False}):
        with pytest.raises((ValueError, TypeError)):
            read_wire(bad, [0, 0, {}, None, None, LatencySketch()])


def test_the_wire_leaves_empty_fields_out_and_reads_them_back_empty() -> None:
    """A one-call state carries only what the call set; a min or max of 0 is a value, not empty."""
    state = WindowState.of(requests=1, successes=1, input_tokens=5, latency_min_ms=0.0, latency_max_ms=0.0)
    encoded = state.to_wire()
    assert encoded == {"n": 1, "ok": 1, "ti": 5, "lmin": 0.0, "lmax": 0.0, "p": None, "f": None}
    back = WindowState.from_wire(orjson.loads(orjson.dumps(encoded)))
    assert back.values[:-1] == state.values[:-1] and back.sketch.count == 0  # the sketch is last
    assert WindowState().to_wire() == {"p": None, "f": None}
