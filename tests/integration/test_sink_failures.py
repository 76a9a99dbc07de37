"""The sink under failure, as a separate process against real servers: every valid event ends up in
Elasticsearch exactly once, nothing is lost, and offsets end at the end of every partition.

Each test gets its own topic and index prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from elasticsearch import Elasticsearch, helpers

from callstream import topics
from callstream.infra import local_servers
from callstream.infra.processes import start_worker
from callstream.infra.setup import create_topics
from callstream.producers.deadletter import dead_letter
from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.sinks import index_templates
from callstream.streams.contract import WindowAggregate
from callstream.topic_reader import reader_consumer
from tests.unit.test_sink_events import enriched_events

pytestmark = pytest.mark.integration


@dataclass
class Pipeline:
    """One isolated sink deployment: topics, templates and environment under a fresh prefix."""

    prefix: str
    kafka: KafkaSettings
    es_settings: ElasticsearchSettings
    es: Elasticsearch
    env: dict[str, str]
    logs: Path

    def topic(self, name: str) -> str:
        return self.kafka.topic(name)

    def produce(self, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
        """Produce and check every delivery report."""
        producer = Producer(self.kafka.confluent_config() | {"compression.type": "lz4", "linger.ms": 10})
        errors: list[Any] = []
        for key, value in values:
            producer.produce(
                topic, value=value, key=key, on_delivery=lambda err, _m: err and errors.append(err)
            )
        assert producer.flush(30) == 0
        assert not errors, errors

    def produce_events(self, events: list[dict[str, Any]], per_message: int, raw: list[bytes] = ()) -> None:
        values = [
            (None, orjson.dumps(events[i : i + per_message])) for i in range(0, len(events), per_message)
        ]
        values += [(None, value) for value in raw]
        self.produce(self.topic(topics.ENRICHED), values)

    def start_sink(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return start_worker(["sink", *args], self.env | env, self.logs / f"{name}.log")

    def log_text(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def ids(self, pattern: str) -> list[str]:
        self.es.indices.refresh(index=f"{self.prefix}-*")
        return [
            hit["_id"] for hit in helpers.scan(self.es, index=pattern, query={"_source": False}, size=5000)
        ]

    def sources(self, pattern: str) -> list[dict[str, Any]]:
        self.es.indices.refresh(index=f"{self.prefix}-*")
        return [hit["_source"] for hit in helpers.scan(self.es, index=pattern, size=5000)]

    def count(self, pattern: str) -> int:
        self.es.indices.refresh(index=f"{self.prefix}-*")
        return int(self.es.count(index=pattern)["count"])

    def lag(self, *topic_names: str) -> dict[str, int]:
        """Messages not yet committed by the sink's group, per topic."""
        consumer = Consumer(
            self.kafka.confluent_config() | {"group.id": self.env["CALLSTREAM_SINK_GROUP_ID"]}
        )
        try:
            lag: dict[str, int] = {}
            for name in topic_names:
                topic = self.topic(name)
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                tps = [TopicPartition(topic, p) for p in meta.partitions]
                committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
                total = 0
                for tp in tps:
                    _, high = consumer.get_watermark_offsets(tp, timeout=10)
                    position = committed[tp.partition]
                    total += high - (position if position >= 0 else 0)
                lag[name] = total
            return lag
        finally:
            consumer.close()


@pytest.fixture
def pipeline(servers: local_servers.LocalServers, tmp_path: Path) -> Iterator[Pipeline]:
    prefix = f"sk{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=servers.bootstrap_servers, topic_prefix=prefix)
    es_settings = ElasticsearchSettings(url=servers.es_url, index_prefix=prefix)
    create_topics(kafka, partitions=3)
    es = Elasticsearch(servers.es_url, request_timeout=60)
    index_templates.apply(es, es_settings)
    env = (
        os.environ
        | servers.env()
        | {
            "CALLSTREAM_KAFKA_TOPIC_PREFIX": prefix,
            "CALLSTREAM_ES_INDEX_PREFIX": prefix,
            "CALLSTREAM_SINK_GROUP_ID": f"{prefix}-sink",
            "CALLSTREAM_SINK_STATS_INTERVAL_S": "1",
            "CALLSTREAM_SINK_RETRY_BACKOFF_MAX_MS": "2000",
        }
    )
    yield Pipeline(prefix, kafka, es_settings, es, env, tmp_path)
    es.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Sink processes a test starts: killed at the end whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def finish(proc: subprocess.Popen[bytes], pipeline: Pipeline, name: str, timeout_s: float = 120) -> None:
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"sink did not stop; log tail:\n{pipeline.log_text(name)[-3000:]}") from None
    assert code == 0, f"sink exited with {code}; log tail:\n{pipeline.log_text(name)[-3000:]}"


