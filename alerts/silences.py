"""Silences: set from the CLI for a rule (and optionally one key) for a duration.

A silence is a record on the compacted `alerts.silences` topic, keyed by its id; lifting it early
writes the same id with an end in the past. Every alert worker reads the whole topic and follows
it (a plain consumer on a thread, outside the consumer group), so every worker knows every
silence whatever partitions it owns, and a restarted worker knows them again before it evaluates.
The follower asks for the topic's end offsets every `check_interval_s` and reads only when they
moved: a consumer left parked at the end of a topic busy-polls brokers that ignore the fetch wait
(noida-db), for a topic that changes a few times a day. Matching is pure (`SilenceBook.matches`).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import TopicPartition
from pydantic import BaseModel, ConfigDict, Field

from callstream import logs, topics
from callstream.settings import KafkaSettings
from callstream.topic_reader import reader_consumer

log = logs.get(__name__)

ANY = "*"


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=lambda: f"s-{uuid.uuid4().hex[:12]}")
    rule: str = Field(description="A rule name, or '*' for every rule")
    key: str | None = Field(default=None, description="Only this model, provider, ...; None: every key")
    dimension: str | None = Field(default=None, description="Only keys of this dimension; None: any")
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def covers(self, rule: str, dimension: str, key: str) -> bool:
        return (
            self.rule in (ANY, rule)
            and (self.key is None or self.key == key)
            and (self.dimension is None or self.dimension == dimension)
        )


def new_silence(
    rule: str,
    duration: timedelta,
    key: str | None = None,
    dimension: str | None = None,
    comment: str = "",
    created_by: str = "",
    now: datetime | None = None,
) -> Silence:
    start = now or datetime.now(UTC)
    return Silence(
        rule=rule,
        key=key,
        dimension=dimension,
        starts_at=start,
        ends_at=start + duration,
        comment=comment,
        created_by=created_by,
    )


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '1d', '1h30m' as a timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total, number = 0.0, ""
    for char in text.strip().lower():
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d, 1h30m)")
    if number or total <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 2h, 1d, 1h30m)")
    return timedelta(seconds=total)


class SilenceBook:
    """The silences known to this process (thread-safe: filled by the follower thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._silences: dict[str, Silence] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        with self._lock:
            if value is None:
                self._silences.pop(key.decode(), None)
                return
            silence = Silence.model_validate_json(value)
            self._silences[silence.id] = silence

    def matches(self, rule: str, dimension: str, key: str, now: datetime) -> bool:
        with self._lock:
            return any(s.active(now) and s.covers(rule, dimension, key) for s in self._silences.values())

    def all(self) -> list[Silence]:
        with self._lock:
            return sorted(self._silences.values(), key=lambda s: s.starts_at)


class SilenceFollower:
    """Reads the silences topic from its start, then follows it, on a daemon thread."""

    def __init__(self, kafka: KafkaSettings, book: SilenceBook, check_interval_s: float = 2.0) -> None:
        self.kafka = kafka
        self.book = book
        self.check_interval_s = check_interval_s
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-silences", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        topic = self.kafka.topic(topics.ALERT_SILENCES)
        while not self._stop.is_set():
            try:
                self._follow(topic)
            except Exception as exc:  # a broker hiccup must not end silences for good
                log.warning("reading silences failed, retrying", error=str(exc)[:300])
                self._stop.wait(5)

    def _follow(self, topic: str) -> None:
        consumer = reader_consumer(self.kafka, "alert-silences")
        try:
            metadata = consumer.list_topics(topic, timeout=15).topics[topic]
            if metadata.error is not None:
                raise RuntimeError(str(metadata.error))
            read_to = dict.fromkeys(metadata.partitions, 0)  # next offset to read, per partition
            while not self._stop.is_set():
                for partition, start in read_to.items():
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
                    if high > max(start, low):
                        read_to[partition] = self._read(consumer, topic, partition, max(start, low), high)
                self.caught_up.set()
                self._stop.wait(self.check_interval_s)
        finally:
            consumer.close()

    def _read(self, consumer: Any, topic: str, partition: int, start: int, end: int) -> int:
        """Apply the records of `[start, end)`; returns the next offset to read."""
        consumer.assign([TopicPartition(topic, partition, start)])
        try:
            position = start
            deadline = time.monotonic() + 30
            while position < end and time.monotonic() < deadline and not self._stop.is_set():
                for message in consumer.consume(100, 0.5):
                    if message.error():
                        continue
                    try:
                        self.book.apply(message.key(), message.value())
                    except ValueError as exc:
                        log.warning(
                            "unreadable silence ignored", offset=message.offset(), error=str(exc)[:300]
                        )
                    position = message.offset() + 1
                if position < end:  # compaction may have removed the last offsets of the range
                    position = max(position, consumer.position([TopicPartition(topic, partition)])[0].offset)
            return position
        finally:
            consumer.unassign()


def publish(kafka: KafkaSettings, silence: Silence) -> None:
    """Write a silence (or its early end) to the silences topic and wait for the broker."""
    from confluent_kafka import Producer

    producer = Producer(kafka.confluent_config() | {"acks": "all", "enable.idempotence": True})
    errors: list[str] = []
    producer.produce(
        kafka.topic(topics.ALERT_SILENCES),
        key=silence.id.encode(),
        value=orjson.dumps(silence.model_dump(mode="json")),
        on_delivery=lambda err, _msg: errors.append(str(err)) if err is not None else None,
    )
    if producer.flush(30) or errors:
        raise RuntimeError(f"the silence was not stored: {errors or 'timed out'}")


def read_all(kafka: KafkaSettings, timeout_s: float = 15.0) -> SilenceBook:
    """Every silence on the topic now (for the CLI)."""
    book = SilenceBook()
    follower = SilenceFollower(kafka, book)
    follower.start()
    deadline = time.monotonic() + timeout_s
    while not follower.caught_up.wait(0.1):
        if time.monotonic() > deadline:
            follower.stop()
            raise TimeoutError(f"could not read {kafka.topic(topics.ALERT_SILENCES)} within {timeout_s}s")
    follower.stop()
    return book
