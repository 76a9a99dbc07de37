"""Dedup index: duplicates within and across batches, replays, and expiry by horizon."""

from __future__ import annotations

import random

from streams.dedup import DedupIndex

HOUR = 3_600_000


def ids(*names: str, at: int = 1_000) -> list[tuple[str, int]]:
    return [(n, at) for n in names]


def test_duplicates_within_a_batch() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    assert index.admit(0, ids("a", "b", "a", "c", "b", "a")) == [True, True, False, True, False, False]


def test_duplicates_across_batches() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    assert index.admit(10, ids("a", "b")) == [True, True]
    assert index.admit(11, ids("b", "c")) == [False, True]
    assert index.admit(12, ids("a", "c", "d")) == [False, False, True]
    assert index.admit(13, []) == []


def test_reprocessing_the_same_offset_yields_the_same_verdicts() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    first = [
        index.admit(o, batch)
        for o, batch in [(0, ids("a", "b", "a")), (1, ids("b", "c")), (2, ids("c", "d"))]
    ]
    # A crash before the commit: batches 1 and 2 come again, then 0 as well.
    assert index.admit(1, ids("b", "c")) == first[1] == [False, True]
    assert index.admit(2, ids("c", "d")) == first[2] == [False, True]
    assert index.admit(0, ids("a", "b", "a")) == first[0] == [True, True, False]
    assert index.admit(3, ids("a", "d")) == [False, False]


def test_replay_equals_first_run_on_random_batches() -> None:
    rng = random.Random(5)
    batches = [
        (offset, [(f"e{rng.randrange(300)}", 1_000 + offset) for _ in range(rng.randrange(0, 20))])
        for offset in range(200)
    ]
    first_run = DedupIndex(horizon_ms=HOUR)
    verdicts = [first_run.admit(o, b) for o, b in batches]
    # Independent truth: an event counts the first time its id is seen, in offset then batch order.
    seen: set[str] = set()
    for (_, batch), got in zip(batches, verdicts, strict=True):
        want = []
        for event_id, _ in batch:
            want.append(event_id not in seen)
            seen.add(event_id)
        assert got == want
    # Reprocess the tail from offset 120 on, as after a crash: same verdicts, batch by batch.
    for (offset, batch), got in zip(batches[120:], verdicts[120:], strict=True):
        assert first_run.admit(offset, batch) == got
    # A worker rebuilding its index from what was remembered also agrees.
    rebuilt = DedupIndex(horizon_ms=HOUR)
    for offset, (remembered, max_ms) in first_run.batches.items():
        rebuilt.remember(offset, remembered, max_ms)
    for (offset, batch), got in zip(batches[150:], verdicts[150:], strict=True):
        assert rebuilt.admit(offset, batch) == got


def test_expiry_by_horizon() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.admit(0, [("old", 1_000)])
    index.admit(1, [("mid", 1_000 + HOUR // 2), ("old", 2_000)])
    index.admit(2, [("new", 1_000 + HOUR)])
    # Batch 0's newest event (1 000) falls out once the stream passes 1 000 + horizon.
    assert index.expire(1_000 + HOUR) == []
    assert index.expire(1_001 + HOUR) == [0]
    assert 0 not in index.batches and "old" not in index.first_offset
    assert "mid" in index.first_offset
    # An id past the horizon counts again: it is a new event as far as the index can tell.
    assert index.admit(3, [("old", 2_000 + HOUR), ("mid", 2_000 + HOUR)]) == [True, False]
    assert index.expire(10 * HOUR) == [1, 2, 3]
    assert index.first_offset == {} and index.batches == {}


def test_an_id_is_remembered_from_its_first_batch_only() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.admit(0, [("a", 0)])
    index.admit(5, [("b", 3 * HOUR)])
    index.admit(6, [("a", 3 * HOUR)])  # duplicate of batch 0's event
    assert index.expire(2 * HOUR) == [0]
    # "a" was remembered with batch 0 only: once that batch is past the horizon, "a" counts again.
    assert index.admit(7, [("b", 3 * HOUR), ("a", 3 * HOUR)]) == [False, True]
