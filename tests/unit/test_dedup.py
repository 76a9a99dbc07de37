"""Dedup index: duplicates within and across batches, replays, and expiry by horizon."""

from __future__ import annotations

import random
import struct

import orjson

from callstream.streams.dedup import (
    SEAL_AT,
    DedupIndex,
    batch_record,
    fingerprints,
    record_fingerprints,
    record_max_ms,
)

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
    for offset, record in first_run.batches.items():
        rebuilt.restore(offset, record)
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
    assert 0 not in index.batches and not index.remembers("old")
    assert index.remembers("mid")
    # An id past the horizon counts again: it is a new event as far as the index can tell.
    assert index.admit(3, [("old", 2_000 + HOUR), ("mid", 2_000 + HOUR)]) == [True, False]
    assert index.expire(10 * HOUR) == [1, 2, 3]
    assert index.batches == {} and not any(index.remembers(i) for i in ("old", "mid", "new"))


def test_an_id_is_remembered_from_its_first_batch_only() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.admit(0, [("a", 0)])
    index.admit(5, [("b", 3 * HOUR)])
    index.admit(6, [("a", 3 * HOUR)])  # duplicate of batch 0's event
    assert index.expire(2 * HOUR) == [0]
    # "a" was remembered with batch 0 only: once that batch is past the horizon, "a" counts again.
    assert index.admit(7, [("b", 3 * HOUR), ("a", 3 * HOUR)]) == [False, True]


def test_records_written_before_fingerprints_are_read() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.restore(4, orjson.dumps([["a", "b"], 1_000]))
    assert index.admit(5, ids("b", "c")) == [False, True]
    assert index.admit(4, ids("a", "b")) == [True, True]  # batch 4 reprocessed: its own ids count


