"""Hostile calls through a CallRecorder publishing to the local broker: every valid one arrives
exactly once on its id's partition, every invalid one is a dead letter, and no planted secret
reaches Kafka, the spool or the process's output."""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from callstream.infra.setup import create_topics
from callstream.producers.recorder import CallRecorder
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_to_end
from callstream.topics import DEADLETTER, RAW, TopicSpec
from tests.hostile import DEAD, EVENT, canaries_in, hostile_events

pytestmark = pytest.mark.integration

PARTITIONS = 6


def test_hostile_calls_through_the_recorder(
    kafka_settings: KafkaSettings, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    kafka = kafka_settings.model_copy(update={"topic_prefix": f"r{uuid.uuid4().hex[:10]}"})
    create_topics(
        kafka, specs=[TopicSpec(kafka.topic(RAW), PARTITIONS), TopicSpec(kafka.topic(DEADLETTER), 3)]
    )
    spool = tmp_path / "spool"
    # a small queue: part of the hostile traffic takes the overflow path (prepared on the caller's thread)
    settings = ProducerSettings(spool_dir=spool, queue_max_events=20, linger_ms=50, metadata_max_bytes=8_192)
    recorder = CallRecorder(settings=settings, kafka=kafka)
    cases = hostile_events()
    ids: list[str] = []
    for case in cases:
        ids.append(recorder.record(**dict(case.item)))
    assert recorder.flush(120)
    recorder.close()
    stats = recorder.stats()

    raw = [
        (message.partition(), event)
        for message in iter_to_end(kafka, kafka.topic(RAW), timeout_s=60)
        for event in orjson.loads(message.value())
    ]
    letter_values = [m.value() for m in iter_to_end(kafka, kafka.topic(DEADLETTER), timeout_s=60)]
    counts = Counter(event["event_id"] for _, event in raw)
    assert set(counts.values()) == {1}
    for partition, event in raw:
        assert partition == zlib.crc32(event["event_id"].encode()) % PARTITIONS
    letter_text = [orjson.loads(value)["original"] for value in letter_values]
    for case, event_id in zip(cases, ids, strict=True):
        arrived = counts.get(event_id, 0) == 1
        lettered = sum(f'"{event_id}"' in text for text in letter_text)
        if case.expect == EVENT:
            assert arrived and lettered == 0, case.name
        elif case.expect == DEAD:
            assert not arrived and lettered == 1, case.name
        else:
            assert arrived != (lettered == 1), case.name
    assert len(raw) + len(letter_values) == len(cases)
    assert (stats.published, stats.invalid, stats.dropped) == (len(raw), len(letter_values), 0)
    assert stats.overflowed > 0  # the caller-side spool path ran too

    by_id = {event["event_id"]: event for _, event in raw}
    big = by_id[ids[[c.name for c in cases].index("10^9 tokens #0")]]
    assert (big["input_tokens"], big["output_tokens"]) == (10**9, 10**9)
    deep = by_id[ids[[c.name for c in cases].index("metadata 1000 deep")]]
    assert "[nested deeper than 8 levels]" in deep["metadata"].values()

    raw_bytes = b"".join(m.value() for m in iter_to_end(kafka, kafka.topic(RAW), timeout_s=60))
    spool_bytes = b"".join(p.read_bytes() for p in spool.rglob("*") if p.is_file())
    out = capfd.readouterr()
    for where, data in (
        ("raw topic", raw_bytes),
        ("dead letters", b"".join(letter_values)),
        ("spool", spool_bytes),
        ("output", (out.out + out.err).encode()),
    ):
        assert canaries_in(data) == [], where
