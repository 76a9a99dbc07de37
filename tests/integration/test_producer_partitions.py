"""The publisher against the real local broker: per-partition packing, splitting a message the
broker refuses, and dead letters made while Kafka is down. Each test has its own topics (a topic
prefix of its own), so counts are exact."""

from __future__ import annotations

import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from callstream.infra.setup import create_topics
from callstream.producers.publisher import KafkaPublisher
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_to_end
from callstream.topics import DEADLETTER, RAW, TopicSpec
from tests.conftest import ServersControl

pytestmark = pytest.mark.integration

PARTITIONS = 6


def own_topics(kafka_settings: KafkaSettings, raw_config: dict[str, str] | None = None) -> KafkaSettings:
    kafka = kafka_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}"})
    create_topics(
        kafka,
        specs=[
            TopicSpec(kafka.topic(RAW), PARTITIONS, raw_config or {}),
            TopicSpec(kafka.topic(DEADLETTER), 3),
        ],
    )
    return kafka


def raw_by_partition(kafka: KafkaSettings) -> list[tuple[int, dict[str, Any], int]]:
    """(partition, event, message size) for every event in the raw topic."""
    return [
        (message.partition(), event, len(message.value()))
        for message in iter_to_end(kafka, kafka.topic(RAW), timeout_s=60)
        for event in orjson.loads(message.value())
    ]


def letters(kafka: KafkaSettings) -> list[dict[str, Any]]:
    return [orjson.loads(m.value()) for m in iter_to_end(kafka, kafka.topic(DEADLETTER), timeout_s=60)]


def item(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"p-{i}",
        "request_model": "gpt-4.1",
        "duration_ms": 10.0 + i,
        "start_time": time.time(),
        "input_tokens": i,
        "output_tokens": 1,
    } | fields


def assert_exactly_once_on_their_partitions(
    rows: list[tuple[int, dict[str, Any], int]], ids: set[str]
) -> None:
    counts = Counter(event["event_id"] for _, event, _ in rows)
    assert set(counts) == ids and set(counts.values()) == {1}
    for partition, event, _ in rows:  # CRC-32 of the id modulo the partition count, computed here
        assert partition == zlib.crc32(event["event_id"].encode()) % PARTITIONS, event["event_id"]


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_events_land_on_their_ids_partitions(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    kafka = own_topics(kafka_settings)
    publisher = KafkaPublisher(ProducerSettings(spool_dir=tmp_path / "spool", batch_max_events=100), kafka)
    for i in range(2_000):
        publisher.put(item(i))
    assert publisher.flush(60)
    publisher.close()
    rows = raw_by_partition(kafka)
    assert_exactly_once_on_their_partitions(rows, {f"p-{i}" for i in range(2_000)})
    assert {p for p, _, _ in rows} == set(range(PARTITIONS))
    stats = publisher.stats()
    assert (stats.published, stats.spooled, stats.invalid, stats.dropped) == (2_000, 0, 0, 0)


def test_messages_over_the_clients_limit_are_split_and_a_lone_giant_dead_lettered(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    kafka = own_topics(kafka_settings)
    settings = ProducerSettings(
        spool_dir=tmp_path / "spool",
        batch_max_events=500,
        batch_max_bytes=200_000,
        compression="none",
        metadata_value_max_chars=8_000,
        metadata_max_bytes=60_000,
        # librdkafka itself refuses anything over 30,000 bytes (the real KafkaException path)
        librdkafka_overrides={"message.max.bytes": 30_000},
    )
    publisher = KafkaPublisher(settings, kafka)
    for i in range(1_500):
        publisher.put(item(i))
    publisher.put(item(9_999, metadata={f"blob{k}": "z" * 8_000 for k in range(5)}))  # 40 KB alone
    assert publisher.flush(60)
    publisher.close()
    rows = raw_by_partition(kafka)
    assert_exactly_once_on_their_partitions(rows, {f"p-{i}" for i in range(1_500)})
    assert max(size for _, _, size in rows) <= 30_000
    (letter,) = letters(kafka)
    assert letter["reason"].startswith("event too large for Kafka") and '"p-9999"' in letter["original"]
    stats = publisher.stats()
    assert (stats.published, stats.invalid, stats.dropped) == (1_500, 1, 0)


def test_a_message_the_broker_refuses_is_split(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    kafka = own_topics(kafka_settings, raw_config={"max.message.bytes": "20000"})
    settings = ProducerSettings(
        spool_dir=tmp_path / "spool",
        batch_max_events=500,
        batch_max_bytes=200_000,
        compression="none",
        # the broker's limit applies to librdkafka's record batches: keep those under it
        librdkafka_overrides={"batch.size": 16_384},
    )
    publisher = KafkaPublisher(settings, kafka)
    for i in range(1_500):
        publisher.put(item(i))
    assert publisher.flush(60)
    publisher.close()
    rows = raw_by_partition(kafka)
    assert_exactly_once_on_their_partitions(rows, {f"p-{i}" for i in range(1_500)})
    if max(size for _, _, size in rows) > 20_000:
        pytest.skip(
            "this broker does not apply the topic's max.message.bytes (the client-side test covers splits)"
        )
    assert publisher.stats().published == 1_500


def test_dead_letters_made_while_kafka_is_down_arrive_once_it_is_back(
    kafka_settings: KafkaSettings, servers_control: ServersControl, tmp_path: Path
) -> None:
    kafka = own_topics(kafka_settings)
    settings = ProducerSettings(
        spool_dir=tmp_path / "spool",
        spool_retry_interval_ms=200,
        delivery_timeout_ms=3_000,
        reconnect_backoff_max_ms=200,
    )
    publisher = KafkaPublisher(settings, kafka)
    publisher.put(item(0))
    assert publisher.flush(30)  # connected, partitions known
    servers_control.stop("kafka")
    try:
        for i in range(1, 41):
            publisher.put(item(i))
        for i in range(41, 53):  # invalid: more cached than input tokens
            publisher.put(item(i, input_tokens=1, cache_read_input_tokens=5))
        wait_until(lambda: publisher.stats().spooled >= 40 and publisher.stats().invalid == 12)
        assert not publisher.stats().kafka_available
    finally:
        servers_control.start("kafka")
    wait_until(lambda: publisher.stats().unspooled >= 40 and not publisher.stats().spool_bytes)
    assert publisher.flush(60)
    publisher.close()
    assert_exactly_once_on_their_partitions(raw_by_partition(kafka), {f"p-{i}" for i in range(41)})
    mine = letters(kafka)
    assert len(mine) == 12 and all("cache_read_input_tokens" in letter["reason"] for letter in mine)
    assert sorted(orjson.loads(letter["original"])["event_id"] for letter in mine) == sorted(
        f"p-{i}" for i in range(41, 53)
    )
    stats = publisher.stats()
    assert (stats.published, stats.invalid, stats.dropped) == (41, 12, 0)
