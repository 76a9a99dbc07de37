"""Read a topic from the beginning of each partition up to where it ends now.

For tools that need a finite snapshot of a topic (replays, tests, benchmarks) rather than a
consumer-group subscription. It assumes the broker reports high watermarks correctly.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, Message, TopicPartition

from callstream.settings import KafkaSettings


def reader_consumer(kafka: KafkaSettings, name: str = "reader") -> Consumer:
    """A throwaway consumer that reads from the beginning and never commits: its group id is
    unique, and one fetch may be a whole partition (emulators ignore fetch size limits)."""
    return Consumer(
        kafka.confluent_config()
        | {
            "group.id": f"callstream-{name}-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "receive.message.max.bytes": kafka.receive_message_max_bytes,
        }
    )


def iter_to_end(
    kafka: KafkaSettings, topic: str, timeout_s: float | None = None, stop: threading.Event | None = None
) -> Iterator[Message]:
    """Messages of `topic` up to the high watermarks seen at the start; raises TimeoutError if it
    cannot get there within `timeout_s`."""
    consumer = reader_consumer(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=15).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"topic {topic}: {metadata.error}")
        ends: dict[int, int] = {}
        assignment = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        if not assignment:
            return
        consumer.assign(assignment)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while ends and not (stop is not None and stop.is_set()):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"did not reach the end of {topic} partitions {sorted(ends)}")
            for message in consumer.consume(1000, 0.5):
                if message.error() or message.partition() not in ends:
                    continue
                yield message
                if message.offset() + 1 >= ends[message.partition()]:
                    del ends[message.partition()]
    finally:
        consumer.close()
