"""`callstream otlp --from-kafka TOPIC`: the spans an OpenTelemetry Collector's `kafka` exporter
writes (`otlp_proto` or `otlp_json` encoding: one ExportTraceServiceRequest per message), read in a
consumer group and published as call events through the receiver's own mapping and publisher.

Offsets are committed only for messages whose calls the publisher has acknowledged or spooled
(`Publisher.flush`), so a crash or a rebalance re-reads, never skips; what is read twice has the
same event ids (from trace and span ids) and the stream's dedup drops the copies. Consumers in one
group share the topic's partitions: start more for more throughput. A message that is no OTLP
request goes to the dead-letter topic with its reason and position, without its bytes (they may
carry message content).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callstream import logs
from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.producers.otlp_decode import Encoding, RequestError, parse_request, spans_of
from callstream.producers.otlp_mapping import Span
from callstream.producers.otlp_receiver import OtlpReceiver
from callstream.producers.publisher import describe_error
from callstream.settings import KafkaSettings

log = logs.get(__name__)

BATCH_MESSAGES = 500
FLUSH_TIMEOUT_S = 60.0


def decode_message(value: bytes | None) -> list[Span]:
    """The spans of one Collector `kafka` exporter message, in either encoding. Raises RequestError."""
    if not value:
        raise RequestError(400, "empty message")
    encoding: Encoding = "json" if value.lstrip()[:1] == b"{" else "protobuf"
    return list(spans_of(parse_request(value, encoding)))


@dataclass
class KafkaSourceStats:
    messages: int = 0
    dead_letters: int = 0
    commits: int = 0
    flush_timeouts: int = 0


class KafkaSource:
    """A consumer-group loop: read, map and publish, then commit what was published."""

    def __init__(
        self,
        receiver: OtlpReceiver,
        kafka: KafkaSettings,
        topic: str,
        group_id: str,
        consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.receiver = receiver
        self.kafka = kafka
        self.topic = topic
        self.stats = KafkaSourceStats()
        self.deadletter_topic = kafka.topic(receiver.producer.deadletter_topic)
        self._consumer = (consumer_factory or Consumer)(
            kafka.confluent_config()
            | {
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        self._letters = (producer_factory or Producer)(
            kafka.confluent_config() | {"enable.idempotence": True, "acks": "all"}
        )

    def run(self, stop: threading.Event) -> None:
        self._consumer.subscribe([self.topic])
        log.info("reading OTLP spans from Kafka", topic=self.topic)
        try:
            while not stop.is_set():
                messages = self._consumer.consume(BATCH_MESSAGES, timeout=1.0)
                if messages:
                    self._handle(messages, stop)
        finally:
            self._consumer.close()
            self._letters.flush(10)

    def _handle(self, messages: list[Any], stop: threading.Event) -> None:
        done: dict[int, int] = {}  # partition -> next offset to commit
        for message in messages:
            if message.error() is not None:
                log.warning("consumer error", error=describe_error(message.error()))
                continue
            try:
                spans = decode_message(message.value())
            except RequestError as exc:
                self._dead_letter(message, exc.message)
            else:
                if not self._export(spans, stop):
                    break  # stopping while Kafka is away: this message and later ones are read again
            self.stats.messages += 1
            done[message.partition()] = message.offset() + 1
        if not done:
            return
        letters_left = self._letters.flush(FLUSH_TIMEOUT_S)
        if letters_left or not self.receiver.publisher.flush(FLUSH_TIMEOUT_S):
            self.stats.flush_timeouts += 1
            log.warning("publisher not flushed in time; offsets not committed (the messages are read again)")
            return
        from confluent_kafka import TopicPartition

        self._consumer.commit(
            offsets=[TopicPartition(self.topic, partition, offset) for partition, offset in done.items()],
            asynchronous=False,
        )
        self.stats.commits += 1

    def _export(self, spans: list[Span], stop: threading.Event) -> bool:
        """Hand the spans over; while there is no room (Kafka away, spool full), wait instead of
        reading on. False when asked to stop while waiting."""
        while True:
            throttled = self.receiver.refusal()
            if throttled is None:
                self.receiver.export(spans)
                return True
            log.warning("waiting for room before reading on", reason=throttled.reason)
            if stop.wait(self.receiver.settings.retry_after_s):
                return False

    def _dead_letter(self, message: Any, reason: str) -> None:
        self.stats.dead_letters += 1
        log.warning(
            "OTLP message sent to the dead-letter topic",
            partition=message.partition(),
            offset=message.offset(),
            reason=reason[:200],
        )
        size = len(message.value() or b"")
        letter = dead_letter(
            f"not an OTLP trace request: {reason}",
            "otlp",
            f"[{size} bytes left out: an OTLP message may carry message content]",
            source_topic=self.topic,
            source_partition=message.partition(),
            source_offset=message.offset(),
        )
        letter["original_bytes"] = size
        self._letters.produce(self.deadletter_topic, encode_dead_letter(letter))
        self._letters.poll(0)
