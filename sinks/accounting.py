"""Which offsets are safe to commit: a message counts as done only when all its documents are.

Bulk requests run in parallel and a message's documents can span two of them, so acknowledgements
arrive out of order. The ledger keeps, per partition, the offsets read with how many of their
documents are still unacknowledged, and the committable position is one past the longest fully
acknowledged prefix. Pure: no Kafka, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

TopicPartition = tuple[str, int]


class _Partition:
    __slots__ = ("by_offset", "committed", "done", "queue")

    def __init__(self) -> None:
        self.queue: deque[list[int]] = deque()  # [offset, unacknowledged docs], in read order
        self.by_offset: dict[int, list[int]] = {}
        self.done: int | None = None  # next offset after the acknowledged prefix
        self.committed: int | None = None


class OffsetLedger:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def read(self, tp: TopicPartition, offset: int, docs: int) -> None:
        """A message was read; `docs` of its documents (or dead letters) must be acknowledged."""
        part = self._partitions.get(tp)
        if part is None:
            part = self._partitions[tp] = _Partition()
        entry = [offset, docs]
        part.queue.append(entry)
        part.by_offset[offset] = entry
        self._advance(part)

    def ack(self, tp: TopicPartition, offset: int, docs: int = 1) -> None:
        """Documents were acknowledged. Acks for dropped partitions or unknown offsets are ignored."""
        part = self._partitions.get(tp)
        if part is None:
            return
        entry = part.by_offset.get(offset)
        if entry is None:
            return
        entry[1] -= docs
        if entry[1] < 0:
            raise ValueError(f"{tp} offset {offset}: more acknowledgements than documents")
        self._advance(part)

    def _advance(self, part: _Partition) -> None:
        while part.queue and part.queue[0][1] == 0:
            offset = part.queue.popleft()[0]
            del part.by_offset[offset]
            part.done = offset + 1

    def committable(self) -> dict[TopicPartition, int]:
        """Positions (next offset to read) that moved since the last `committed()` call."""
        return {
            tp: part.done
            for tp, part in self._partitions.items()
            if part.done is not None and (part.committed is None or part.done > part.committed)
        }

    def committed(self, positions: dict[TopicPartition, int]) -> None:
        for tp, position in positions.items():
            part = self._partitions.get(tp)
            if part is not None and (part.committed is None or position > part.committed):
                part.committed = position

    def drop(self, tps: Iterable[TopicPartition]) -> None:
        """Revoked or lost partitions: their unacknowledged messages are someone else's now."""
        for tp in tps:
            self._partitions.pop(tp, None)

    def unacknowledged(self, tp: TopicPartition) -> int:
        part = self._partitions.get(tp)
        return sum(entry[1] for entry in part.queue) if part else 0

    def idle(self) -> bool:
        """Nothing read is waiting for an acknowledgement or a commit."""
        return all(not p.queue and p.done == p.committed for p in self._partitions.values())
