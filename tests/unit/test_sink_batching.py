"""Batches close on count, bytes and age; revoked partitions leave the open batch."""

from __future__ import annotations

from callstream.sinks.batching import BatchBuilder
from callstream.sinks.documents import ACTION_OVERHEAD_BYTES, Doc, Failure, Origin


def doc(partition: int, offset: int, size: int = 100) -> Doc:
    return Doc("i", "d", b"x" * (size - 1 - 1 - ACTION_OVERHEAD_BYTES), Origin("t", partition, offset))


def test_doc_size_counts_source_and_action() -> None:
    assert doc(0, 0, 100).nbytes == 100


def test_closes_at_max_docs() -> None:
    builder = BatchBuilder(max_docs=3, max_bytes=10_000, linger_s=60)
    closed = [b for i in range(7) for b in builder.add(doc(0, i), now=0)]
    assert [len(b) for b in closed] == [3, 3]
    assert builder.open_items == 1
    rest = builder.flush()
    assert rest is not None and [d.origin.offset for d in rest.docs] == [6]
    assert builder.flush() is None


def test_never_exceeds_max_bytes_except_for_a_single_oversized_doc() -> None:
    builder = BatchBuilder(max_docs=100, max_bytes=250, linger_s=60)
    closed = []
    for i, size in enumerate([100, 100, 100, 400, 100]):
        closed += builder.add(doc(0, i, size), now=0)
    assert [[d.origin.offset for d in b.docs] for b in closed] == [[0, 1], [2], [3]]
    assert [b.nbytes for b in closed] == [200, 100, 400]
    assert builder.open_bytes == 100


def test_linger_closes_a_partial_batch() -> None:
    builder = BatchBuilder(max_docs=100, max_bytes=10_000, linger_s=0.5)
    builder.add(doc(0, 0), now=10.0)
    builder.add(doc(0, 1), now=10.3)
    assert builder.due(10.4) is None
    batch = builder.due(10.5)
    assert batch is not None and len(batch) == 2
    assert builder.due(99) is None


def test_failures_ride_along_and_count() -> None:
    builder = BatchBuilder(max_docs=2, max_bytes=10_000, linger_s=60)
    assert builder.add(Failure("bad", "invalid_input", "raw", Origin("t", 0, 0)), now=0) == []
    (batch,) = builder.add(doc(0, 1), now=0)
    assert len(batch.failures) == 1 and len(batch.docs) == 1


def test_drop_removes_revoked_partitions_only() -> None:
    builder = BatchBuilder(max_docs=100, max_bytes=10_000, linger_s=60)
    for i in range(6):
        builder.add(doc(i % 3, i), now=0)
    assert builder.drop({("t", 1), ("t", 2)}) == 400
    batch = builder.flush()
    assert batch is not None and [d.origin.offset for d in batch.docs] == [0, 3]
    assert batch.nbytes == 200
    assert builder.drop({("t", 0)}) == 0
