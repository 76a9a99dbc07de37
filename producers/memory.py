"""An in-memory publisher: the same validation and safety rules as Kafka publishing, no broker.

For tests of instrumentation (where Kafka is not the point) and for dry runs. Events are prepared
synchronously on the caller's thread, so a test can assert right after the call returns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from callstream.producers.contract import RawCallEvent, describe_validation_error
from callstream.producers.deadletter import dead_letter
from callstream.producers.prepare import Policy, build_event
from callstream.producers.publisher import PublisherStats, complete_item, safe_original


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
        item = complete_item(item)
        try:
            wire = build_event(item, self.policy)
        except (ValidationError, ValueError, TypeError) as exc:
            reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            letter = dead_letter(f"invalid event: {reason}", "producer", safe_original(item, self.policy))
            with self._lock:
                self.dead_letters.append(letter)
            return
        with self._lock:
            self.wire.append(wire)

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
