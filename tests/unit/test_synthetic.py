"""The synthetic load generator: deterministic, shaped like the gateway's traffic, invalid inputs rejected."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from callstream.producers.contract import RawCallEvent, decode_events, encode_events
from callstream.producers.deadletter import original_text
from callstream.producers.synthetic import DEFAULT_MODELS, FAILURES, generate, invalid_inputs

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events() -> list[RawCallEvent]:
    return generate(20_000, seed=1, start=START, rate_per_s=100)


def test_same_seed_same_events() -> None:
    a = [e.to_wire() for e in generate(500, seed=42, start=START)]
    b = [e.to_wire() for e in generate(500, seed=42, start=START)]
    c = [e.to_wire() for e in generate(500, seed=43, start=START)]
    assert a == b
    assert a != c
    assert len({e["event_id"] for e in a}) == 500


def test_events_are_valid_and_in_time_order(events: list[RawCallEvent]) -> None:
    decoded, rejected = decode_events(encode_events(events[:2000]))
    assert rejected == [] and decoded == events[:2000]
    times = [e.event_time for e in events]
    assert times == sorted(times) and times[0] > START
    # 100 calls per second of event time on average.
    assert timedelta(seconds=180) < times[-1] - START < timedelta(seconds=220)


def test_model_shares_roughly_as_configured(events: list[RawCallEvent]) -> None:
    counts = Counter(e.request_model for e in events)
    total = sum(m.share for m in DEFAULT_MODELS)
    for profile in DEFAULT_MODELS:
        share = counts[profile.name] / len(events)
        assert abs(share - profile.share / total) < 0.015, profile.name
    assert set(counts) == {m.name for m in DEFAULT_MODELS}


def test_failure_mix_present(events: list[RawCallEvent]) -> None:
    kinds = Counter((e.status_code, e.error_type) for e in events if e.status_code != 200)
    for _, status, error_type, _ in FAILURES:
        assert kinds[(status, error_type)] > 0, (status, error_type)
    failure_share = sum(kinds.values()) / len(events)
    assert abs(failure_share - sum(f[0] for f in FAILURES)) < 0.01
    # Calls without a response have no response model and no output; timeouts took >= 30 s.
    for e in events:
        if e.status_code is None:
            assert e.response_model is None and e.output_tokens == 0
            if e.error_type == "timeout":
                assert e.duration_ms >= 30_000
    assert sum(e.duration_ms >= 5000 for e in events) / len(events) > 0.02  # the slow tail
    assert any(e.cache_read_input_tokens for e in events)
    assert any(e.reasoning_output_tokens for e in events)


def test_late_events() -> None:
    late = generate(2000, seed=3, start=START, late_share=0.1, late_by_s=600)
    behind = sum(
        1 for a, b in itertools.pairwise(late) if b.event_time < a.event_time - timedelta(seconds=500)
    )
    assert 100 < behind < 300


def test_invalid_inputs_are_all_rejected_with_the_expected_reason() -> None:
    cases = invalid_inputs()
    assert len(cases) >= 5
    # One by one, as one-item batches (the fragments describe batch items) ...
    for original, fragment in cases:
        valid, rejected = decode_events(orjson.dumps([original]))
        assert valid == []
        assert len(rejected) == 1
        assert fragment in rejected[0].reason, (original, rejected[0].reason)
        if isinstance(original, dict):  # ... and as single-object messages
            assert fragment in decode_events(orjson.dumps(original))[1][0].reason
    # ... and all in one batch next to a valid event, which survives.
    good = generate(1, seed=9, start=START)[0].to_wire()
    valid, rejected = decode_events(orjson.dumps([good, *(c for c, _ in cases)]))
    assert [e.event_id for e in valid] == [good["event_id"]]
    assert [r.index for r in rejected] == list(range(1, len(cases) + 1))
    for rejection, (original, fragment) in zip(rejected, cases, strict=True):
        assert fragment in rejection.reason
        assert orjson.loads(original_text(rejection.original)) == original
