"""The per-message core of process_calls: whatever a raw message holds, an outcome that encodes,
with every hostile input dead-lettered and nothing moving the partition's clock absurdly."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from callstream.producers.contract import derived_event_id, partition_for_event_id
from callstream.producers.deadletter import DeadLetter
from callstream.streams.clock import EventTimeBounds, PartitionClock
from callstream.streams.dedup import DedupIndex
from callstream.streams.keycap import OTHER, KeyCap
from callstream.streams.partials import decode_partial
from callstream.streams.pricing import Price, PriceCatalogue
from callstream.streams.process import Outcome, PartitionState, RawInput, RawProcessor
from callstream.streams.windows import WindowKey, WindowState

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
PARTITIONS = 1  # every id is ours: no re-routing unless a test asks for it
PRICES = PriceCatalogue(
    [
        Price.from_dict(
            {
                "id": "t:pro",
                "provider": "openai",
                "match": "o1-pro",
                "effective_from": "2020-01-01T00:00:00Z",
                "input": "150",
                "output": "600",
            }
        )
    ]
)


def processor(
    partitions: int = PARTITIONS, caps: dict[str, int] | None = None
) -> tuple[RawProcessor, PartitionState]:
    bounds = EventTimeBounds(max_age_ms=30 * 86_400_000, max_skew_ms=300_000)
    proc = RawProcessor(PRICES, partitions, grace_ms=60_000, bounds=bounds, enriched_max_bytes=64 * 1024)
    state = PartitionState(PartitionClock(), DedupIndex(86_400_000), KeyCap(caps or {"model": 100}))
    return proc, state


def event(i: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"e{i}",
        "event_time": (NOW - timedelta(minutes=10)).isoformat(),
        "request_model": "o1-pro",
        "duration_ms": 100.0,
        "status_code": 200,
        "input_tokens": 10,
        "output_tokens": 5,
    }
    return base | fields


def run(proc: RawProcessor, state: PartitionState, value: bytes | None, offset: int = 0) -> Outcome:
    out = proc.process(state, RawInput("raw", 0, offset, value, NOW_MS))
    for letter in out.dead_letters:  # every dead letter encodes and follows the contract
        DeadLetter.model_validate_json(orjson.dumps(letter))
    for partial in out.partials.values():
        decode_partial(partial)
    assert state.clock.next_offset == offset + 1  # the partition always moves on
    return out


def test_a_valid_batch_is_enriched_and_folded() -> None:
    proc, state = processor()
    out = run(proc, state, orjson.dumps([event(1), event(2)]))
    assert (out.valid, out.invalid, out.dead_letters) == (2, 0, [])
    assert sum(len(orjson.loads(chunk)) for chunk in out.enriched) == 2
    assert state.clock.stream_time_ms == int((NOW - timedelta(minutes=10)).timestamp() * 1000)


def test_a_far_future_event_is_dead_lettered_and_never_moves_stream_time() -> None:
    proc, state = processor()
    run(proc, state, orjson.dumps([event(1)]))
    before = state.clock.stream_time_ms
    out = run(proc, state, orjson.dumps([event(2, event_time="2100-01-01T00:00:00Z"), event(3)]), offset=1)
    assert (out.valid, out.out_of_bounds) == (1, 1)
    assert state.clock.stream_time_ms == before
    [letter] = out.dead_letters
    assert letter["stage"] == "stream.event_time" and "2100-01-01" in letter["reason"]
    assert letter["batch_index"] == 0 and orjson.loads(letter["original"])["event_id"] == "e2"
    # The next on-time event is not flagged late: stream time did not jump.
    later = run(proc, state, orjson.dumps([event(4)]), offset=2)
    assert later.late == []


@pytest.mark.parametrize(
    "event_time",
    ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "1970-01-01T00:00:00Z", "2026-09-01T00:00:00Z"],
)
def test_absurd_and_old_event_times_are_dead_lettered(event_time: str) -> None:
    proc, state = processor()
    out = run(proc, state, orjson.dumps([event(1, event_time=event_time)]))
    assert out.valid == 0 and len(out.dead_letters) == 1
    assert out.partials == {} and state.clock.stream_time_ms == 0


def test_expensive_calls_beyond_64_bits_still_encode() -> None:
    """40 calls of 10^9 tokens of an expensive model: the partial's cost passes 2^63 pico-dollars."""
    proc, state = processor()
    calls = [event(i, input_tokens=10**9, output_tokens=10**9) for i in range(40)]
    out = run(proc, state, orjson.dumps(calls))
    assert out.valid == 40
    [partial] = [decode_partial(p) for p in out.partials.values()]
    day = next(k for k in partial.windows if k.startswith("model|o1-pro|1d|"))
    cost = WindowState.from_wire(partial.windows[day])["cost_pico"]
    assert cost == 40 * (10**9 * 150 + 10**9 * 600) * 10**6 > 2**63
    aggregate = WindowState.from_wire(partial.windows[day]).to_aggregate(WindowKey.decode(day), 1)
    orjson.dumps(aggregate, option=orjson.OPT_UTC_Z)  # what is published always encodes


