"""Window states are values that merge: in any grouping and order, and like one pass over all events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.streams.windows import WindowKey, WindowState, windows_of

BASE = datetime(2026, 1, 1, 22, 30, tzinfo=UTC)
MODELS = {
    "gpt-4.1": ("openai", "gpt-4.1"),
    "gpt-4.1-2025-04-14": ("openai", "gpt-4.1"),
    "claude-sonnet-4-5": ("anthropic", "claude-sonnet-4-5"),
    "acme|x": ("other", "acme|x"),
}
CATEGORIES = [None, None, None, "timeout", "rate_limit_exceeded", "provider_server_error", "client_error"]


@st.composite
def enriched(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of an enriched event that windows read."""
    model = draw(st.sampled_from(sorted(MODELS)))
    input_tokens = draw(st.integers(0, 200_000))
    output_tokens = draw(st.integers(0, 50_000))
    priced = draw(st.booleans())
    return {
        "event_time": BASE + timedelta(milliseconds=draw(st.integers(0, 3 * 3_600_000))),
        "model": model,
        "provider": MODELS[model][0],
        "model_family": MODELS[model][1],
        "error_category": draw(st.sampled_from(CATEGORIES)),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": draw(st.integers(0, input_tokens)),
        "cache_creation_input_tokens": 0,
        "reasoning_output_tokens": draw(st.integers(0, output_tokens)),
        "priced": priced,
        "cost_pico": draw(st.integers(0, 10**13)) if priced else 0,
        "duration_ms": draw(
            st.one_of(
                st.just(0.0),
                st.floats(0, 600_000, allow_nan=False),
                st.integers(0, 10**6).map(lambda u: u / 1000),
            )
        ),
        "late": draw(st.booleans()),
    }


events = st.lists(enriched(), max_size=40)


def fold(docs: list[dict[str, Any]]) -> WindowState:
    state = WindowState(provider="openai", model_family="gpt-4.1")
    for doc in docs:
        state.add_event(doc)
    return state


def copy(state: WindowState) -> WindowState:
    return WindowState.from_wire(state.to_wire())


def merged(*states: WindowState) -> WindowState:
    out = copy(states[0])
    for s in states[1:]:
        out.merge(s)
    return out


@settings(max_examples=150, deadline=None)
@given(events, events, events)
def test_merge_is_associative_commutative_and_equals_one_fold(
    a: list[dict[str, Any]], b: list[dict[str, Any]], c: list[dict[str, Any]]
) -> None:
    sa, sb, sc = fold(a), fold(b), fold(c)
    ab = merged(sa, sb)
    assert ab.to_wire() == merged(sb, sa).to_wire()
    left = merged(ab, sc)
    right = merged(sa, merged(sb, sc))
    assert left.to_wire() == right.to_wire()
    whole = fold(a + b + c)
    assert left.to_wire() == whole.to_wire()
    assert left.sketch.bins == whole.sketch.bins and left.sketch.zero_count == whole.sketch.zero_count
    # Exact sums, checked against the events themselves.
    everything = a + b + c
    assert left["cost_pico"] == sum(d["cost_pico"] for d in everything if d["priced"])
    assert left["latency_sum_us"] == sum(round(d["duration_ms"] * 1000) for d in everything)
    assert left.requests == len(everything) == left["successes"] + left["errors"]


@settings(max_examples=100, deadline=None)
@given(st.lists(enriched(), min_size=1, max_size=60), st.lists(st.integers(0, 60), max_size=6))
def test_batches_merged_equal_one_batch(docs: list[dict[str, Any]], cuts: list[int]) -> None:
    bounds = sorted({0, len(docs), *(min(c, len(docs)) for c in cuts)})
    batches = [docs[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    combined: dict[WindowKey, WindowState] = {}
    for batch in reversed(batches):  # order does not matter either
        for window, state in windows_of(batch).items():
            if window in combined:
                combined[window].merge(state)
            else:
                combined[window] = copy(state)
    whole = windows_of(docs)
    assert set(combined) == set(whole)
    for window, state in whole.items():
        assert combined[window].to_wire() == state.to_wire()
        assert combined[window].to_aggregate(window, 1) == state.to_aggregate(window, 1)
