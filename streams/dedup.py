"""Exactly-once counting of event ids within a horizon, deterministic under reprocessing.

Raw events are partitioned by event id (producers.contract.partition_for_event_id), so every
copy of an event reaches the same partition and one index per partition sees them all. The index
remembers which batch (source offset) first carried each id: when a batch is processed again
after a crash, its own ids are not mistaken for duplicates, so the reprocessed batch yields exactly
what the first attempt yielded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class DedupIndex:
    horizon_ms: int
    first_offset: dict[str, int] = field(default_factory=dict)
    batches: dict[int, tuple[list[str], int]] = field(default_factory=dict)  # offset -> (ids, max event ms)

    def admit(self, offset: int, ids_and_times: Iterable[tuple[str, int]]) -> list[bool]:
        """For each (event_id, event_ms) of the batch at `offset`: True if it counts, False if a duplicate."""
        verdicts: list[bool] = []
        batch_ids: list[str] = []
        seen_here: set[str] = set()
        max_ms = -1
        for event_id, event_ms in ids_and_times:
            first = self.first_offset.get(event_id)
            fresh = (first is None or first == offset) and event_id not in seen_here
            verdicts.append(fresh)
            if fresh:
                seen_here.add(event_id)
                batch_ids.append(event_id)
                max_ms = max(max_ms, event_ms)
        if batch_ids:
            self.remember(offset, batch_ids, max_ms)
        return verdicts

    def remember(self, offset: int, ids: list[str], max_event_ms: int) -> None:
        self.batches[offset] = (ids, max_event_ms)
        for event_id in ids:
            self.first_offset.setdefault(event_id, offset)

    def expire(self, stream_time_ms: int) -> list[int]:
        """Forget batches whose newest event is older than the horizon; returns their offsets."""
        cutoff = stream_time_ms - self.horizon_ms
        gone = [offset for offset, (_, max_ms) in self.batches.items() if max_ms < cutoff]
        for offset in gone:
            ids, _ = self.batches.pop(offset)
            for event_id in ids:
                if self.first_offset.get(event_id) == offset:
                    del self.first_offset[event_id]
        return gone
