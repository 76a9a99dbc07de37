"""The publisher's buffering, packing, splitting, spooling and recovery, against a stand-in for
confluent_kafka.Producer that is faithful to what these paths depend on: it takes `partition=`,
answers `list_topics` with the topic's partitions, refuses a message over `message.max.bytes` in
`produce()` with the real KafkaException, reports the broker's size limit, outages and purges with
the real KafkaError codes, and calls `error_cb` with a fatal KafkaError when asked to. The real
broker is exercised in tests/integration/test_producer_kafka.py."""

from __future__ import annotations

import dataclasses
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from callstream.producers.publisher import KafkaPublisher, PublisherStats, complete_item
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings

KAFKA = KafkaSettings(bootstrap_servers="unused:9092", topic_prefix="t")
RAW, DEADLETTER = "t.calls.raw", "t.calls.deadletter"
CANARY = "sk-proj-CANARY0123456789abcdef"


class FakeBroker:
    """Shared by every producer a publisher creates; `up` switches availability."""

    def __init__(self, partitions: int = 6, max_message_bytes: int = 1_000_000) -> None:
        self.up = True
        self.partitions = partitions
        self.max_message_bytes = max_message_bytes  # the broker's limit (after the client's own)
        self.fatal_next = False  # the next poll reports a fatal error through error_cb
        self.messages: list[tuple[str, int | None, bytes]] = []
        self.producers = 0
        self.lock = threading.Lock()

    def events(self, topic: str = RAW) -> list[dict[str, Any]]:
        with self.lock:
            return [e for t, _, v in self.messages if t == topic for e in orjson.loads(v)]

    def letters(self) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(v) for t, _, v in self.messages if t == DEADLETTER]


class FakeProducer:
    def __init__(self, conf: dict[str, Any], broker: FakeBroker) -> None:
        self.conf = conf
        self.broker = broker
        broker.producers += 1
        self.pending: list[tuple[str, int | None, bytes, Callable[[Any, Any], None]]] = []

    def produce(
        self, topic: str, value: bytes, partition: int | None = None, on_delivery: Any = None
    ) -> None:
        if len(value) > self.conf["message.max.bytes"]:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        assert partition is None or 0 <= partition < self.broker.partitions
        self.pending.append((topic, partition, value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        pending, self.pending = self.pending, []
        if self.broker.fatal_next:
            self.broker.fatal_next = False
            self.conf["error_cb"](KafkaError(KafkaError._FATAL, "idempotence: out of order", fatal=True))
        if not self.broker.up and pending:
            self.conf["error_cb"](KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        for topic, partition, value, callback in pending:
            if not self.broker.up:
                callback(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            elif len(value) > self.broker.max_message_bytes:
                callback(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
            else:
                with self.broker.lock:
                    self.broker.messages.append((topic, partition, value))
                callback(None, None)
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.pending)

    def purge(self, **_: Any) -> None:
        pending, self.pending = self.pending, []
        for *_rest, callback in pending:
            callback(KafkaError(KafkaError._PURGE_QUEUE), None)

    def list_topics(self, topic: str, timeout: float) -> Any:
        if not self.broker.up:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))
        meta = SimpleNamespace(partitions=dict.fromkeys(range(self.broker.partitions)), error=None)
        return SimpleNamespace(topics={topic: meta})


def publisher(broker: FakeBroker, tmp_path: Path, **overrides: Any) -> KafkaPublisher:
    fields: dict[str, Any] = {"spool_dir": tmp_path / "spool", "linger_ms": 5, "spool_retry_interval_ms": 20}
    settings = ProducerSettings(**(fields | overrides))
    return KafkaPublisher(settings, KAFKA, producer_factory=lambda conf: FakeProducer(conf, broker))


def item(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "request_model": "gpt-4.1",
        "duration_ms": 1.0,
        "start_time": 1.7e9 + i,
        "input_tokens": 3,
    } | fields


def partition_of(event_id: str, partitions: int) -> int:
    return zlib.crc32(event_id.encode()) % partitions


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def assert_each_once_on_its_partition(broker: FakeBroker, ids: set[str]) -> None:
    seen: Counter[str] = Counter()
    for topic, partition, value in broker.messages:
        if topic != RAW:
            continue
        for event in orjson.loads(value):
            assert partition == partition_of(event["event_id"], broker.partitions), event["event_id"]
            seen[event["event_id"]] += 1
    assert set(seen) == ids and set(seen.values()) == {1}


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


def test_events_are_packed_per_partition_within_the_limits(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path, batch_max_events=100, batch_max_bytes=5_000)
    for i in range(1_000):
        pub.put(item(i))
    assert pub.flush()
    pub.close()
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(1_000)})
    for _topic, _partition, value in broker.messages:
        assert len(value) <= 5_000 and 1 <= len(orjson.loads(value)) <= 100
    assert len(broker.messages) < 1_000 / 10  # many events per message
    stats = pub.stats()
    assert (stats.recorded, stats.published, stats.spooled, stats.dropped) == (1_000, 1_000, 0, 0)


