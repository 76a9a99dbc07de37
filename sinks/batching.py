"""Group documents into bulk requests bounded by count, bytes and age. Pure: the clock is passed in."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from callstream.sinks.documents import Doc, Failure


@dataclass(slots=True)
class Batch:
    """One bulk request's worth of work: documents to index, and inputs already known to be bad."""

    opened_at: float
    docs: list[Doc] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.docs) + len(self.failures)

    def without(self, partitions: Collection[tuple[str, int]]) -> Batch:
        """The same batch minus what came from the given partitions (revoked ones)."""
        docs = [d for d in self.docs if d.origin.partition_key not in partitions]
        failures = [f for f in self.failures if f.origin.partition_key not in partitions]
        nbytes = sum(d.nbytes for d in docs) + sum(f.nbytes for f in failures)
        return Batch(self.opened_at, docs, failures, nbytes)


class BatchBuilder:
    """Closes a batch at `max_docs` items, before `max_bytes` would be exceeded, or `linger_s` after opening.

    A single document larger than `max_bytes` still goes out, alone in its batch.
    """

    def __init__(self, max_docs: int, max_bytes: int, linger_s: float) -> None:
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self._open: Batch | None = None

    @property
    def open_bytes(self) -> int:
        return self._open.nbytes if self._open else 0

    @property
    def open_items(self) -> int:
        return len(self._open) if self._open else 0

    def add(self, item: Doc | Failure, now: float) -> list[Batch]:
        """Add one item; returns the batches this closed (zero, one, or two for an oversized item)."""
        closed: list[Batch] = []
        size = item.nbytes
        batch = self._open
        if batch is not None and batch.nbytes + size > self.max_bytes and len(batch):
            closed.append(batch)
            batch = None
        if batch is None:
            batch = Batch(opened_at=now)
        if isinstance(item, Doc):
            batch.docs.append(item)
        else:
            batch.failures.append(item)
        batch.nbytes += size
        if len(batch) >= self.max_docs or batch.nbytes >= self.max_bytes:
            closed.append(batch)
            batch = None
        self._open = batch
        return closed

    def due(self, now: float) -> Batch | None:
        """The open batch if it has lingered long enough, else None."""
        if self._open is not None and now - self._open.opened_at >= self.linger_s:
            return self.flush()
        return None

    def flush(self) -> Batch | None:
        batch, self._open = self._open, None
        return batch if batch is not None and len(batch) else None

    def drop(self, partitions: Collection[tuple[str, int]]) -> int:
        """Forget what the open batch holds from these partitions; returns the bytes dropped."""
        if self._open is None:
            return 0
        kept = self._open.without(partitions)
        dropped = self._open.nbytes - kept.nbytes
        self._open = kept if len(kept) else None
        return dropped