def test_metadata_nested_300_deep_gives_a_dead_letter_that_encodes() -> None:
    """Deeper than orjson can encode again: the dead letter keeps it as bounded text."""
    nested = b'{"x":' * 300 + b"{}" + b"}" * 300
    hostile = orjson.dumps(event(2))[:-1] + b',"metadata":' + nested + b"}"
    proc, state = processor()
    out = run(proc, state, b"[" + orjson.dumps(event(1)) + b"," + hostile + b"]")
    assert out.valid == 1 and len(out.dead_letters) == 1
    assert out.dead_letters[0]["batch_index"] == 1 and "metadata" in out.dead_letters[0]["reason"]


@pytest.mark.parametrize("value", [b"", None, b"\xff\xfe", b"{not json", b"[" * 5000, b"42", b'"text"'])
def test_values_that_are_not_events_are_dead_lettered(value: bytes | None) -> None:
    proc, state = processor()
    out = run(proc, state, value)
    assert out.valid == 0 and len(out.dead_letters) == 1


def test_events_without_ids_get_the_same_ids_when_processed_again() -> None:
    proc, state = processor()
    value = orjson.dumps([{k: v for k, v in event(1).items() if k != "event_id"}])
    first = run(proc, state, value, offset=9)
    again = run(proc, state, value, offset=9)  # after a crash, the same message once more
    ids = [doc["event_id"] for chunk in first.enriched for doc in orjson.loads(chunk)]
    assert ids == [derived_event_id("raw:0:9", 0)]
    assert [doc["event_id"] for chunk in again.enriched for doc in orjson.loads(chunk)] == ids


def test_duplicates_are_dropped_and_other_partitions_events_set_aside() -> None:
    proc, state = processor(partitions=4)
    ours = [f"id{i}" for i in range(40) if partition_for_event_id(f"id{i}", 4) == 0][:3]
    theirs = [f"id{i}" for i in range(40) if partition_for_event_id(f"id{i}", 4) != 0][:2]
    first = run(proc, state, orjson.dumps([event(0, event_id=i) for i in ours + theirs]))
    assert (first.valid, first.rerouted) == (3, 2)
    assert sum(len(orjson.loads(v)) for v in first.elsewhere.values()) == 2
    second = run(proc, state, orjson.dumps([event(0, event_id=ours[0])]), offset=1)
    assert (second.valid, second.duplicates) == (0, 1)


def test_names_beyond_the_daily_cap_aggregate_under_other() -> None:
    proc, state = processor(caps={"model": 2})
    out = run(proc, state, orjson.dumps([event(i, request_model=f"acme-{i}") for i in range(5)]))
    keys = {
        WindowKey.decode(k).key
        for p in out.partials.values()
        for k in decode_partial(p).windows
        if k.startswith("model|")
    }
    assert keys == {"acme-0", "acme-1", OTHER}
    names = [doc["model"] for chunk in out.enriched for doc in orjson.loads(chunk)]
    assert names == [f"acme-{i}" for i in range(5)]  # the calls keep their real names


def windows_of(out: Outcome) -> dict[WindowKey, WindowState]:
    return {
        WindowKey.decode(key): WindowState.from_wire(wire)
        for partial in out.partials.values()
        for key, wire in decode_partial(partial).windows.items()
    }


def test_dead_letters_say_where_the_input_was_read_and_keep_it() -> None:
    proc, state = processor()
    bad = event(2, input_tokens=-1)
    out = run(
        proc, state, orjson.dumps([event(1), bad, event(3, event_time="2100-01-01T00:00:00Z")]), offset=41
    )
    invalid, out_of_bounds = out.dead_letters
    assert (invalid["stage"], out_of_bounds["stage"]) == ("stream.validate", "stream.event_time")
    for letter, index in ((invalid, 1), (out_of_bounds, 2)):
        assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == ("raw", 0, 41)
        assert letter["batch_index"] == index
    assert orjson.loads(invalid["original"]) == bad and "input_tokens" in invalid["reason"]
    assert orjson.loads(out_of_bounds["original"])["event_id"] == "e3"
    single = run(proc, state, orjson.dumps(event(4, event_time="2100-01-01T00:00:00Z")), offset=42)
    assert single.dead_letters[0]["batch_index"] is None  # the message is that one event