def test_unavailable_broker_spools_then_drains_onto_the_right_partitions(
    broker: FakeBroker, tmp_path: Path
) -> None:
    broker.up = False
    pub = publisher(broker, tmp_path)
    for i in range(300):
        pub.put(item(i))
    wait_until(lambda: pub.stats().spooled == 300)
    assert broker.messages == [] and not pub.stats().kafka_available
    broker.up = True
    wait_until(lambda: pub.stats().unspooled == 300)
    pub.close()
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(300)})
    assert not any((tmp_path / "spool").iterdir())


def test_events_spooled_at_shutdown_are_delivered_by_the_next_process(
    broker: FakeBroker, tmp_path: Path
) -> None:
    broker.up = False
    first = publisher(broker, tmp_path)
    for i in range(50):
        first.put(item(i))
    first.close(timeout_s=0.1)
    assert first.stats().spooled == 50 and broker.messages == []
    broker.up = True
    second = publisher(broker, tmp_path)
    wait_until(lambda: second.stats().unspooled == 50)
    second.close()
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(50)})


def test_full_queue_spills_redacted_events_to_the_spool(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path, queue_max_events=10, batch_max_events=1_000, linger_ms=60_000)
    for i in range(25):
        pub.put(item(i, error_message=f"upstream said {CANARY}", metadata={"api_key": "plain-key-value"}))
    pub.put(item(99, duration_ms=-1, error_message=CANARY))  # invalid, overflowing too
    stats = pub.stats()
    assert (stats.queue_depth, stats.overflowed, stats.spooled, stats.invalid, stats.recorded) == (
        10,
        16,
        15,
        1,
        26,
    )
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool").iterdir())
    assert b"CANARY" not in spooled and b"plain-key-value" not in spooled and b"e24" in spooled
    pub.close()  # the queue is published and the spilled events drained from the spool
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(25)})
    assert pub.stats().unspooled == 15
    (letter,) = broker.letters()
    assert "duration_ms" in letter["reason"] and "CANARY" not in str(letter)


def test_invalid_events_go_to_the_dead_letter_topic_redacted(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path)
    pub.put(item(1))
    pub.put(
        item(
            2,
            duration_ms=-3,
            error_message="key sk-live-abcdef123456",
            metadata={"x-api-key": "plainvalue1", "nested": {"client_secret": "plainvalue2"}},
            request_body="the prompt",
            _deferred=lambda i: None,
        )
    )
    assert pub.flush()
    pub.close()
    assert [e["event_id"] for e in broker.events()] == ["e1"]
    (letter,) = broker.letters()
    assert letter["stage"] == "producer" and "duration_ms" in letter["reason"]
    for leaked in ("sk-live-abcdef123456", "plainvalue1", "plainvalue2", "the prompt", "_deferred"):
        assert leaked not in str(letter)
    assert pub.stats().invalid == 1


def test_dead_letters_made_while_kafka_is_down_arrive_once_it_is_back(
    broker: FakeBroker, tmp_path: Path
) -> None:
    broker.up = False
    pub = publisher(broker, tmp_path)
    for i in range(7):
        pub.put(item(i, cache_read_input_tokens=50))  # more cached than input tokens: invalid
    for i in range(7, 10):
        pub.put(item(i))
    wait_until(lambda: pub.stats().invalid == 7 and pub.stats().spooled == 3)
    broker.up = True
    wait_until(lambda: len(broker.letters()) == 7 and pub.stats().unspooled == 3)
    pub.close()
    assert len(broker.letters()) == 7
    assert_each_once_on_its_partition(broker, {"e7", "e8", "e9"})


