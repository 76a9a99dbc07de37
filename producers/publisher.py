"""Publishing recorded calls to Kafka from a background thread, never from the caller's.

The caller hands over a plain dict (`put`): one deque append, no validation, no encoding, no I/O.
The background thread validates and encodes each event (producers.prepare), packs events into JSON
arrays (one Kafka message per batch, bounded by count and bytes) and produces them with an
idempotent confluent-kafka producer (acks=all, lz4). Delivery reports decide what happens next:

- acknowledged: counted as published;
- failed, or still unacknowledged at shutdown: written to the durable spool (producers.spool);
- while Kafka is unreachable, new batches go straight to the spool; a metadata probe every
  `spool_retry_interval_ms` notices when it is back, and the spool (also one left by an earlier
  process) is drained.

When the in-memory queue is full, the caller's thread writes the event to the spool itself (a
buffered file append): the only case where the caller does any I/O, and still never waits for
Kafka. Invalid events go to the dead-letter topic (counted and logged), never silently away.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from callstream import logs
from callstream.producers.contract import describe_validation_error, partition_for_event_id
from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.producers.prepare import Policy, build_event
from callstream.producers.redaction import scrub
from callstream.producers.settings import ProducerSettings
from callstream.producers.spool import KIND_BATCH, KIND_DEADLETTER, KIND_ITEMS, ClaimedSegment, Spool
from callstream.settings import KafkaSettings

log = logs.get(__name__)

DEFERRED_KEY = "_deferred"
"""Item key for a callable(item) that completes the item off the caller's thread (e.g. reads usage)."""


@dataclass(frozen=True)
class PublisherStats:
    """Counters since start. `published` includes events delivered from the spool (`unspooled`)."""

    recorded: int  # events handed over by callers
    published: int  # events acknowledged by Kafka
    messages: int  # Kafka messages acknowledged
    delivery_failures: int  # Kafka messages that failed (their events were spooled)
    spooled: int  # events written to the spool
    unspooled: int  # events delivered from the spool
    spool_bytes: int
    overflowed: int  # events the caller's thread spooled because the queue was full
    invalid: int  # events that failed validation (sent to the dead-letter topic)
    dropped: int  # events lost: spool full or disabled, or undeliverable
    queue_depth: int
    in_flight: int  # Kafka messages awaiting acknowledgement
    kafka_available: bool


class Publisher(Protocol):
    """What CallRecorder needs: the Kafka publisher, or an in-memory one for tests."""

    def put(self, item: dict[str, Any]) -> None: ...
    def add_secrets(self, secrets: Iterable[str]) -> None: ...
    def stats(self) -> PublisherStats: ...
    def flush(self, timeout_s: float = 10.0) -> bool: ...
    def close(self, timeout_s: float | None = None) -> None: ...


def complete_item(item: dict[str, Any]) -> dict[str, Any]:
    """Run the item's deferred extraction, if any; a failing extractor never loses the event."""
    deferred = item.pop(DEFERRED_KEY, None)
    if deferred is not None:
        try:
            deferred(item)
        except Exception as exc:  # the event still counts; only the extra detail is lost
            metadata = dict(item.get("metadata") or {})
            metadata["callstream.extraction_error"] = f"{type(exc).__name__}: {exc}"[:200]
            item["metadata"] = metadata
    return item


