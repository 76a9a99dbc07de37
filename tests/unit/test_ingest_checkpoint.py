"""Ingest without a broker: the checkpoint moves only past acknowledged lines, every line becomes an
event (on its id's partition) or a dead letter. The stand-in producer takes `partition=` and
answers `list_topics` with the topic's partitions, as confluent_kafka's does."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from callstream.producers.ingest import Ingestor
from callstream.settings import KafkaSettings

KAFKA = KafkaSettings(bootstrap_servers="unused:9092", topic_prefix="t")


PARTITIONS = 4


class FlakyProducer:
    """Fails every delivery while `up` is False; records what it delivered."""

    def __init__(self) -> None:
        self.up = True
        self.hold = False  # keep delivery reports back (to acknowledge by hand)
        self.pending: list[tuple[str, bytes, int, int | None, Callable[[Any, Any], None]]] = []
        self.delivered: list[tuple[str, bytes, int]] = []
        self.partitions: list[int | None] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        timestamp: int = 0,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        assert on_delivery is not None and (partition is None or 0 <= partition < PARTITIONS)
        self.pending.append((topic, value, timestamp, partition, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if self.hold:
            return 0
        pending, self.pending = self.pending, []
        for topic, value, timestamp, partition, callback in pending:
            if self.up:
                self.delivered.append((topic, value, timestamp))
                self.partitions.append(partition)
                callback(None, None)
            else:
                callback("_MSG_TIMED_OUT", None)
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        return self.poll()

    def list_topics(self, topic: str, timeout: float) -> Any:
        meta = SimpleNamespace(partitions=dict.fromkeys(range(PARTITIONS)), error=None)
        return SimpleNamespace(topics={topic: meta})

    def raw(self) -> list[tuple[int | None, dict[str, Any]]]:
        return [
            (partition, event)
            for (topic, value, _), partition in zip(self.delivered, self.partitions, strict=True)
            if topic == "t.calls.raw"
            for event in orjson.loads(value)
        ]

    def letters(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for topic, value, _ in self.delivered if topic == "t.calls.deadletter"]


def line(i: int) -> str:
    return json.dumps(
        {"event_id": f"e{i}", "event_time": "2025-03-01T12:00:00Z", "request_model": "m", "duration_ms": 1}
    )


def checkpoint_line(path: Path, log_file: Path) -> int | None:
    if not path.exists():
        return None
    return json.loads(path.read_text())["files"].get(str(log_file), {}).get("line")


def test_no_acknowledgement_no_checkpoint(tmp_path: Path) -> None:
    log_file = tmp_path / "calls.jsonl"
    log_file.write_text("\n".join(line(i) for i in range(10)) + "\n")
    producer = FlakyProducer()
    producer.up = False
    ingestor = Ingestor(
        [log_file], tmp_path / "cp.json", KAFKA, batch_max_events=4, poll_interval_s=0.01,
        producer_factory=lambda conf: producer,
    )  # fmt: skip
    stats = ingestor.run(finish_timeout_s=0.3)
    assert stats.unacknowledged >= 3 and stats.delivery_failures >= 3
    assert checkpoint_line(tmp_path / "cp.json", log_file) is None

    producer = FlakyProducer()  # a restart (new process) with Kafka back: everything is sent, once
    again = Ingestor(
        [log_file], tmp_path / "cp.json", KAFKA, batch_max_events=4, producer_factory=lambda c: producer
    )
    stats = again.run()
    assert stats.unacknowledged == 0 and checkpoint_line(tmp_path / "cp.json", log_file) == 10
    ids = [event["event_id"] for _, event in producer.raw()]
    assert sorted(ids) == sorted(f"e{i}" for i in range(10))
    for partition, event in producer.raw():  # on the partition of its id, like the publisher's
        assert partition == zlib.crc32(event["event_id"].encode()) % PARTITIONS
    assert all(timestamp > 1_700_000_000_000 for _, _, timestamp in producer.delivered)  # ingestion time


def test_checkpoint_waits_for_earlier_units(tmp_path: Path) -> None:
    log_file = tmp_path / "calls.jsonl"
    log_file.write_text("\n".join(line(i) for i in range(8)) + "\n")
    producer = FlakyProducer()
    ingestor = Ingestor(
        [log_file], tmp_path / "cp.json", KAFKA, batch_max_events=4, producer_factory=lambda c: producer
    )
    tailer = ingestor.tailers[0]
    ingestor._ingest(tailer.key, tailer.read(8))
    ingestor._close_unit()
    first, second = ingestor._units
    assert first.outstanding >= 1 and second.outstanding >= 1
    producer.hold = True
    for _ in range(second.outstanding):  # the second unit is acknowledged first
        producer.pending.pop()[4](None, None)
    ingestor._service()
    assert ingestor.checkpoint.positions == {}  # line 8 is acknowledged, lines 1-4 are not yet
    producer.hold = False
    ingestor._service()
    assert ingestor.checkpoint.positions[str(log_file)].line == 8