def test_many_ids_through_sealing_compaction_and_expiry() -> None:
    """Enough ids to seal many segments and compact them, checked against a plain dict model."""
    rng = random.Random(11)
    index = DedupIndex(horizon_ms=50_000)
    model: dict[str, tuple[int, int]] = {}  # id -> (first offset, that batch's newest ms)
    batch_max: dict[int, int] = {}
    for offset in range(400):
        now = offset * 1_000
        batch = [(f"id{rng.randrange(60_000)}", now) for _ in range(300)]
        live = {i: first for i, (first, _) in model.items() if first in batch_max}
        want, seen = [], set()
        for event_id, _ in batch:
            first = live.get(event_id)
            want.append((first is None or first == offset) and event_id not in seen)
            seen.add(event_id)
        assert index.admit(offset, batch) == want, offset
        if any(want):
            batch_max[offset] = now
            for (event_id, _), fresh in zip(batch, want, strict=True):
                if fresh:
                    model[event_id] = (offset, now)
        expired = sorted(o for o, ms in batch_max.items() if ms < now - 50_000)
        assert index.expire(now) == expired
        for o in expired:
            del batch_max[o]
        # Memory stays bounded by the live ids after every expiry, not only at the end.
        stored = len(index._recent) + sum(len(f) for f, _ in index._segments)
        assert stored <= 2 * sum((len(r) - 9) // 8 for r in index.batches.values()) + 8192, offset
    assert index.batches.keys() == batch_max.keys()


def test_batch_records_keep_their_documented_layout() -> None:
    """A record outlives a release in the changelog: b'\\x01', newest event ms as a signed 64-bit
    little-endian integer, then one unsigned 64-bit little-endian fingerprint per id."""
    fps = [0, 1, 2**63, 2**64 - 1]
    for newest in (1_767_225_600_000, 0, -5):
        record = batch_record(newest, fps)
        assert record == b"\x01" + struct.pack("<q", newest) + struct.pack("<4Q", *fps)
        assert record_max_ms(record) == newest
        assert record_fingerprints(record).tolist() == fps


def test_a_fingerprint_one_bit_away_is_another_id() -> None:
    """Fingerprints are compared as exact 64-bit integers, in sealed segments too (where a float
    would round the lowest bits away)."""
    [fp] = fingerprints(["x"])
    neighbour = fp ^ 1
    index = DedupIndex(horizon_ms=HOUR)
    fillers = [(neighbour + 2 * (i + 1)) % 2**64 for i in range(SEAL_AT)]  # enough to seal a segment
    index.restore(0, batch_record(1_000, [neighbour, *fillers]))
    assert index._segments and not index._recent  # the neighbour is in a sealed segment
    assert not index.remembers("x")
    assert index.admit(1, ids("x")) == [True]


def test_an_id_counted_again_after_its_horizon_is_then_remembered_anew() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.admit(0, [("a", 0)])
    assert index.expire(HOUR + 1) == [0]
    assert index.admit(1, [("a", 2 * HOUR)]) == [True]  # a new event as far as the index can tell
    assert index.admit(2, [("a", 2 * HOUR)]) == [False]  # ... whose copies are duplicates again
    assert index.remembers("a")


def test_a_rebuilt_index_keeps_the_newest_batch_of_an_id() -> None:
    """After a restart the changelog may still hold an expired batch next to the newer one that
    re-admitted the same id, in any order: the id belongs to the newer batch."""
    index = DedupIndex(horizon_ms=HOUR)
    index.admit(0, [("a", 0)])
    old = index.batches[0]
    index.expire(HOUR + 1)
    index.admit(7, [("a", 2 * HOUR)])
    rebuilt = DedupIndex(horizon_ms=HOUR)
    rebuilt.restore(7, index.batches[7])
    rebuilt.restore(0, old)  # its deletion was not in the changelog yet
    assert rebuilt.expire(HOUR + 1) == [0]
    assert rebuilt.remembers("a")
    assert rebuilt.admit(8, [("a", 2 * HOUR)]) == [False]


def test_a_batch_restored_again_with_a_newer_record_expires_by_the_newer_one() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.restore(5, batch_record(1_000, fingerprints(["a"])))
    index.restore(5, batch_record(3 * HOUR, fingerprints(["a", "b"])))
    assert index.expire(1_001 + HOUR) == []
    assert index.remembers("a") and index.remembers("b")
    assert index.expire(3 * HOUR + HOUR + 1) == [5]


def test_memory_is_given_back_when_batches_restored_twice_expire() -> None:
    """A changelog replayed with each record twice (before compaction of the topic) still lets the
    index drop every fingerprint once every batch has expired."""
    index = DedupIndex(horizon_ms=HOUR)
    records = {
        offset: batch_record(1_000, fingerprints(f"{offset}-{i}" for i in range(1_000)))
        for offset in range(20)
    }
    for _ in range(2):
        for offset, record in records.items():
            index.restore(offset, record)
    assert all(index.remembers(f"{o}-999") for o in records)
    assert index.expire(1_001 + HOUR) == sorted(records)
    assert index.batches == {}
    # Sealed segments are compacted away; fewer than SEAL_AT dead entries may wait unsealed.
    assert index._segments == [] and len(index._recent) < SEAL_AT


def test_memory_of_a_large_expired_batch_is_given_back_beside_small_live_ones() -> None:
    index = DedupIndex(horizon_ms=HOUR)
    index.restore(0, batch_record(1_000, fingerprints(f"big-{i}" for i in range(3 * SEAL_AT))))
    index.restore(1, batch_record(HOUR, fingerprints(["small"])))
    assert index.expire(1_001 + HOUR) == [0]
    assert index.remembers("small") and not index.remembers("big-0")
    assert index._segments == [] and len(index._recent) < SEAL_AT


def test_expiring_a_few_ids_beside_many_live_ones_leaves_the_sealed_segments_alone() -> None:
    """Compaction rewrites every sealed fingerprint, so it waits until dead ones outnumber the live
    ones (plus SEAL_AT): expiring small batches one by one never rebuilds the index each time."""
    index = DedupIndex(horizon_ms=HOUR)
    index.restore(0, batch_record(10 * HOUR, fingerprints(f"live-{i}" for i in range(2 * SEAL_AT))))
    for offset in range(1, 11):
        index.restore(offset, batch_record(offset * 1_000, fingerprints([f"old-{offset}"])))
    for _ in range(2):  # a changelog replayed with a record twice
        index.restore(11, batch_record(10 * HOUR, fingerprints(["live-too"])))
    index.restore(12, batch_record(11 * 1_000, fingerprints(f"dead-{i}" for i in range(2 * SEAL_AT))))
    sealed = [fps for fps, _ in index._segments]
    assert sum(len(fps) for fps in sealed) >= 4 * SEAL_AT  # the live and the dead ids, sealed alike
    for offset in range(1, 11):
        assert index.expire(offset * 1_000 + HOUR + 1) == [offset]
    assert index.expire(11 * 1_000 + HOUR + 1) == [12]  # as many dead as live: not yet worth a rebuild
    assert [fps for fps, _ in index._segments] == sealed
    assert all(after is before for (after, _), before in zip(index._segments, sealed, strict=True))
    assert index.remembers("live-0") and index.remembers("live-too") and not index.remembers("old-1")