def safe_original(item: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    """An invalid item as it may leave the process: no bodies unless enabled, secrets scrubbed."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key in ("request_body", "response_body") and not policy.record_bodies:
            continue
        if key == DEFERRED_KEY:
            continue
        text = (
            orjson.dumps(value, default=str).decode()
            if not isinstance(value, str | int | float | bool)
            else value
        )
        out[key] = scrub(text, policy.secrets)[:4096] if isinstance(text, str) else text
    return out


@dataclass
class _Pending:
    kind: int
    payload: bytes
    count: int
    origin: _Drain | None


class _Drain:
    """A claimed spool segment being delivered: deleted once every record is acknowledged or re-spooled."""

    def __init__(self, segment: ClaimedSegment) -> None:
        self.segment = segment
        self.outstanding = 0
        self.submitted = False
        self.finished = False

    def done(self) -> None:
        self.outstanding -= 1
        self.finish_if_done()

    def finish_if_done(self) -> bool:
        if self.submitted and self.outstanding <= 0 and not self.finished:
            self.segment.delete()
            self.finished = True
        return self.finished


class KafkaPublisher:
    """Bounded queue -> background thread -> idempotent Kafka producer, with a durable spool."""

    def __init__(
        self,
        settings: ProducerSettings | None = None,
        kafka: KafkaSettings | None = None,
        policy: Policy | None = None,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.settings = settings or ProducerSettings()
        self.kafka = kafka or KafkaSettings()
        self.policy = policy or Policy.from_settings(self.settings)
        self.topic = self.settings.raw_topic(self.kafka)
        self.deadletter_topic = self.settings.deadletter_topic_name(self.kafka)
        self._queue: deque[dict[str, Any]] = deque()
        self._queue_max = self.settings.queue_max_events
        self._batch_events = self.settings.batch_max_events
        self._wake = threading.Event()
        self._spool: Spool | None = (
            Spool(
                self.settings.spool_dir,
                self.settings.spool_max_bytes,
                self.settings.spool_segment_max_bytes,
                self.settings.spool_fsync,
            )
            if self.settings.spool_max_bytes > 0
            else None
        )
        self._conf = self.settings.confluent_config(self.kafka) | {
            "error_cb": self._on_error,
            "logger": logging.getLogger("callstream.librdkafka"),
        }
        self._factory = producer_factory or _confluent_producer
        self._producer: Any = self._factory(self._conf)
        self._inflight: dict[int, _Pending] = {}
        self._seq = itertools.count()
        self._available = True
        self._partitions: int | None = None
        self._fatal = False
        self._busy = False
        self._drain: _Drain | None = None
        self._next_spool_check = 0.0
        self._stopping = False
        self._closed = False
        self._lock = threading.Lock()  # counters touched by both caller threads (overflow) and the thread
        self._counts = dict.fromkeys(
            (
                "taken",
                "published",
                "messages",
                "delivery_failures",
                "spooled",
                "unspooled",
                "overflowed",
                "invalid",
                "dropped",
            ),
            0,
        )
        self._log_budget: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="callstream-publisher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ---- caller side: keep it tiny ----

    def put(self, item: dict[str, Any]) -> None:
        """Hand one event over. Never blocks on Kafka, never raises."""
        queue = self._queue
        if len(queue) >= self._queue_max or self._closed:
            self._overflow(item)
            return
        queue.append(item)
        if len(queue) == self._batch_events:
            self._wake.set()

    def _overflow(self, item: dict[str, Any]) -> None:
        try:
            payload = orjson.dumps([complete_item(item)], default=str)
            stored = self._spool is not None and self._spool.append(KIND_ITEMS, payload, 1)
        except Exception:
            stored = False
        with self._lock:
            self._counts["overflowed"] += 1
            self._counts["spooled" if stored else "dropped"] += 1
        if not stored:
            self._warn("event dropped: queue full and spool full or disabled", queue_max=self._queue_max)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Strings to scrub from everything recorded (e.g. the API key of an instrumented client)."""
        self.policy = self.policy.with_secrets(secrets)

    # ---- background thread ----

    def _run(self) -> None:
        linger_s = self.settings.linger_ms / 1000
        try:
            while not self._stopping:
                self._wake.wait(max(0.001, linger_s))
                self._wake.clear()
                try:
                    self._step()
                except Exception:  # a bug or a broken producer must not stop publishing for good
                    log.exception("publisher step failed; continuing")
                    time.sleep(min(1.0, max(0.01, linger_s)))
        finally:
            self._shutdown()

    def _step(self) -> None:
        self._busy = True
        try:
            self._publish_items(self._take(self._batch_events * 20))
        finally:
            self._busy = False
        self._producer.poll(0)
        if self._fatal:
            self._replace_producer()
        self._tend_spool()

    def _take(self, limit: int) -> list[dict[str, Any]]:
        queue = self._queue
        items = []
        for _ in range(min(limit, len(queue))):
            items.append(queue.popleft())
        with self._lock:
            self._counts["taken"] += len(items)
        return items

    def _publish_items(self, items: list[dict[str, Any]], origin: _Drain | None = None) -> None:
        """Validate, encode and pack into JSON arrays of at most batch_max_events / batch_max_bytes,
        one array per partition of the events' ids (producers.contract.partition_for_event_id), so
        the stream finds every copy of an event on one partition without re-routing it."""
        batches: dict[int | None, tuple[list[bytes], int]] = {}
        max_bytes = self.settings.batch_max_bytes
        policy = self.policy
        partitions = self._partition_count()
        for item in items:
            try:
                event = build_event(complete_item(item), policy)
                encoded = orjson.dumps(event)
            except (ValidationError, ValueError, TypeError) as exc:
                self._invalid(item, exc, origin)
                continue
            partition = partition_for_event_id(event["event_id"], partitions) if partitions else None
            parts, size = batches.get(partition, ([], 2))
            if parts and (len(parts) >= self._batch_events or size + len(encoded) + 1 > max_bytes):
                self._send(KIND_BATCH, b"[" + b",".join(parts) + b"]", len(parts), origin, partition)
                parts, size = [], 2
            parts.append(encoded)
            batches[partition] = (parts, size + len(encoded) + 1)
        for partition, (parts, _) in batches.items():
            if parts:
                self._send(KIND_BATCH, b"[" + b",".join(parts) + b"]", len(parts), origin, partition)

    def _partition_count(self) -> int | None:
        """Partitions of the raw topic, from metadata fetched once Kafka answers (None until then)."""
        if self._partitions is None and self._available:
            with contextlib.suppress(Exception):
                topic = self._producer.list_topics(self.topic, timeout=1.0).topics.get(self.topic)
                if topic is not None and topic.error is None and topic.partitions:
                    self._partitions = len(topic.partitions)
        return self._partitions

    def _invalid(self, item: dict[str, Any], exc: Exception, origin: _Drain | None) -> None:
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        with self._lock:
            self._counts["invalid"] += 1
        self._warn("invalid call event sent to the dead-letter topic", reason=reason)
        letter = dead_letter(f"invalid event: {reason}", "producer", safe_original(item, self.policy))
        self._send(KIND_DEADLETTER, encode_dead_letter(letter), 1, origin)

    def _send(
        self, kind: int, payload: bytes, count: int, origin: _Drain | None, partition: int | None = None
    ) -> None:
        if origin is not None:
            origin.outstanding += 1
        if not self._available:
            self._respool(_Pending(kind, payload, count, origin))
            return
        seq = next(self._seq)
        pending = _Pending(kind, payload, count, origin)
        self._inflight[seq] = pending
        topic = self.deadletter_topic if kind == KIND_DEADLETTER else self.topic
        callback = self._delivery_callback(seq)
        for attempt in range(3):
            try:
                if partition is None:
                    self._producer.produce(topic, payload, on_delivery=callback)
                else:
                    self._producer.produce(topic, payload, partition=partition, on_delivery=callback)
                return
            except BufferError:  # librdkafka's own queue is full: let it drain a little
                self._producer.poll(0.05 * (attempt + 1))
            except Exception as exc:
                self._warn("produce failed", error=str(exc))
                break
        self._inflight.pop(seq, None)
        self._failed(pending, "produce failed")

    def _delivery_callback(self, seq: int) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, _msg: Any) -> None:
            pending = self._inflight.pop(seq, None)
            if pending is None:
                return
            if err is None:
                self._available = True
                with self._lock:
                    self._counts["messages"] += 1
                    if pending.kind != KIND_DEADLETTER:
                        self._counts["published"] += pending.count
                    if pending.origin is not None and pending.kind != KIND_DEADLETTER:
                        self._counts["unspooled"] += pending.count
                if pending.origin is not None:
                    pending.origin.done()
                return
            self._on_delivery_error(pending, err)

        return on_delivery

    def _on_delivery_error(self, pending: _Pending, err: Any) -> None:
        name = err.name() if hasattr(err, "name") else str(err)
        if (
            name in ("MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "INVALID_MSG_SIZE")
            and pending.kind == KIND_BATCH
        ):
            self._split(pending)
            return
        if not name.startswith("_PURGE"):
            self._available = False
        self._failed(pending, name)

    def _split(self, pending: _Pending) -> None:
        events = orjson.loads(pending.payload)
        if len(events) <= 1:
            with self._lock:
                self._counts["dropped"] += len(events)
            log.error("event too large for Kafka, dropped", bytes=len(pending.payload))
            if pending.origin is not None:
                pending.origin.done()
            return
        half = len(events) // 2
        for chunk in (events[:half], events[half:]):
            self._send(KIND_BATCH, orjson.dumps(chunk), len(chunk), pending.origin)
        if pending.origin is not None:
            pending.origin.done()

    def _failed(self, pending: _Pending, reason: str) -> None:
        with self._lock:
            self._counts["delivery_failures"] += 1
        self._warn("Kafka delivery failed; spooling", reason=reason)
        self._respool(pending)

    def _respool(self, pending: _Pending) -> None:
        stored = self._spool is not None and self._spool.append(pending.kind, pending.payload, pending.count)
        with self._lock:
            if pending.kind != KIND_DEADLETTER:
                self._counts["spooled" if stored else "dropped"] += pending.count
        if not stored:
            log.error("events dropped: spool full or disabled", events=pending.count, kind=chr(pending.kind))
        if pending.origin is not None:
            pending.origin.done()

    def _on_error(self, err: Any) -> None:
        """librdkafka's error callback (runs inside poll/flush on this thread)."""
        name = err.name() if hasattr(err, "name") else str(err)
        if name in ("_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_AUTHENTICATION"):
            if self._available:
                log.warning("Kafka unavailable; spooling until it is back", error=str(err))
            self._available = False
        if hasattr(err, "fatal") and err.fatal():
            log.error("fatal Kafka producer error; replacing the producer", error=str(err))
            self._fatal = True

    def _replace_producer(self) -> None:
        self._fatal = False
        self._abandon_producer(0.0)
        self._producer = self._factory(self._conf)

    def _abandon_producer(self, flush_s: float) -> None:
        """Give the producer flush_s to deliver, then spool whatever it still holds."""
        if flush_s > 0 and self._inflight:
            self._producer.flush(flush_s)
        if self._inflight:
            with contextlib.suppress(Exception):
                self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            with contextlib.suppress(Exception):
                self._producer.flush(0)
        for seq in list(self._inflight):
            pending = self._inflight.pop(seq)
            self._failed(pending, "unacknowledged at shutdown")

    def _tend_spool(self) -> None:
        """Probe Kafka while it is unavailable; when it is available, drain one spool segment at a time."""
        spool = self._spool
        if spool is None:
            return
        if self._drain is not None:
            if not self._drain.finished:
                return
            self._drain = None
            self._next_spool_check = 0.0  # more segments may be waiting: look again at once
        now = time.monotonic()
        if now < self._next_spool_check:
            return
        self._next_spool_check = now + self.settings.spool_retry_interval_ms / 1000
        if not spool.has_segments():
            return
        if not self._available:
            if not self._probe():
                return
            log.info("Kafka is reachable again; draining the spool")
            self._available = True
        spool.seal()
        segment = spool.claim()
        if segment is None:
            return
        self._drain = drain = _Drain(segment)
        overflow: list[dict[str, Any]] = []
        for record in segment.records():
            if record.kind == KIND_ITEMS:  # queue overflow, validated only now: batch them together
                overflow.extend(orjson.loads(record.payload))
            else:
                self._send(record.kind, record.payload, record.count, drain)
        self._publish_items(overflow, drain)
        drain.submitted = True
        drain.finish_if_done()

    def _probe(self) -> bool:
        try:
            self._producer.list_topics(self.topic, timeout=1.0)
            return True
        except Exception:
            return False

    def _shutdown(self) -> None:
        try:
            while self._queue:
                self._publish_items(self._take(self._batch_events * 20))
            budget = self.settings.close_timeout_ms / 1000 if self._available else 0.0
            self._abandon_producer(budget)
            if self._drain is not None and not self._drain.finish_if_done():
                self._drain.segment.release()
        except Exception:
            log.exception("publisher shutdown failed")
        finally:
            if self._spool is not None:
                self._spool.close()
            self._producer = None  # destroys the librdkafka handle: no reconnect attempts after close

    def _warn(self, message: str, **fields: Any) -> None:
        """Log the first 10 of each kind of warning, then every 1000th: a dead broker must not flood logs."""
        seen = self._log_budget.get(message, 0) + 1
        self._log_budget[message] = seen
        if seen <= 10 or seen % 1000 == 0:
            log.warning(message, occurrences=seen, **fields)

    # ---- control ----

    def stats(self) -> PublisherStats:
        with self._lock:
            counts = dict(self._counts)
        depth = len(self._queue)
        return PublisherStats(
            recorded=counts["taken"] + depth + counts["overflowed"],
            published=counts["published"],
            messages=counts["messages"],
            delivery_failures=counts["delivery_failures"],
            spooled=counts["spooled"],
            unspooled=counts["unspooled"],
            spool_bytes=self._spool.size_bytes if self._spool is not None else 0,
            overflowed=counts["overflowed"],
            invalid=counts["invalid"],
            dropped=counts["dropped"],
            queue_depth=depth,
            in_flight=len(self._inflight),
            kafka_available=self._available,
        )

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far is acknowledged or spooled (for tests and batch jobs)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._wake.set()
            if not self._queue and not self._busy and not self._inflight and self._drain is None:
                return True
            time.sleep(0.005)
        return False

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the thread: publish what is queued, wait for acknowledgements, spool the rest."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if timeout_s is not None:
            self.settings = self.settings.model_copy(update={"close_timeout_ms": int(timeout_s * 1000)})
        self._stopping = True
        self._wake.set()
        self._thread.join()


def _confluent_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(conf)
