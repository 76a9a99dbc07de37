"""A cap on distinct keys per dimension and day, so hostile or runaway names cannot explode state.

Every distinct model, provider, service or user name opens its own windows, and each window costs
memory, changelog records and documents. Per raw partition and UTC day of the event, the first
`limit` distinct names of a dimension keep their own windows; later names fall into the `other`
bucket (the call itself keeps its real name). Admission is decided in offset order and snapshotted
per (dimension, day), so a partition recovered on another worker, or an input processed again,
buckets every name the same way. Pure: no Kafka, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from callstream.durations import DAY_MS

OTHER = "other"


@dataclass
class KeyCap:
    limits: dict[str, int]  # dimension -> distinct names kept per partition and day
    admitted: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # (dimension, day start)
    changed: set[tuple[str, int]] = field(default_factory=set)  # snapshots to write
    bucketed: int = 0  # names sent to `other` since start

    def name(self, dimension: str, event_ms: int, name: str) -> str:
        """The name to aggregate under: `name` itself while the day's cap allows, else OTHER."""
        limit = self.limits.get(dimension)
        if limit is None:
            return name
        slot = (dimension, event_ms - event_ms % DAY_MS)
        names = self.admitted.get(slot)
        if names is None:
            names = self.admitted[slot] = set()
        if name in names:
            return name
        if len(names) < limit:
            names.add(name)
            self.changed.add(slot)
            return name
        self.bucketed += 1
        return OTHER

    def snapshots(self) -> dict[tuple[str, int], bytes]:
        """Snapshots of the slots admitted into since the last call, for the changelog."""
        out = {slot: orjson.dumps(sorted(self.admitted[slot])) for slot in sorted(self.changed)}
        self.changed.clear()
        return out

    def restore(self, slot: tuple[str, int], record: bytes) -> None:
        names = orjson.loads(record)
        self.admitted[slot] = {str(n) for n in names}

    def expire(self, before_ms: int) -> list[tuple[str, int]]:
        """Forget days that ended before `before_ms`; returns the slots forgotten."""
        gone = [slot for slot in self.admitted if slot[1] + DAY_MS <= before_ms]
        for slot in gone:
            del self.admitted[slot]
            self.changed.discard(slot)
        return gone


def slot_key(partition: int, slot: tuple[str, int]) -> str:
    """The changelog key of a partition's snapshot of one (dimension, day)."""
    return f"{partition}|{slot[0]}|{slot[1]}"


def parse_slot_key(key: str) -> tuple[int, tuple[str, int]]:
    partition, dimension, day = key.split("|")
    return int(partition), (dimension, int(day))
