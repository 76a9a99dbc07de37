"""An in-memory publisher: the same preparation (validation, redaction, dead letters) as Kafka
publishing (`publisher.prepare_item`), no broker.

For tests of instrumentation (where Kafka is not the point) and for dry runs. Events are prepared
synchronously on the caller's thread, so a test can assert right after the call returns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import orjson

from callstream.producers.contract import RawCallEvent
from callstream.producers.prepare import Policy
from callstream.producers.publisher import PublisherStats, prepare_item


class MemoryPublisher:
    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.wire: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def events(self) -> list[RawCallEvent]:
        with self._lock:
            return [RawCallEvent.model_validate(w) for w in self.wire]

    def put(self, item: dict[str, Any]) -> None:
        prepared = prepare_item(item, self.policy)
        with self._lock:
            if isinstance(prepared, dict):
                self.dead_letters.append(prepared)
            else:
                self.wire.append(orjson.loads(prepared[1]))

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.policy = self.policy.with_secrets(secrets)

    def stats(self) -> PublisherStats:
        with self._lock:
            published, invalid = len(self.wire), len(self.dead_letters)
        return PublisherStats(
            recorded=published + invalid,
            published=published,
            messages=published,
            delivery_failures=0,
            spooled=0,
            unspooled=0,
            spool_bytes=0,
            overflowed=0,
            invalid=invalid,
            dropped=0,
            queue_depth=0,
            in_flight=0,
            kafka_available=True,
        )

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float | None = None) -> None:
        return None
