"""What real Kafka and Elasticsearch do that callstream relies on or that an emulator hid.

Each test declares what it needs (`@pytest.mark.needs`); on an engine that lacks it, it is skipped
with that engine's reason (`local_servers.EmbeddedEngine.gaps`, `real_engines.RealEngine.gaps`).
ILM exists on neither local engine (the real node is Elastic's integ-test distribution): what the
templates ask of it is checked offline, see docs/engines.md.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from elasticsearch import ConflictError, Elasticsearch, helpers

from callstream.infra.local_servers import FETCH_LIMITS, PERCENTILES, LocalServers
from callstream.infra.setup import create_topics
from callstream.producers import synthetic
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings
from callstream.topics import TopicSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def es(servers: LocalServers) -> Iterator[Elasticsearch]:
    client = servers.es_settings().client()
    try:
        yield client
    finally:
        client.close()


def one_topic(kafka: KafkaSettings, partitions: int = 1) -> str:
    name = f"t{uuid.uuid4().hex[:10]}.real"
    create_topics(kafka, specs=[TopicSpec(name, partitions)])
    return name


def read_all(kafka: KafkaSettings, topic: str, extra: dict[str, Any], expect: int) -> list[bytes]:
    consumer = Consumer(
        kafka.confluent_config()
        | {
            "group.id": f"g{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        | extra
    )
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        idle = 0
        while len(values) < expect and idle < 20:
            batch = consumer.consume(500, 0.5)
            idle = 0 if batch else idle + 1
            for message in batch:
                if message.error():
                    raise KafkaException(message.error())
                values.append(message.value())
    finally:
        consumer.close()
    return values


# -- Kafka -------------------------------------------------------------------------------------------


def test_the_producers_idempotence_is_granted_by_the_broker(kafka_settings: KafkaSettings) -> None:
    """The recorder's producer configuration (enable.idempotence, acks=all) gets a producer id:
    librdkafka reports the idempotence state it reached in its statistics."""
    topic = one_topic(kafka_settings)
    stats: list[dict[str, Any]] = []
    conf = ProducerSettings().confluent_config(kafka_settings) | {
        "statistics.interval.ms": 100,
        "stats_cb": lambda raw: stats.append(orjson.loads(raw)),
    }
    producer = Producer(conf)
    for i in range(100):
        producer.produce(topic, value=f"{i}".encode())
    assert producer.flush(30) == 0
    for _ in range(20):
        producer.poll(0.1)
    eos = stats[-1]["eos"]
    assert eos["idemp_state"] == "Assigned" and eos["producer_id"] >= 0, eos
    assert read_all(kafka_settings, topic, {}, 100) == [f"{i}".encode() for i in range(100)]


def test_an_aborted_transaction_is_invisible_to_read_committed(kafka_settings: KafkaSettings) -> None:
    """Some Kafka-protocol servers showed aborted messages to read_committed consumers; a real
    broker must not."""
    topic = one_topic(kafka_settings)
    producer = Producer(
        kafka_settings.confluent_config() | {"transactional.id": f"tx-{uuid.uuid4().hex[:8]}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    assert read_all(kafka_settings, topic, {"isolation.level": "read_committed"}, 1) == [b"committed"]
    assert read_all(kafka_settings, topic, {"isolation.level": "read_uncommitted"}, 2) == [
        b"aborted",
        b"committed",
    ]


@pytest.mark.needs(FETCH_LIMITS)
def test_fetch_responses_stay_within_the_consumers_limits(kafka_settings: KafkaSettings) -> None:
    """8 MB in one partition, read by a consumer that accepts responses of at most 2 MB: a broker
    that honours fetch.max.bytes sends it in pieces. (noida-db answers with the whole partition, so
    there librdkafka needs receive.message.max.bytes of about 1e9; docs/engines.md.)"""
    topic = one_topic(kafka_settings)
    producer = Producer(kafka_settings.confluent_config() | {"linger.ms": 20})
    payload = b"x" * 100_000
    for i in range(80):
        producer.produce(topic, value=i.to_bytes(4, "big") + payload)
    assert producer.flush(30) == 0
    limits = {
        "fetch.max.bytes": 1_000_000,
        "max.partition.fetch.bytes": 500_000,
        "receive.message.max.bytes": 2_000_000,
    }
    values = read_all(kafka_settings, topic, limits, 80)
    assert [int.from_bytes(v[:4], "big") for v in values] == list(range(80))


# -- Elasticsearch -----------------------------------------------------------------------------------


def test_external_versions_keep_the_newest_document(es: Elasticsearch) -> None:
    """The sink writes window aggregates with version_type=external: older re-deliveries lose."""
    index = f"callstream-test-versions-{uuid.uuid4().hex[:8]}"
    try:
        es.index(index=index, id="w", document={"v": 5}, version=5, version_type="external")
        with pytest.raises(ConflictError):
            es.index(index=index, id="w", document={"v": 3}, version=3, version_type="external")
        with pytest.raises(ConflictError):
            es.index(index=index, id="w", document={"v": 5}, version=5, version_type="external")
        result = es.index(index=index, id="w", document={"v": 6}, version=6, version_type="external")
        assert result["_version"] == 6
        stored = es.get(index=index, id="w")
        assert (stored["_version"], stored["_source"]) == (6, {"v": 6})
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


@pytest.mark.needs(PERCENTILES)
def test_percentiles_and_composite_aggregations_of_calls(es: Elasticsearch) -> None:
    """Server-side percentiles (HDR histogram, 3 significant digits) equal the exact latencies at
    HdrHistogram's rank (q * n rounded, at least 1) per model within its 0.1% resolution, and a
    composite aggregation paged 3 buckets at a time counts every (model, status) pair exactly: what
    reports could ask a real cluster, and noida-db cannot answer."""
    index = f"callstream-test-calls-{uuid.uuid4().hex[:8]}"
    events = synthetic.generate(3000, seed=11)
    docs = [
        {"model": e.request_model, "duration_ms": e.duration_ms, "status": e.status_code or 0} for e in events
    ]
    try:
        es.indices.create(
            index=index,
            mappings={
                "properties": {
                    "model": {"type": "keyword"},
                    "duration_ms": {"type": "double"},
                    "status": {"type": "short"},
                }
            },
        )
        helpers.bulk(es, ({"_index": index, "_source": d} for d in docs), refresh=True)

        latencies: dict[str, list[float]] = defaultdict(list)
        for d in docs:
            latencies[d["model"]].append(d["duration_ms"])
        response = es.search(
            index=index,
            size=0,
            aggs={
                "model": {
                    "terms": {"field": "model", "size": 100},
                    "aggs": {
                        "latency": {
                            "percentiles": {
                                "field": "duration_ms",
                                "percents": [50, 95, 99],
                                "hdr": {"number_of_significant_value_digits": 3},
                            }
                        }
                    },
                }
            },
        )
        buckets = response["aggregations"]["model"]["buckets"]
        assert {b["key"]: b["doc_count"] for b in buckets} == {m: len(v) for m, v in latencies.items()}
        for bucket in buckets:
            values = bucket["latency"]["values"]
            ordered = sorted(latencies[bucket["key"]])
            for q in (50, 95, 99):
                rank = max(1, math.floor(q / 100 * len(ordered) + 0.5))
                assert values[f"{q}.0"] == pytest.approx(ordered[rank - 1], rel=0.002), (bucket["key"], q)

        counted: Counter[tuple[str, int]] = Counter()
        after: dict[str, Any] | None = None
        pages = 0
        while True:
            composite: dict[str, Any] = {
                "size": 3,
                "sources": [
                    {"model": {"terms": {"field": "model"}}},
                    {"status": {"terms": {"field": "status"}}},
                ],
            }
            if after:
                composite["after"] = after
            page = es.search(index=index, size=0, aggs={"pairs": {"composite": composite}})["aggregations"]
            for bucket in page["pairs"]["buckets"]:
                counted[(bucket["key"]["model"], bucket["key"]["status"])] += bucket["doc_count"]
            pages += 1
            after = page["pairs"].get("after_key")
            if not page["pairs"]["buckets"] or after is None:
                break
        assert counted == Counter((d["model"], d["status"]) for d in docs)
        assert pages > 2  # it really paged
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
