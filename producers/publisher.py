"""Publishing recorded calls to Kafka from a background thread, never from the caller's.

The caller hands over a plain dict (`put`): one deque append, no validation, no encoding, no I/O.
The background thread validates and encodes each event (producers.prepare), packs events into JSON
arrays per raw-topic partition of their ids (producers.packing: one Kafka message per batch, bounded
by count and bytes) and produces them with an idempotent confluent-kafka producer (acks=all, lz4).
Delivery reports, matched by librdkafka error code, decide what happens next:

- acknowledged: counted as published;
- too large for the broker: split in two and sent again; a single event too large is dead-lettered;
- failed, or still unacknowledged at shutdown: written to the durable spool (producers.spool);
- while Kafka is unreachable, new batches go straight to the spool; a metadata probe every
  `spool_retry_interval_ms` notices when it is back, and the spool (also one left by an earlier
  process) is drained.

When the in-memory queue is full, the caller's thread prepares the event (validation and redaction,
so nothing unredacted reaches the disk) and writes it to the spool itself (a buffered file append):
the only case where the caller does any I/O, and still never waits for Kafka. Invalid events go to
the dead-letter topic (counted and logged, redacted like everything else), never silently away.
What this thread holds in memory is bounded: the queue (`queue_max_events`), librdkafka's send
queue (`kafka_queue_max_kbytes`) and one spool segment being drained.
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
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from callstream import logs
from callstream.producers.contract import describe_validation_error
from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.producers.packing import pack_by_partition
from callstream.producers.prepare import RAW_EVENT_FIELDS, Policy, build_event, safe_original
from callstream.producers.redaction import ScrubbingFilter, scrub
from callstream.producers.settings import ProducerSettings
from callstream.producers.spool import KIND_BATCH, KIND_DEADLETTER, KIND_ITEMS, ClaimedSegment, Spool
from callstream.settings import KafkaSettings

log = logs.get(__name__)

DEFERRED_KEY = "_deferred"
SECRETS_KEY = "_secrets"
"""An item's own secrets (the API key its request carried): scrubbed from that item whatever else
was registered since, and never kept beyond it."""
"""Item key for a callable(item) that completes the item off the caller's thread (e.g. reads usage)."""
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_output_tokens",
)

# librdkafka error codes, matched by value (never by name strings)
SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE})
UNREACHABLE_ERRORS = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._AUTHENTICATION}
)
PURGE_ERRORS = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
PARTITION_RETRY_S = 30.0
"""How often the raw topic's partition count is asked again while it is unknown."""


def error_code(err: Any) -> int | None:
    """The librdkafka code of a KafkaError (or of a KafkaException's error), None for anything else."""
    if isinstance(err, KafkaException) and err.args:
        err = err.args[0]
    code = getattr(err, "code", None)
    try:
        return int(code()) if callable(code) else None
    except (TypeError, ValueError):
        return None


def describe_error(err: Any) -> str:
    """A Kafka error (or any exception) as a short, scrubbed line for logs and reasons."""
    try:
        text = err.str() if isinstance(err, KafkaError) else f"{type(err).__name__}: {err}"
    except Exception:
        text = type(err).__name__
    return scrub(text)[:500]


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
    """Run the item's deferred extraction, if any (a failing extractor never loses the event), then
    mark a successful call that reported no token count at all as `usage="missing"`: its tokens
    are unknown, not zero, and the stream leaves it unpriced instead of costing it $0."""
    deferred = item.pop(DEFERRED_KEY, None)
    if deferred is not None:
        try:
            deferred(item)
        except Exception as exc:  # the event still counts; only the extra detail is lost
            metadata = item.get("metadata")
            metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
            metadata["callstream.extraction_error"] = describe_error(exc)[:200]
            item["metadata"] = metadata
    if (
        "usage" not in item
        and item.get("error_type") is None
        and not any(item.get(key) is not None for key in TOKEN_FIELDS)
    ):
        item["usage"] = "missing"
    return item


def prepare_item(item: dict[str, Any], policy: Policy) -> tuple[str, bytes] | dict[str, Any]:
    """A caller's item -> (event_id, encoded event), or the dead letter that replaces it. Never raises.

    The secrets the item carries (`SECRETS_KEY`) are scrubbed from it as well as the policy's."""
    own = item.pop(SECRETS_KEY, None)
    if own:
        with contextlib.suppress(Exception):  # not text: what is registered still applies
            policy = policy.with_secrets(own)
    try:
        event = build_event(complete_item(item), policy)
        return event["event_id"], orjson.dumps(event)
    except Exception as exc:  # any input, however odd, ends up as an event or a dead letter
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else describe_error(exc)
        try:
            original: Any = safe_original(item, policy)
        except Exception:
            original = "[original could not be redacted; left out]"
        return dead_letter(
            f"invalid event: {reason}", "producer", original, secrets=frozenset(policy.secrets)
        )


