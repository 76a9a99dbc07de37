"""Input continuity: which input offsets the consumer moved past without delivering them.

faust-streaming 0.15.3 can move its consumer past fetched messages it never hands to an agent (its
fetcher drops the records of partitions it considers inactive, and the rest of a batch cut short by
a rebalance), and it then marks the jump as acked, so that its commit moves past them too. The
stream worker therefore checks every delivered message of an input partition against the offset
after the previous one; a message beyond it reveals a hole, which the worker reads directly.

Before the first delivery after an assignment there is no previous message. The first one is
checked against the lower of two bounds, because either can be ahead of what was really done:

- the next offset recorded in a changelogged table: after a SIGKILL it can be durable while the
  outputs of the messages just below it are not;
- the group's commit: it can have moved past a hole that faust marked as acked.

Reading more than was skipped is harmless: reprocessing a raw message yields what its first
processing yielded, and windows skip partials of source offsets they merged. Pure: no Kafka.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


def first_expected(recorded: int | None, group_start: int) -> int:
    """The offset the first message delivered after an assignment should have."""
    return group_start if recorded is None else min(recorded, group_start)


@dataclass
class InputContinuity:
    """Per input partition (any hashable id), the offset after the last message delivered since
    the assignment."""

    next_delivery: dict[Hashable, int] = field(default_factory=dict)

    def expected(self, partition: Hashable) -> int | None:
        """The offset the next delivered message should have; None before the first delivery."""
        return self.next_delivery.get(partition)

    def deliver(self, partition: Hashable, offset: int, expected: int) -> range | None:
        """Record that `offset` was delivered when `expected` was due; returns the offsets skipped
        before it (empty unless the consumer jumped ahead), or None for a message below `expected`:
        everything below it was processed since the assignment (delivered, or read directly as a
        hole), so a consumer that delivers it again (seen after a takeover on Apache Kafka and on
        noida-db) is not followed back; processing it twice would count its events twice."""
        if offset < expected:
            return None
        self.next_delivery[partition] = offset + 1
        return range(expected, offset)

    def forget(self) -> None:
        """After a revocation: the next assignment starts from the recorded bounds again."""
        self.next_delivery.clear()


@dataclass
class EndOfPartitionCheck:
    """A hole at the end of a quiet partition: input beyond the offset expected next that no
    message will reveal, because none follows it. It counts once two checks in a row see it with
    the same expected offset: input that has just arrived looks the same to one check, and fetching
    it again would process it twice."""

    seen: dict[Hashable, int] = field(default_factory=dict)  # partition -> expected offset at the last check

    def left_behind(self, partition: Hashable, expected: int, end: int) -> bool:
        """Whether input from `expected` to `end` (the partition's end) has been left behind."""
        if end <= expected:
            self.seen.pop(partition, None)
            return False
        if self.seen.get(partition) == expected:
            del self.seen[partition]
            return True
        self.seen[partition] = expected
        return False

    def forget(self) -> None:
        self.seen.clear()