def test_a_message_the_broker_refuses_for_its_size_is_split(tmp_path: Path) -> None:
    broker = FakeBroker(max_message_bytes=20_000)
    pub = publisher(
        broker,
        tmp_path,
        batch_max_events=500,
        batch_max_bytes=100_000,
        metadata_value_max_chars=8_000,
        metadata_max_bytes=40_000,
    )
    for i in range(300):
        pub.put(item(i))
    pub.put(item(999, metadata={f"blob{k}": "z" * 8_000 for k in range(4)}))  # alone over the limit
    assert pub.flush()
    pub.close()
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(300)})
    assert all(len(v) <= 20_000 for t, _, v in broker.messages if t == RAW)
    (letter,) = broker.letters()  # the one event too large for any message
    assert letter["reason"].startswith("event too large for Kafka") and '"e999"' in letter["original"]
    stats = pub.stats()
    assert (stats.published, stats.invalid, stats.dropped) == (300, 1, 0)


def test_a_message_over_the_clients_limit_is_split_before_sending(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(
        broker, tmp_path, batch_max_bytes=200_000, librdkafka_overrides={"message.max.bytes": 4_000}
    )
    for i in range(300):
        pub.put(item(i))
    assert pub.flush()
    pub.close()
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(300)})
    assert max(len(v) for _, _, v in broker.messages) <= 4_000
    assert pub.stats().published == 300


def test_a_fatal_error_replaces_the_producer_without_losing_events(
    broker: FakeBroker, tmp_path: Path
) -> None:
    pub = publisher(broker, tmp_path)
    for i in range(100):
        pub.put(item(i))
    assert pub.flush()
    broker.fatal_next = True
    wait_until(lambda: broker.producers == 2)
    for i in range(100, 200):
        pub.put(item(i))
    assert pub.flush()
    pub.close()
    assert broker.producers == 2
    assert_each_once_on_its_partition(broker, {f"e{i}" for i in range(200)})


def test_spool_full_counts_dropped_events(broker: FakeBroker, tmp_path: Path) -> None:
    broker.up = False
    pub = publisher(broker, tmp_path, spool_max_bytes=0)
    for i in range(20):
        pub.put(item(i))
    pub.close(timeout_s=0.1)
    assert pub.stats().dropped == 20


def test_put_never_raises_after_close(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path)
    pub.close()
    pub.put(item(1))
    assert pub.stats().spooled == 1


def test_produce_errors_are_logged_scrubbed(
    broker: FakeBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(FakeProducer):
        def produce(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError(f"cannot reach kafka://svc:hunter2@broker:9092 with {CANARY}")

    pub = KafkaPublisher(
        ProducerSettings(spool_dir=tmp_path / "spool", linger_ms=5),
        KAFKA,
        producer_factory=lambda conf: Broken(conf, broker),
    )
    pub.put(item(1))
    assert pub.flush()
    pub.close(timeout_s=0.1)
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert "produce failed" in err and "hunter2" not in err and "CANARY" not in err
    stats = pub.stats()
    assert (stats.published, stats.dropped) == (0, 0) and stats.spooled >= 1 and stats.spool_bytes > 0
    assert stats.delivery_failures <= 3  # paced by the spool's probe, not a hot retry loop


# ---- missing usage ----


@pytest.mark.parametrize(
    ("fields", "usage"),
    [
        ({}, "missing"),  # a success that reported no token count
        ({"input_tokens": 0, "output_tokens": 0}, None),  # reported zeros are reported
        ({"output_tokens": 5}, None),
        ({"error_type": "timeout"}, None),  # a failed call costs nothing: its usage is not missing
        ({"usage": "reported"}, "reported"),  # the caller's word stands
        ({"_deferred": lambda i: i.update(input_tokens=4)}, None),  # usage read off the caller's thread
        ({"_deferred": lambda i: i.update(usage="missing", input_tokens=4)}, "missing"),
    ],
)
def test_usage_missing_when_a_success_reported_no_tokens(fields: dict[str, Any], usage: str | None) -> None:
    done = complete_item({"request_model": "m", "status_code": 200} | fields)
    assert done.get("usage") == usage


def test_stats_shape() -> None:
    fields = {f.name for f in dataclasses.fields(PublisherStats)}
    assert {"published", "delivery_failures", "spooled", "unspooled", "dropped", "invalid"} <= fields
