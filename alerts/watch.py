"""Pipeline signals the alert worker measures itself, through Kafka's admin API.

- Consumer lag of the stream and sink consumer groups: per partition the group has committed,
  the partition's end (high watermark) minus the committed offset. A group's sample records the
  total lag, the total committed, and both per partition; the `consumer_stalled` rule compares a
  sample with the one N minutes older (lag grew, nothing committed).
- Dead letters: the end offsets of the dead-letter topics, summed over partitions. Dead letters
  are only ever appended, so the difference between two samples is exactly how many arrived in
  between, without consuming them (and without counting one twice after a restart).

`sample_*` do blocking network calls: the worker runs them on a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from callstream.settings import KafkaSettings

NO_OFFSET = 0  # a partition the group never committed counts from its start (offset 0 or later)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def lag_sample(group: str, partitions: list[PartitionLag]) -> dict[str, Any]:
    """The sample stored for a consumer group (pure)."""
    return {
        "group": group,
        "lag": sum(p.lag for p in partitions),
        "committed": sum(p.committed for p in partitions),
        "partitions": {f"{p.topic}:{p.partition}": [p.committed, p.end] for p in partitions},
    }


class Sampler:
    """One admin client for the worker's samples."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self.admin = AdminClient(kafka.confluent_config())

    def group_lag(self, group: str) -> list[PartitionLag]:
        futures = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s
        )
        committed = futures[group].result(timeout=self.timeout_s).topic_partitions or []
        tps = [tp for tp in committed if tp.error is None]
        if not tps:
            return []
        ends = self._ends([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return [
            PartitionLag(
                tp.topic,
                tp.partition,
                tp.offset if tp.offset >= 0 else NO_OFFSET,
                ends[(tp.topic, tp.partition)],
            )
            for tp in tps
            if (tp.topic, tp.partition) in ends
        ]

    def topic_end(self, topic: str) -> int:
        """The sum of the high watermarks of a topic's partitions (messages ever appended)."""
        metadata = self.admin.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise RuntimeError(f"topic {topic}: {metadata.error if metadata else 'missing'}")
        ends = self._ends([TopicPartition(topic, p) for p in metadata.partitions])
        return sum(ends.values())

    def _ends(self, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in tps}, request_timeout=self.timeout_s
        )
        return {
            (tp.topic, tp.partition): future.result(timeout=self.timeout_s).offset
            for tp, future in futures.items()
        }
