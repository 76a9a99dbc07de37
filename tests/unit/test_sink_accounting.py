"""The ledger commits a partition only past messages whose every document is acknowledged."""

from __future__ import annotations

import random

from callstream.sinks.accounting import OffsetLedger

P0, P1 = ("t", 0), ("t", 1)


def test_commits_only_the_fully_acknowledged_prefix() -> None:
    ledger = OffsetLedger()
    for offset, docs in [(10, 2), (11, 1), (12, 3)]:
        ledger.read(P0, offset, docs)
    ledger.ack(P0, 11)
    ledger.ack(P0, 12, 3)
    assert ledger.committable() == {}  # offset 10 still has two documents out
    ledger.ack(P0, 10)
    assert ledger.committable() == {}
    ledger.ack(P0, 10)
    assert ledger.committable() == {P0: 13}
    ledger.committed({P0: 13})
    assert ledger.committable() == {}
    assert ledger.idle()


def test_partitions_are_independent() -> None:
    ledger = OffsetLedger()
    ledger.read(P0, 0, 1)
    ledger.read(P1, 5, 1)
    ledger.ack(P1, 5)
    assert ledger.committable() == {P1: 6}
    assert ledger.unacknowledged(P0) == 1


def test_messages_without_documents_complete_in_order() -> None:
    ledger = OffsetLedger()
    ledger.read(P0, 0, 1)
    ledger.read(P0, 1, 0)
    assert ledger.committable() == {}
    ledger.ack(P0, 0)
    assert ledger.committable() == {P0: 2}


def test_dropped_partitions_ignore_late_acknowledgements() -> None:
    ledger = OffsetLedger()
    ledger.read(P0, 0, 1)
    ledger.drop([P0])
    ledger.ack(P0, 0)
    assert ledger.committable() == {}
    assert ledger.idle()


def test_failed_commit_is_offered_again() -> None:
    ledger = OffsetLedger()
    ledger.read(P0, 0, 1)
    ledger.ack(P0, 0)
    assert ledger.committable() == {P0: 1}
    assert ledger.committable() == {P0: 1}  # nothing confirmed it yet
    assert not ledger.idle()


def test_random_acknowledgement_orders_against_a_simple_model() -> None:
    rng = random.Random(11)
    for _ in range(200):
        docs = [rng.randrange(0, 4) for _ in range(rng.randrange(1, 15))]
        ledger = OffsetLedger()
        for offset, count in enumerate(docs):
            ledger.read(P0, offset, count)
        acks = [offset for offset, count in enumerate(docs) for _ in range(count)]
        rng.shuffle(acks)
        remaining = list(docs)
        committed = 0
        for offset in [None, *acks]:
            if offset is not None:
                ledger.ack(P0, offset)
                remaining[offset] -= 1
            done_prefix = next((i for i, r in enumerate(remaining) if r), len(remaining))
            expected = {P0: done_prefix} if done_prefix > committed else {}
            got = ledger.committable()
            assert got == expected
            ledger.committed(got)
            committed = max(committed, done_prefix)
        assert committed == len(docs)
        assert ledger.idle()
