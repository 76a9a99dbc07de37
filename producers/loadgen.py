"""Publish synthetic traffic (or any list of events) to the raw topic in packed batches.

A bulk tool, not the in-process library: it owns its producer, packs `batch_size` events per
message on the partition of their event id, and waits for every delivery report before it
returns, so a caller knows exactly what reached Kafka.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from callstream.producers.contract import RawCallEvent, partition_for_event_id
from callstream.settings import KafkaSettings


@dataclass
class PublishReport:
    events: int = 0
    messages: int = 0
    bytes: int = 0
    failed_messages: int = 0
    errors: list[str] = field(default_factory=list)


def bulk_producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    conf = kafka.confluent_config() | {
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "message.max.bytes": 1_000_000,
    }
    return Producer(conf | overrides)


def partition_count(producer: Producer, topic: str) -> int:
    metadata = producer.list_topics(topic, timeout=15)
    topic_meta = metadata.topics.get(topic)
    if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
        raise RuntimeError(f"topic {topic} is not available: {topic_meta.error if topic_meta else 'missing'}")
    return len(topic_meta.partitions)


def publish(
    kafka: KafkaSettings,
    topic: str,
    events: Iterable[RawCallEvent | dict[str, Any] | Any],
    batch_size: int = 500,
    rate_per_s: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> PublishReport:
    """Publish events (contract objects, or raw values sent as they are, e.g. invalid inputs).

    Contract events go to the partition of their event id; other values to partition 0.
    `rate_per_s` > 0 paces event publication; 0 sends as fast as the broker takes them.
    """
    producer = bulk_producer(kafka)
    partitions = partition_count(producer, topic)
    report = PublishReport()
    pending: dict[int, list[Any]] = defaultdict(list)

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            report.failed_messages += 1
            report.errors.append(str(err))

    def send(partition: int, items: list[Any]) -> None:
        value = orjson.dumps(items)
        while True:
            try:
                producer.produce(topic, value=value, partition=partition, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        report.messages += 1
        report.bytes += len(value)

    started = time.monotonic()
    for event in events:
        if stop is not None and stop.is_set():
            break
        if isinstance(event, RawCallEvent):
            partition, item = partition_for_event_id(event.event_id, partitions), event.to_wire()
        else:
            partition, item = 0, event
        batch = pending[partition]
        batch.append(item)
        report.events += 1
        if len(batch) >= batch_size:
            send(partition, batch)
            pending[partition] = []
        if on_progress is not None and report.events % 1000 == 0:
            on_progress(1000)
        if rate_per_s > 0:
            ahead = report.events / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    for partition, batch in pending.items():
        if batch:
            send(partition, batch)
    if on_progress is not None:
        on_progress(report.events % 1000)
    remaining = producer.flush(60)
    if remaining:
        raise KafkaException(f"{remaining} messages still undelivered after 60 s")
    return report
