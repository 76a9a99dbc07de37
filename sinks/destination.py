"""The seam between the sink's Kafka half and where documents go.

The Kafka half (sinks/worker.py, with sinks/accounting.py and sinks/batching.py) consumes, batches,
applies backpressure and commits only what a destination acknowledged. A destination decodes
messages into documents for itself and writes batches until every document is stored or
dead-lettered. Elasticsearch is one (sinks/elasticsearch.py); a second store is a new module that
satisfies `Destination`, nothing in the Kafka half changes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from callstream.sinks.batching import Batch
from callstream.sinks.documents import Decoded, Origin

# What a topic carries, as the destination needs to know it.
Kind = Literal["enriched", "aggregate", "deadletter", "alert_event"]


@dataclass(slots=True)
class BatchResult:
    """What a batch achieved. `acked` counts finished documents per (partition, offset)."""

    batch: Batch
    complete: bool = True
    acked: Counter[tuple[tuple[str, int], int]] = field(default_factory=Counter)
    indexed: int = 0
    superseded: int = 0
    deadlettered: int = 0
    deadletter_index_refused: int = 0
    requests: int = 0


class Destination(Protocol):
    """Where the sink writes. `write` runs on pool threads, several batches at once."""

    def decode(self, kind: Kind, value: bytes | None, origin: Origin) -> Decoded:
        """A message's documents and what cannot become one (never raises on any input)."""
        ...

    def write(self, batch: Batch) -> BatchResult:
        """Store or dead-letter every item; returns early (incomplete) only when aborted."""
        ...

    @property
    def failing(self) -> bool:
        """Writes are failing right now (the Kafka half pauses consumption)."""
        ...

    @property
    def retries(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        """Where it writes, for logs (no credentials)."""
        ...

    def close(self) -> None: ...


# Builds a destination once the worker has its dead-letter producer, the sink dead-letter topic
# and the abort flag (set on a second stop request or when the shutdown grace period is over).
DestinationFactory = Callable[[Any, str, threading.Event], Destination]
