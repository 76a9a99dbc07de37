"""The publisher's buffering, batching and spooling logic, against an in-memory stand-in for
confluent_kafka.Producer (the real broker is exercised in tests/integration)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from callstream.producers.publisher import KafkaPublisher
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings

KAFKA = KafkaSettings(bootstrap_servers="unused:9092", topic_prefix="t")


class FakeError:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def fatal(self) -> bool:
        return False

    def __str__(self) -> str:
        return self._name


class FakeBroker:
    """Shared by every producer a publisher creates; `up` switches availability."""

    def __init__(self) -> None:
        self.up = True
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def events(self, topic: str = "t.calls.raw") -> list[dict[str, Any]]:
        with self.lock:
            return [e for t, v in self.messages if t == topic for e in orjson.loads(v)]


class FakeProducer:
    def __init__(self, conf: dict[str, Any], broker: FakeBroker) -> None:
        self.conf = conf
        self.broker = broker
        self.pending: list[tuple[str, bytes, Callable[[Any, Any], None]]] = []

    def produce(self, topic: str, value: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        assert len(value) <= self.conf["message.max.bytes"]
        self.pending.append((topic, value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        pending, self.pending = self.pending, []
        if not self.broker.up and pending:
            self.conf["error_cb"](FakeError("_ALL_BROKERS_DOWN"))
        for topic, value, callback in pending:
            if self.broker.up:
                with self.broker.lock:
                    self.broker.messages.append((topic, value))
                callback(None, None)
            else:
                callback(FakeError("_MSG_TIMED_OUT"), None)
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.pending)

    def purge(self, **_: Any) -> None:
        pending, self.pending = self.pending, []
        for _topic, _value, callback in pending:
            callback(FakeError("_PURGE_QUEUE"), None)

    def list_topics(self, topic: str, timeout: float) -> None:
        if not self.broker.up:
            raise RuntimeError("all brokers down")


def publisher(broker: FakeBroker, tmp_path: Path, **overrides: Any) -> KafkaPublisher:
    fields: dict[str, Any] = {"spool_dir": tmp_path / "spool", "linger_ms": 5, "spool_retry_interval_ms": 20}
    settings = ProducerSettings(**(fields | overrides))
    return KafkaPublisher(settings, KAFKA, producer_factory=lambda conf: FakeProducer(conf, broker))


def item(i: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "request_model": "gpt-4.1", "duration_ms": 1.0, "start_time": 1.7e9 + i}


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


def test_events_are_packed_into_json_arrays_within_the_limits(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path, batch_max_events=100, batch_max_bytes=5_000)
    for i in range(1_000):
        pub.put(item(i))
    assert pub.flush()
    pub.close()
    assert sorted(e["event_id"] for e in broker.events()) == sorted(f"e{i}" for i in range(1_000))
    for _topic, value in broker.messages:
        assert len(value) <= 5_000 and 1 <= len(orjson.loads(value)) <= 100
    assert len(broker.messages) < 1_000 / 10  # many events per message
    stats = pub.stats()
    assert (stats.recorded, stats.published, stats.spooled, stats.dropped) == (1_000, 1_000, 0, 0)


def test_unavailable_broker_spools_then_drains(broker: FakeBroker, tmp_path: Path) -> None:
    broker.up = False
    pub = publisher(broker, tmp_path)
    for i in range(300):
        pub.put(item(i))
    wait_until(lambda: pub.stats().spooled == 300)
    assert broker.messages == [] and not pub.stats().kafka_available
    assert pub.stats().delivery_failures >= 1
    broker.up = True
    wait_until(lambda: pub.stats().unspooled == 300)
    pub.close()
    ids = [e["event_id"] for e in broker.events()]
    assert sorted(ids) == sorted(f"e{i}" for i in range(300))  # each exactly once
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
    assert sorted(e["event_id"] for e in broker.events()) == sorted(f"e{i}" for i in range(50))


def test_full_queue_spills_to_the_spool_on_the_callers_thread(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path, queue_max_events=10, batch_max_events=1_000, linger_ms=60_000)
    for i in range(25):
        pub.put(item(i))
    stats = pub.stats()
    assert (stats.queue_depth, stats.overflowed, stats.spooled, stats.recorded) == (10, 15, 15, 25)
    pub.close()  # the queue is published and the spilled events drained from the spool
    assert sorted(e["event_id"] for e in broker.events()) == sorted(f"e{i}" for i in range(25))
    assert pub.stats().unspooled == 15


def test_invalid_events_go_to_the_dead_letter_topic(broker: FakeBroker, tmp_path: Path) -> None:
    pub = publisher(broker, tmp_path)
    pub.put(item(1))
    pub.put(item(2) | {"duration_ms": -3, "error_message": "key sk-live-abcdef123456"})
    assert pub.flush()
    pub.close()
    assert [e["event_id"] for e in broker.events()] == ["e1"]
    letters = [orjson.loads(v) for t, v in broker.messages if t == "t.calls.deadletter"]
    assert len(letters) == 1 and letters[0]["stage"] == "producer"
    assert "duration_ms" in letters[0]["reason"]
    assert "sk-live-abcdef123456" not in str(letters[0])
    assert pub.stats().invalid == 1


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