def expected_days(events: list[dict[str, Any]], prefix: str) -> Counter[str]:
    """Index per event computed from the generator's datetimes, independently of the sink."""
    return Counter(
        f"{prefix}-calls-" + datetime.fromisoformat(e["event_time"]).astimezone(UTC).strftime("%Y.%m.%d")
        for e in events
    )


def index_counts(pipeline: Pipeline, indices: Counter[str]) -> Counter[str]:
    return Counter({index: pipeline.count(index) for index in indices})


def test_sigkill_mid_bulk_then_restart_loses_and_duplicates_nothing(
    pipeline: Pipeline, processes: list[subprocess.Popen[bytes]]
) -> None:
    events = enriched_events(6000, seed=21)
    pipeline.produce_events(events, per_message=50)
    small = {
        "CALLSTREAM_SINK_BATCH_MAX_DOCS": "150",
        "CALLSTREAM_SINK_MAX_IN_FLIGHT_REQUESTS": "2",
        # Static membership: noida-db never evicts a SIGKILLed dynamic member.
        "CALLSTREAM_SINK_GROUP_INSTANCE_ID": "sink-0",
    }
    first = pipeline.start_sink("first", **small)
    processes.append(first)
    wait_for(lambda: pipeline.count(f"{pipeline.prefix}-calls-*") >= 1000, 60, "the first 1000 documents")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    at_kill = pipeline.count(f"{pipeline.prefix}-calls-*")
    lag_at_kill = pipeline.lag(topics.ENRICHED)[topics.ENRICHED]

    second = pipeline.start_sink("second", "--stop-when-idle-s", "3", **small)
    processes.append(second)
    finish(second, pipeline, "second")

    ids = pipeline.ids(f"{pipeline.prefix}-calls-*")
    assert len(ids) == len(events)
    assert set(ids) == {e["event_id"] for e in events}
    days = expected_days(events, pipeline.prefix)
    assert index_counts(pipeline, days) == days
    assert pipeline.lag(topics.ENRICHED) == {topics.ENRICHED: 0}
    assert pipeline.count(f"{pipeline.prefix}-sink-deadletter-*") == 0
    # Not asserted (timing): the kill normally lands with work uncommitted; say so when it did not.
    if at_kill >= len(events) and lag_at_kill == 0:
        pytest.xfail("the first sink finished everything before it was killed: restart path not exercised")


def test_elasticsearch_down_for_30s_pauses_retries_and_recovers(
    pipeline: Pipeline, servers: local_servers.LocalServers, processes: list[subprocess.Popen[bytes]]
) -> None:
    before, during = enriched_events(3000, seed=31), enriched_events(3000, seed=32)
    pipeline.produce_events(before, per_message=100)
    sink = pipeline.start_sink("sink", "--stop-when-idle-s", "5", CALLSTREAM_SINK_BATCH_MAX_DOCS="300")
    processes.append(sink)
    wait_for(lambda: pipeline.count(f"{pipeline.prefix}-calls-*") >= 600, 60, "documents before the outage")

    local_servers.stop_service("elasticsearch", servers.data_dir)
    stopped = True
    try:
        pipeline.produce_events(during, per_message=100)
        time.sleep(30)
        assert sink.poll() is None, "the sink must keep retrying, not exit"
        lag_while_down = pipeline.lag(topics.ENRICHED)[topics.ENRICHED]
        local_servers.start_service("elasticsearch", servers.data_dir)
        stopped = False
    finally:
        if stopped:
            local_servers.start_service("elasticsearch", servers.data_dir)
    local_servers.wait_until_ready(servers)
    finish(sink, pipeline, "sink")

    log = pipeline.log_text("sink")
    assert "bulk request failed" in log  # it saw the outage and retried
    assert "destination failing: consumption paused" in log  # and stopped reading meanwhile
    assert "destination recovered" in log
    assert lag_while_down > 0  # nothing it could not write was committed
    events = before + during
    ids = pipeline.ids(f"{pipeline.prefix}-calls-*")
    assert len(ids) == len(events) and set(ids) == {e["event_id"] for e in events}
    days = expected_days(events, pipeline.prefix)
    assert index_counts(pipeline, days) == days
    assert pipeline.lag(topics.ENRICHED) == {topics.ENRICHED: 0}


