"""Read a topic, or a range of one partition, outside any consumer-group subscription.

For tools that need a finite snapshot of a topic (replays, tests, benchmarks), and for the stream
worker when it must read input its consumer skipped. `iter_to_end` assumes the broker reports
high watermarks correctly.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator

import orjson
import typer
from confluent_kafka import Consumer, Message, TopicPartition

from callstream.settings import KafkaSettings

C1_AND_DEL = re.compile(r"[\x7f-\x9f]")


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


def read_range(
    kafka: KafkaSettings, topic: str, partition: int, start: int, end: int, timeout_s: float = 30.0
) -> list[Message]:
    """The messages of one partition with `start <= offset < end`, in order. Offsets that hold no
    message (transaction markers, compacted or expired records) are simply absent."""
    consumer = reader_consumer(kafka, "range")
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while not out or out[-1].offset() < end - 1:
            for message in consumer.consume(500, 0.5):
                if message.error():
                    continue
                if message.offset() >= end:
                    return out
                out.append(message)
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= end:
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{topic}[{partition}] offsets {start}..{end - 1}: not read in {timeout_s}s"
                )
        return out
    finally:
        consumer.close()


def iter_until_idle(
    kafka: KafkaSettings, topic: str, idle_s: float = 2.0, timeout_s: float | None = 60.0
) -> Iterator[Message]:
    """Every message of `topic` from the start, read until none has arrived for `idle_s` (0.5 s
    once every partition reached the high watermark seen at the start). For Kafka-protocol servers
    whose high watermark lags their newest records (some report the base offset of their newest
    batch + 1), where `iter_to_end` would stop early; TimeoutError if the topic keeps growing for
    `timeout_s`."""
    consumer = reader_consumer(kafka)
    try:
        ends: dict[int, int] = {}
        assignment = []
        for partition in consumer.list_topics(topic, timeout=15).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if high > low:
                ends[partition] = high
            assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        started = last = time.monotonic()
        while time.monotonic() - last < (idle_s if ends else min(idle_s, 0.5)):
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{topic} kept growing for {timeout_s}s")
            for message in consumer.consume(1000, 0.2):
                if message.error():
                    continue
                last = time.monotonic()
                yield message
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
    finally:
        consumer.close()


def json_line(value: object) -> str:
    """`value` as one JSON line a terminal prints literally: JSON escapes C0 control characters
    itself; DEL and C1 (CSI, OSC, ... in 8-bit form) are escaped here too."""
    return C1_AND_DEL.sub(lambda m: f"\\u{ord(m.group()):04x}", orjson.dumps(value).decode())


def read_command(
    topic: str = typer.Argument(
        ..., help="Logical topic name (calls.raw, calls.deadletter, ...); the prefix is added"
    ),
    max_messages: int = typer.Option(20, "--max", help="Stop after this many messages (0: all)"),
    raw_name: bool = typer.Option(False, "--raw-name", help="TOPIC is the full name: add no prefix"),
) -> None:
    """Print a topic's messages from the beginning, one JSON line each (partition, offset, value)."""
    kafka = KafkaSettings()
    name = topic if raw_name else kafka.topic(topic)
    for count, message in enumerate(iter_to_end(kafka, name, timeout_s=60), start=1):
        value = message.value() or b""
        try:
            shown: object = orjson.loads(value)
        except orjson.JSONDecodeError:
            shown = value.decode("utf-8", "replace")
        line = {"partition": message.partition(), "offset": message.offset(), "value": shown}
        typer.echo(json_line(line))
        if max_messages and count >= max_messages:
            break


def group_committed(
    kafka: KafkaSettings, group: str, topic: str, partition: int, timeout_s: float = 10.0
) -> int | None:
    """The offset `group` has committed for one partition, as the broker holds it; None without a
    commit. Blocking: call it from an executor in async code."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka.confluent_config())
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])
    futures = admin.list_consumer_group_offsets([request], request_timeout=timeout_s)
    for tp in futures[group].result(timeout=timeout_s).topic_partitions or []:
        if tp.error is None and tp.offset >= 0:
            return int(tp.offset)
    return None
