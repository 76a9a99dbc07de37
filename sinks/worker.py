"""The sink loop, the Kafka half: consume, batch, write on a thread pool, commit what was acknowledged.

One thread owns the consumer; it has the destination (sinks/destination.py; Elasticsearch by
default) decode messages into documents, closes batches and hands them to a pool of
`max_in_flight_requests` writers. When a batch finishes, its documents are
acknowledged in the offset ledger and the partitions whose messages are now fully written are
committed right there, synchronously: a committed offset always means "in Elasticsearch or in
the dead-letter topic and index". Stop requests flip a flag; the loop ends at a safe point,
flushes what it holds, waits for in-flight bulks (up to `shutdown_timeout_s`), commits, closes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, Producer, TopicPartition

from callstream import logs
from callstream.metrics import Metrics
from callstream.settings import KafkaSettings
from callstream.sinks.accounting import OffsetLedger
from callstream.sinks.batching import Batch, BatchBuilder
from callstream.sinks.destination import BatchResult, Destination, DestinationFactory, Kind
from callstream.sinks.documents import INVALID_INPUT, Decoded, Doc, Failure, Origin
from callstream.sinks.settings import SinkSettings

log = logs.get(__name__)


@dataclass(slots=True)
class SinkStats:
    indexed: int = 0
    superseded: int = 0
    deadlettered: int = 0
    deadletter_index_refused: int = 0
    retries: int = 0
    bulk_requests: int = 0
    batches: int = 0
    messages: int = 0
    commits: int = 0
    commit_failures: int = 0
    pauses: int = 0
    started_at: float = field(default_factory=time.monotonic)
    first_message_at: float | None = None
    last_ack_at: float | None = None

    @property
    def done(self) -> int:
        """Documents finished: stored, superseded by a newer version, or dead-lettered."""
        return self.indexed + self.superseded + self.deadlettered

    def add(self, result: BatchResult, now: float) -> None:
        self.indexed += result.indexed
        self.superseded += result.superseded
        self.deadlettered += result.deadlettered
        self.deadletter_index_refused += result.deadletter_index_refused
        self.bulk_requests += result.requests
        self.batches += 1
        self.last_ack_at = now

    def as_dict(self) -> dict[str, Any]:
        return {
            "indexed": self.indexed,
            "superseded": self.superseded,
            "deadlettered": self.deadlettered,
            "deadletter_index_refused": self.deadletter_index_refused,
            "retries": self.retries,
            "bulk_requests": self.bulk_requests,
            "messages": self.messages,
            "commits": self.commits,
            "commit_failures": self.commit_failures,
            "pauses": self.pauses,
        }


class SinkWorker:
    """Run with `run()`; stop from a signal handler or another thread with `request_stop()`."""

    def __init__(self, kafka: KafkaSettings, sink: SinkSettings, destination: DestinationFactory) -> None:
        self.kafka = kafka
        self.sink = sink
        self.stats = SinkStats()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._make_destination = destination
        self._kinds: dict[str, Kind] = {
            kafka.topic(sink.enriched_topic): "enriched",
            kafka.topic(sink.aggregates_topic): "aggregate",
            kafka.topic(sink.deadletter_topic): "deadletter",
            kafka.topic(sink.alert_events_topic): "alert_event",
        }
        self._ledger = OffsetLedger()
        self._builder = BatchBuilder(sink.batch_max_docs, sink.batch_max_bytes, sink.flush_interval_ms / 1000)
        self._in_flight: dict[Future[BatchResult], Batch] = {}
        self._submitted_at: dict[Future[BatchResult], float] = {}
        self.metrics = Metrics("sink")
        self.metrics.expose(lambda: self.stats.as_dict(), "Sink worker counts since start")
        self._write_seconds = self.metrics.histogram("batch_write_seconds", "Time to write one batch")
        self._lag = self.metrics.gauge(
            "input_lag_messages", "Input messages not read yet", ["topic", "partition"]
        )
        self._pending_bytes = 0
        self._avg_message_bytes = 0.0
        self._failing_seen = False
        self._paused = False
        self._consumer: Any = None
        self._destination: Destination | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def topics(self) -> list[str]:
        return list(self._kinds)

    def request_stop(self) -> None:
        """First call: finish gracefully. Second call: abort retries and leave now (nothing is lost:
        what was not acknowledged is not committed)."""
        if self._stop.is_set():
            self._abort.set()
        self._stop.set()

    # -- setup

    def _consumer_config(self) -> dict[str, Any]:
        static = {"group.instance.id": self.sink.group_instance_id} if self.sink.group_instance_id else {}
        return (
            self.kafka.confluent_config()
            | static
            | {
                "group.id": self.sink.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": self.sink.auto_offset_reset,
                "receive.message.max.bytes": self.kafka.receive_message_max_bytes,
                "queued.max.messages.kbytes": self.sink.consumer_queue_max_kbytes,
                "session.timeout.ms": self.sink.session_timeout_ms,
            }
        )

    def _producer_config(self) -> dict[str, Any]:
        return self.kafka.confluent_config() | {
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
        }

    # -- the loop

    def run(self, stop_when_idle_s: float | None = None, stop_after_docs: int | None = None) -> SinkStats:
        """Consume until stopped, idle for `stop_when_idle_s`, or `stop_after_docs` documents are done."""
        self._consumer = Consumer(self._consumer_config())
        producer = Producer(self._producer_config())
        destination = self._destination = self._make_destination(
            producer, self.kafka.topic(self.sink.sink_deadletter_topic), self._abort
        )
        self._pool = ThreadPoolExecutor(self.sink.max_in_flight_requests, thread_name_prefix="sink-write")
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info("sink started", topics=self.topics, group_id=self.sink.group_id, **destination.describe())
        try:
            self._loop(stop_when_idle_s, stop_after_docs)
            self._drain()
        finally:
            self._abort.set()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._consumer.close()
            producer.flush(10)
            destination.close()
            self.stats.retries = destination.retries
            log.info("sink stopped", **self.stats.as_dict())
        return self.stats

    def _loop(self, stop_when_idle_s: float | None, stop_after_docs: int | None) -> None:
        timeout_s = self.sink.consume_timeout_ms / 1000
        last_busy = time.monotonic()  # last moment with input or work in progress
        next_report = last_busy + self.sink.stats_interval_s
        last_report = (last_busy, 0)
        while not self._stop.is_set():
            self._reap()
            self._apply_backpressure()
            messages = self._consumer.consume(self._consume_count(), timeout_s)
            now = time.monotonic()
            for message in messages:
                self._accept(message, now)
            if messages:
                last_busy = now
            due = self._builder.due(now)
            if due is not None:
                self._submit(due)
            if now >= next_report:
                last_report = self._report(now, last_report)
                next_report = now + self.sink.stats_interval_s
            if not self._idle():
                last_busy = now
                continue
            if stop_after_docs is not None and self.stats.done >= stop_after_docs:
                log.info("sink reached its document target", docs=self.stats.done)
                return
            if stop_when_idle_s is not None and now - last_busy >= stop_when_idle_s:
                log.info("sink idle, stopping", idle_s=round(now - last_busy, 1))
                return

    def _consume_count(self) -> int:
        """As many messages as the pending budget has room for, judging by the average message so far:
        backpressure acts between consume calls, so one call must not overshoot it by much."""
        if self._avg_message_bytes <= 0:
            return min(self.sink.consume_max_messages, 10)  # sizes unknown yet: start small
        room = (self.sink.max_pending_bytes - self._pending_bytes) / self._avg_message_bytes
        return max(1, min(self.sink.consume_max_messages, int(room)))

    def _idle(self) -> bool:
        return not self._in_flight and not self._builder.open_items and self._ledger.idle()

    def _accept(self, message: Any, now: float) -> None:
        error = message.error()
        if error is not None:
            log.warning("consumer error", error=str(error))
            return
        topic = message.topic()
        ts_type, ts_ms = message.timestamp()
        origin = Origin(
            topic,
            message.partition(),
            message.offset(),
            None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts_ms,
        )
        decoded = self._decode(topic, message.value(), origin)
        self.stats.messages += 1
        if self.stats.first_message_at is None:
            self.stats.first_message_at = now
        self._ledger.read(origin.partition_key, origin.offset, len(decoded.docs) + len(decoded.failures))
        items: list[Doc | Failure] = [*decoded.docs, *decoded.failures]
        message_bytes = 0
        for item in items:
            message_bytes += item.nbytes
            for batch in self._builder.add(item, now):
                self._submit(batch)
        self._pending_bytes += message_bytes
        self._avg_message_bytes += (message_bytes - self._avg_message_bytes) * (
            0.1 if self._avg_message_bytes else 1
        )
        if not decoded.docs and not decoded.failures:
            self._commit()  # e.g. an empty array: nothing to write, the offset moves on

    def _decode(self, topic: str, value: bytes | None, origin: Origin) -> Decoded:
        """The destination decodes; if it fails on an input it did not foresee, the whole message
        is dead-lettered rather than stopping the sink."""
        assert self._destination is not None
        try:
            return self._destination.decode(self._kinds[topic], value, origin)
        except Exception as exc:
            log.exception("message could not be decoded; dead-lettered", topic=topic, offset=origin.offset)
            reason = f"could not be decoded: {type(exc).__name__}: {exc}"
            return Decoded([], [Failure(reason, INVALID_INPUT, value, origin)])

    def _submit(self, batch: Batch) -> None:
        assert self._pool is not None and self._destination is not None
        future = self._pool.submit(self._destination.write, batch)
        self._in_flight[future] = batch
        self._submitted_at[future] = time.monotonic()

    def _reap(self) -> None:
        """Account for finished batches, then commit what they completed (or what an earlier, failed
        commit left behind)."""
        finished = [f for f in self._in_flight if f.done()]
        now = time.monotonic()
        for future in finished:
            batch = self._in_flight.pop(future)
            self._write_seconds.observe(now - self._submitted_at.pop(future, now))
            self._pending_bytes -= batch.nbytes
            if future.cancelled():
                continue
            result = future.result()  # a bug in the writer stops the sink here, before any commit
            for (tp, offset), count in result.acked.items():
                self._ledger.ack(tp, offset, count)
            self.stats.add(result, now)
        self._commit()

    def _commit(self) -> None:
        positions = self._ledger.committable()
        if not positions:
            return
        offsets = [
            TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()
        ]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. during a rebalance; the same positions are retried next time
            self.stats.commit_failures += 1
            log.warning("offset commit failed, will retry", error=str(exc))
            return
        self._ledger.committed(positions)
        self.stats.commits += 1

    def _apply_backpressure(self) -> None:
        """Pause while too many bytes are pending, too many batches wait for a free request slot,
        or Elasticsearch is failing; resume with wide hysteresis, because a pause drops librdkafka's
        prefetched data (fetched again on resume). A paused consumer also stops fetching, which
        on noida-db (no fetch wait: caught-up consumers busy-poll) leaves its CPU to indexing."""
        assert self._destination is not None
        failing = self._destination.failing
        if failing != self._failing_seen:  # a busy Elasticsearch is routine; a failing one is news
            self._failing_seen = failing
            if failing:
                log.warning(
                    "destination failing: consumption paused until it recovers",
                    retries=self._destination.retries,
                )
            else:
                log.info("destination recovered", retries=self._destination.retries)
        limit = self.sink.max_pending_bytes
        slots = self.sink.max_in_flight_requests
        queued = len(self._in_flight) - slots  # batches waiting for a request slot
        if not self._paused and (self._pending_bytes >= limit or queued >= 2 * slots or failing):
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.pause(assignment)
                self._paused = True
                self.stats.pauses += 1
                log.debug(
                    "consumption paused",
                    pending_bytes=self._pending_bytes,
                    in_flight=len(self._in_flight),
                    destination_failing=self._destination.failing,
                )
        elif self._paused and self._pending_bytes <= limit // 2 and queued <= 0 and not failing:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            log.debug("consumption resumed", pending_bytes=self._pending_bytes)

    def _drain(self) -> None:
        """Flush the open batch and wait for in-flight ones, then commit what they completed."""
        batch = self._builder.flush()
        if batch is not None:
            self._submit(batch)
        deadline = time.monotonic() + self.sink.shutdown_timeout_s
        if self._in_flight:
            log.info("sink draining", in_flight=len(self._in_flight), timeout_s=self.sink.shutdown_timeout_s)
        while self._in_flight:
            if time.monotonic() >= deadline and not self._abort.is_set():
                log.warning("shutdown grace period over: unfinished batches stay uncommitted")
                self._abort.set()
            wait_futures(list(self._in_flight), timeout=0.2)
            self._reap()
        self._commit()

    def _report(self, now: float, last: tuple[float, int]) -> tuple[float, int]:
        """One progress line; the rate is over the interval since the previous line."""
        assert self._destination is not None
        self.stats.retries = self._destination.retries
        last_at, last_done = last
        log.info(
            "sink progress",
            docs_per_s=round((self.stats.done - last_done) / (now - last_at)) if now > last_at else 0,
            pending_bytes=self._pending_bytes,
            in_flight=len(self._in_flight),
            paused=self._paused,
            destination_failing=self._destination.failing,
            **self.stats.as_dict(),
        )
        self._observe_lag()
        if self._destination.failing:
            self.metrics.set_healthy(False, "destination failing: consumption paused")
        else:
            self.metrics.set_healthy(True, ttl_s=max(60.0, 3 * self.sink.stats_interval_s))
        return now, self.stats.done

    def _observe_lag(self) -> None:
        """Lag per assigned partition: its end minus this consumer's position."""
        self._lag.clear()
        try:
            assignment = self._consumer.assignment()
            positions = self._consumer.position(assignment) if assignment else []
        except KafkaException:
            return
        for tp in positions:
            if tp.offset < 0:
                continue  # nothing consumed from it yet
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                self._lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - tp.offset))

    # -- rebalances (called by the consumer, on this thread, inside consume())

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._paused = False  # a new assignment starts unpaused; backpressure re-applies on the next turn
        log.info("partitions assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._reap()  # commit what is already written while the partitions are still ours
        self._forget(partitions, "revoked")

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._forget(partitions, "lost")

    def _forget(self, partitions: list[TopicPartition], why: str) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        self._pending_bytes -= self._builder.drop(tps)
        self._ledger.drop(tps)
        self._paused = False
        log.info(f"partitions {why}", partitions=sorted(f"{t}[{p}]" for t, p in tps))