def test_noida_keeps_documents_across_an_elasticsearch_stop_and_start(
    pipeline: Pipeline, servers: local_servers.LocalServers
) -> None:
    """What the outage test relies on: data written before a stop is there after the start."""
    pipeline.es.index(index=f"{pipeline.prefix}-probe", id="kept", document={"n": 1}, refresh=True)
    local_servers.stop_service("elasticsearch", servers.data_dir)
    local_servers.start_service("elasticsearch", servers.data_dir)
    local_servers.wait_until_ready(servers)
    assert pipeline.es.get(index=f"{pipeline.prefix}-probe", id="kept")["_source"] == {"n": 1}


@pytest.mark.smoke  # also run on the embedded engine in CI
def test_malformed_documents_are_dead_lettered_and_neighbours_indexed(
    pipeline: Pipeline, processes: list[subprocess.Popen[bytes]]
) -> None:
    events = enriched_events(1000, seed=41)
    rng = random.Random(41)
    bad_positions = sorted(rng.sample(range(len(events)), 4))
    wrong_type, unknown_field, _, no_time = (events[i]["event_id"] for i in bad_positions)
    events[bad_positions[0]] = events[bad_positions[0]] | {"input_tokens": "many"}  # refused by the mapping
    events[bad_positions[1]] = events[bad_positions[1]] | {"surprise_field": 1}  # refused: dynamic strict
    events[bad_positions[2]] = {k: v for k, v in events[bad_positions[2]].items() if k != "event_id"}
    events[bad_positions[3]] = events[bad_positions[3]] | {"event_time": "yesterday"}
    pipeline.produce_events(events, per_message=100, raw=[b"{this is not json"])

    sink = pipeline.start_sink("sink", "--stop-when-idle-s", "3")
    processes.append(sink)
    finish(sink, pipeline, "sink")

    valid = [e for i, e in enumerate(events) if i not in bad_positions]
    ids = pipeline.ids(f"{pipeline.prefix}-calls-*")
    assert len(ids) == len(valid) and set(ids) == {e["event_id"] for e in valid}

    letters = pipeline.sources(f"{pipeline.prefix}-sink-deadletter-*")
    assert len(letters) == 5
    by_doc = {letter["doc_id"]: letter for letter in letters if letter["doc_id"]}
    assert set(by_doc) == {wrong_type, unknown_field}
    assert "input_tokens" in by_doc[wrong_type]["reason"] and by_doc[wrong_type]["status"] == 400
    assert "surprise_field" in by_doc[unknown_field]["reason"]
    assert orjson.loads(by_doc[wrong_type]["original"])["input_tokens"] == "many"
    assert by_doc[wrong_type]["target_index"].startswith(f"{pipeline.prefix}-calls-")
    invalid = sorted(letter["reason"] for letter in letters if not letter["doc_id"])
    assert [r.split(":")[0].split(" (")[0] for r in invalid] == ["invalid enriched event"] * 2 + ["not JSON"]
    assert any("event_id" in r for r in invalid) and any("event_time" in r for r in invalid)
    originals = [x["original"] for x in letters]
    assert sum(no_time in o for o in originals) == 1  # the whole original is kept

    # The same dead letters on the topic, keyed like the index documents.
    topic_letters = consume_all(pipeline, pipeline.topic(topics.SINK_DEADLETTER), expected=5)
    assert sorted(orjson.loads(v)["reason"] for _, v in topic_letters) == sorted(x["reason"] for x in letters)
    assert pipeline.lag(topics.ENRICHED) == {topics.ENRICHED: 0}
    assert "dead-lettered" in pipeline.log_text("sink")


def consume_all(
    pipeline: Pipeline, topic: str, expected: int, timeout_s: float = 30
) -> list[tuple[bytes, bytes]]:
    consumer = reader_consumer(pipeline.kafka)
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                if message.error() is None:
                    out.append((message.key(), message.value()))
        time.sleep(0.5)  # anything beyond the expected count would show up now
        out += [(m.key(), m.value()) for m in consumer.consume(100, 1.0) if m.error() is None]
    finally:
        consumer.close()
    return out