@dataclass
class _Pending:
    kind: int
    payload: bytes
    count: int
    origin: _Drain | None
    partition: int | None = None


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
        self.topic = self.kafka.topic(self.settings.raw_topic)
        self.deadletter_topic = self.kafka.topic(self.settings.deadletter_topic)
        self._queue: deque[dict[str, Any]] = deque()
        self._queue_max = self.settings.queue_max_events
        self._batch_events = self.settings.batch_max_events
        self._wake = threading.Event()
        self._spool: Spool | None = None
        if self.settings.spool_max_bytes > 0:
            self._spool = Spool(
                self.settings.spool_dir,
                self.settings.spool_max_bytes,
                self.settings.spool_segment_max_bytes,
                self.settings.spool_fsync,
            )
            log.info(
                "publisher spool", path=str(self._spool.directory), max_bytes=self.settings.spool_max_bytes
            )
        else:
            log.warning("publisher spool disabled: events Kafka cannot take are dropped (and counted)")
        self._conf = self.settings.confluent_config(self.kafka) | {
            "error_cb": self._on_error,
            "logger": librdkafka_logger(),
        }
        self._factory = producer_factory or _confluent_producer
        self._producer: Any = self._factory(self._conf)
        self._inflight: dict[int, _Pending] = {}
        self._seq = itertools.count()
        self._available = True
        self._partitions: int | None = None
        self._next_partition_check = 0.0
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
        """Queue full: prepare the event here (so that only redacted data reaches the disk) and spool
        it; an invalid one is spooled as its dead letter (counted `invalid`, like on the thread)."""
        kind = KIND_BATCH
        try:
            prepared = prepare_item(item, self.policy)
            if isinstance(prepared, dict):
                kind, payload = KIND_DEADLETTER, encode_dead_letter(prepared)
            else:
                payload = b"[" + prepared[1] + b"]"
            stored = self._spool is not None and self._spool.append(kind, payload, 1)
        except Exception:
            stored = False
        with self._lock:
            self._counts["overflowed"] += 1
            if kind == KIND_DEADLETTER:
                self._counts["invalid"] += 1
            if kind == KIND_BATCH or not stored:
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
                except Exception as exc:  # a bug or a broken producer must not stop publishing for good
                    log.error("publisher step failed; continuing", error=describe_error(exc))
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
        one array per partition of the events' ids (producers.packing), so the stream finds every
        copy of an event on one partition without re-routing it. Invalid items become dead letters."""
        policy = self.policy
        events: list[tuple[str, bytes]] = []
        for item in items:
            prepared = prepare_item(item, policy)
            if isinstance(prepared, dict):
                self._invalid(prepared, origin)
            else:
                events.append(prepared)
        self._send_events(events, origin)

    def _send_events(self, events: list[tuple[str, bytes]], origin: _Drain | None) -> None:
        partitions = self._partition_count()
        for message in pack_by_partition(
            events, partitions, self.settings.batch_max_bytes, self._batch_events
        ):
            self._send(KIND_BATCH, message.payload, message.count, origin, message.partition)

    def _partition_count(self) -> int | None:
        """Partitions of the raw topic, fetched once Kafka answers (asked again every
        PARTITION_RETRY_S while unknown, and whenever Kafka is found reachable again: until then the
        client picks partitions, and the stream re-routes what lands elsewhere)."""
        if self._partitions is None and self._available and time.monotonic() >= self._next_partition_check:
            self._next_partition_check = time.monotonic() + PARTITION_RETRY_S
            try:
                self._learn_partitions(self._producer.list_topics(self.topic, timeout=1.0))
            except Exception as exc:
                self._warn(
                    "raw topic metadata unavailable; not choosing partitions yet", error=describe_error(exc)
                )
        return self._partitions

    def _learn_partitions(self, metadata: Any) -> None:
        topic = metadata.topics.get(self.topic)
        if self._partitions is None and topic is not None and topic.error is None and topic.partitions:
            self._partitions = len(topic.partitions)
            log.info("raw topic partitions", topic=self.topic, partitions=self._partitions)

    def _invalid(self, letter: dict[str, Any], origin: _Drain | None) -> None:
        with self._lock:
            self._counts["invalid"] += 1
        self._warn("invalid call event sent to the dead-letter topic", reason=letter["reason"])
        self._send(KIND_DEADLETTER, encode_dead_letter(letter), 1, origin)

    def _send(
        self, kind: int, payload: bytes, count: int, origin: _Drain | None, partition: int | None = None
    ) -> None:
        if origin is not None:
            origin.outstanding += 1
        pending = _Pending(kind, payload, count, origin, partition)
        if not self._available:
            self._respool(pending)
            return
        seq = next(self._seq)
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
            except KafkaException as exc:
                self._inflight.pop(seq, None)
                if error_code(exc) in SIZE_ERRORS:  # over message.max.bytes: refused before sending
                    self._too_large(pending)
                else:
                    self._warn("produce failed", error=describe_error(exc))
                    self._available = False
                    self._failed(pending, describe_error(exc))
                return
            except Exception as exc:
                self._warn("produce failed", error=describe_error(exc))
                break
        self._inflight.pop(seq, None)
        self._available = False  # the spool's probe paces the next attempts: no hot retry loop
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
        code = error_code(err)
        if code in SIZE_ERRORS:
            self._too_large(pending)
            return
        if code not in PURGE_ERRORS:
            self._available = False
        self._failed(pending, describe_error(err))

    def _too_large(self, pending: _Pending) -> None:
        """A message the broker (or librdkafka) refused for its size: a batch is split in two and sent
        again; a single event too large for any message goes to the dead-letter topic."""
        try:
            events = orjson.loads(pending.payload) if pending.kind == KIND_BATCH else None
        except orjson.JSONDecodeError:
            events = None
        if isinstance(events, list) and len(events) > 1:
            half = len(events) // 2
            for chunk in (events[:half], events[half:]):
                self._send(KIND_BATCH, orjson.dumps(chunk), len(chunk), pending.origin, pending.partition)
        else:
            with self._lock:
                self._counts["invalid" if pending.kind == KIND_BATCH else "dropped"] += pending.count
            self._warn(
                "message too large for Kafka, alone", bytes=len(pending.payload), kind=chr(pending.kind)
            )
            if pending.kind == KIND_BATCH:
                reason = f"event too large for Kafka: {len(pending.payload)} bytes as a message"
                letter = dead_letter(
                    reason,
                    "producer",
                    pending.payload,
                    secrets=frozenset(self.policy.secrets),
                    fields=RAW_EVENT_FIELDS,
                )
                self._send(KIND_DEADLETTER, encode_dead_letter(letter), 1, pending.origin)
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
        if error_code(err) in UNREACHABLE_ERRORS:
            if self._available:
                log.warning("Kafka unavailable; spooling until it is back", error=describe_error(err))
            self._available = False
        fatal = getattr(err, "fatal", None)
        if callable(fatal) and fatal():
            log.error("fatal Kafka producer error; replacing the producer", error=describe_error(err))
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
            if self._available:  # more segments may be waiting: look again at once (not after a failure)
                self._next_spool_check = 0.0
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
        events: list[tuple[str, bytes]] = []
        for record in segment.records():
            if record.kind == KIND_ITEMS:  # written by an older version: not validated yet
                overflow.extend(orjson.loads(record.payload))
            elif record.kind == KIND_BATCH:  # packed again, on the partitions of their ids
                events.extend(_events_of(record.payload))
            else:
                self._send(record.kind, record.payload, record.count, drain)
        self._send_events(events, drain)
        self._publish_items(overflow, drain)
        drain.submitted = True
        drain.finish_if_done()

    def _probe(self) -> bool:
        try:
            metadata = self._producer.list_topics(self.topic, timeout=1.0)
        except Exception:
            return False
        with contextlib.suppress(Exception):
            self._learn_partitions(metadata)
        return True

    def _shutdown(self) -> None:
        try:
            while self._queue:
                self._publish_items(self._take(self._batch_events * 20))
            budget = self.settings.close_timeout_ms / 1000 if self._available else 0.0
            self._abandon_producer(budget)
            if self._drain is not None and not self._drain.finish_if_done():
                self._drain.segment.release()
        except Exception as exc:
            log.error("publisher shutdown failed", error=describe_error(exc))
        finally:
            if self._spool is not None:
                self._spool.close()
            self._producer = None  # destroys the librdkafka handle: no reconnect attempts after close

    def _warn(self, message: str, **fields: Any) -> None:
        """Log the first 10 of each kind of warning, then every 1000th: a dead broker must not flood logs."""
        seen = self._log_budget.get(message, 0) + 1
        self._log_budget[message] = seen
        if seen <= 10 or seen % 1000 == 0:
            clean = {key: scrub(value) if isinstance(value, str) else value for key, value in fields.items()}
            log.warning(message, occurrences=seen, **clean)

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


def _events_of(payload: bytes) -> list[tuple[str, bytes]]:
    """(event_id, encoded event) of a spooled batch (validated wire dicts, re-encoded one by one)."""
    return [(event["event_id"], orjson.dumps(event)) for event in orjson.loads(payload)]


def librdkafka_logger() -> logging.Logger:
    """The stdlib logger librdkafka writes to, with messages scrubbed (a broker URL may carry a password)."""
    logger = logging.getLogger("callstream.librdkafka")
    if not any(isinstance(f, ScrubbingFilter) for f in logger.filters):
        logger.addFilter(ScrubbingFilter())
    return logger


def _confluent_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(conf)