def test_every_out_of_bounds_event_is_counted() -> None:
    proc, state = processor()
    far = [event(i, event_time="2100-01-01T00:00:00Z") for i in range(3)]
    out = run(proc, state, orjson.dumps([*far, event(9)]))
    assert (out.valid, out.out_of_bounds, len(out.dead_letters)) == (1, 3, 3)


def test_duplicates_beside_new_events_are_counted_once_each() -> None:
    proc, state = processor()
    run(proc, state, orjson.dumps([event(1), event(2)]))
    out = run(proc, state, orjson.dumps([event(1), event(3), event(2), event(3), event(4)]), offset=1)
    assert (out.valid, out.duplicates) == (2, 3)
    assert [d["event_id"] for chunk in out.enriched for d in orjson.loads(chunk)] == ["e3", "e4"]


def test_the_dedup_record_lets_a_restarted_worker_recognise_the_ids() -> None:
    proc, state = processor()
    out = run(proc, state, orjson.dumps([event(1), event(2)]), offset=5)
    assert out.dedup_record is not None
    rebuilt = DedupIndex(86_400_000)
    rebuilt.restore(5, out.dedup_record)
    assert rebuilt.admit(6, [("e1", NOW_MS), ("e2", NOW_MS), ("e3", NOW_MS)]) == [False, False, True]
    assert run(proc, state, orjson.dumps([event(1)]), offset=6).dedup_record is None  # nothing new


def test_late_events_are_flagged_published_and_still_counted() -> None:
    """Grace is a minute: once stream time is 10 minutes ahead, an event of 5 minutes before is late."""
    proc, state = processor()
    run(proc, state, orjson.dumps([event(1)]))  # stream time: NOW - 10 min
    stream_time = state.clock.stream_time_ms
    late_time = (NOW - timedelta(minutes=15)).isoformat()
    out = run(proc, state, orjson.dumps([event(2, event_time=late_time), event(3)]), offset=1)
    assert [doc["event_id"] for doc in out.late] == ["e2"] and out.late[0]["late"] is True
    flags = {d["event_id"]: d["late"] for chunk in out.enriched for d in orjson.loads(chunk)}
    assert flags == {"e2": True, "e3": False}
    assert state.clock.stream_time_ms == stream_time  # a late event never moves the clock
    day = next(s for w, s in windows_of(out).items() if w.dimension == "model" and w.size == "1d")
    assert (day.requests, day["late_events"]) == (2, 1)


def test_enriched_events_are_published_with_utc_times() -> None:
    proc, state = processor()
    out = run(proc, state, orjson.dumps([event(1)]))
    [doc] = [d for chunk in out.enriched for d in orjson.loads(chunk)]
    assert doc["event_time"] == (NOW - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert doc["time_bucket"] == doc["event_time"]


def test_dedup_batches_past_the_horizon_are_reported_for_deletion() -> None:
    proc, state = processor()  # a one-day dedup horizon
    run(proc, state, orjson.dumps([event(1, event_time=(NOW - timedelta(days=3)).isoformat())]))
    out = run(proc, state, orjson.dumps([event(2)]), offset=1)
    assert out.expired_batches == [0]
    assert 0 not in state.dedup.batches


def test_every_dimension_is_capped_by_its_own_limit() -> None:
    caps = {"model": 1, "provider": 1, "model_family": 1, "service": 1, "user": 1}
    proc, state = processor(caps=caps)
    calls = [
        event(1, request_model="o1-pro", service_name="svc-a", user_id="u-a"),
        event(2, request_model="claude-sonnet-4-5", service_name="svc-b", user_id="u-b"),
    ]
    keys: dict[str, set[str]] = defaultdict(set)
    for window in windows_of(run(proc, state, orjson.dumps(calls))):
        keys[window.dimension].add(window.key)
    assert keys == {
        "model": {"o1-pro", OTHER},
        "provider": {"openai", OTHER},
        "model_family": {"o1-pro", OTHER},
        "service": {"svc-a", OTHER},
        "user": {"u-a", OTHER},
    }