def aggregate(doc_index: int, version: int) -> dict[str, Any]:
    start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=doc_index)
    requests = 10 * version
    return WindowAggregate(
        doc_id=f"model|m{doc_index}|1h|{start.isoformat()}",
        version=version,
        dimension="model",
        key=f"m{doc_index}",
        window_size="1h",
        window_start=start,
        window_end=start + timedelta(hours=1),
        requests=requests,
        successes=requests - version,
        errors=version,
        error_rate=version / requests,
        errors_by_type={"rate_limit_exceeded": version},
        tokens={"input": 100 * version, "output": 50 * version, "total": 150 * version},
        cost_usd=0.01 * version,
        unpriced_requests=0,
        latency_ms={"min": 10.0, "max": 900.0 + version, "p50": 100.0, "p99": 800.0},
        latency_sketch={"bins": [1, 2, 3], "zero_count": version},
    ).model_dump(mode="json")


def test_out_of_order_aggregate_updates_keep_the_newest_version(
    pipeline: Pipeline, processes: list[subprocess.Popen[bytes]]
) -> None:
    versions = 8
    updates = [aggregate(d, v) for d in range(25) for v in range(1, versions + 1)]
    random.Random(51).shuffle(updates)
    stale = [aggregate(d, v) for d in range(25) for v in (1, versions - 1)]  # re-delivered late
    topic = pipeline.topic(topics.AGGREGATES)
    pipeline.produce(topic, [(u["doc_id"].encode(), orjson.dumps(u)) for u in updates + stale])

    sink = pipeline.start_sink("sink", "--stop-when-idle-s", "3", CALLSTREAM_SINK_BATCH_MAX_DOCS="37")
    processes.append(sink)
    finish(sink, pipeline, "sink")

    stored = pipeline.sources(f"{pipeline.prefix}-aggregates-1h-*")
    assert len(stored) == 25
    for doc in stored:
        assert doc["version"] == versions
        assert doc["requests"] == 10 * versions and doc["errors_by_type"] == {"rate_limit_exceeded": versions}
    newest = aggregate(3, versions)
    got = pipeline.es.get(index=f"{pipeline.prefix}-aggregates-1h-2026.03", id=newest["doc_id"])
    assert got["_version"] == versions and got["_source"] == newest
    assert pipeline.count(f"{pipeline.prefix}-sink-deadletter-*") == 0  # 409 conflicts are success
    assert pipeline.lag(topics.AGGREGATES) == {topics.AGGREGATES: 0}


def test_stream_dead_letters_are_searchable_and_two_processes_share_the_work(
    pipeline: Pipeline, processes: list[subprocess.Popen[bytes]]
) -> None:
    events = enriched_events(4000, seed=61)
    pipeline.produce_events(events, per_message=40)
    letters = [
        dead_letter(
            f"invalid event: duration_ms: must be >= 0 (#{i})",
            "stream.validate",
            {"event_id": f"bad-{i}", "duration_ms": -1},
            source_topic=pipeline.topic(topics.RAW),
            source_partition=i % 3,
            source_offset=100 + i,
            batch_index=i,
            detected_at=datetime(2026, 3, 2, 10, tzinfo=UTC),
        )
        for i in range(30)
    ]
    # Each dead letter twice, as a restarted stream would re-publish them: still one document each.
    pipeline.produce(pipeline.topic(topics.DEADLETTER), [(None, orjson.dumps(x)) for x in letters + letters])

    sinks = [pipeline.start_sink(f"sink{i}", CALLSTREAM_SINK_BATCH_MAX_DOCS="200") for i in range(2)]
    processes.extend(sinks)
    wait_for(lambda: pipeline.count(f"{pipeline.prefix}-calls-*") == len(events), 90, "all events")
    wait_for(
        lambda: (
            pipeline.lag(topics.ENRICHED, topics.DEADLETTER) == {topics.ENRICHED: 0, topics.DEADLETTER: 0}
        ),
        30,
        "all offsets committed",
    )
    for sink in sinks:
        sink.send_signal(signal.SIGTERM)
    for i, sink in enumerate(sinks):
        finish(sink, pipeline, f"sink{i}", timeout_s=60)

    assert set(pipeline.ids(f"{pipeline.prefix}-calls-*")) == {e["event_id"] for e in events}
    stored = pipeline.sources(f"{pipeline.prefix}-deadletter-*")
    assert len(stored) == len(letters)
    assert sorted(s["reason"] for s in stored) == sorted(x["reason"] for x in letters)
    hits = pipeline.es.search(
        index=f"{pipeline.prefix}-deadletter-*", query={"match_phrase": {"original": "bad-7"}}
    )
    assert [h["_source"]["batch_index"] for h in hits["hits"]["hits"]] == [7]
    for i in range(2):
        assert "sink stopped" in pipeline.log_text(f"sink{i}")
