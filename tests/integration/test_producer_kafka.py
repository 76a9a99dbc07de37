"""Recorded calls reach the raw topic, also across a broker outage and a process restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callstream.infra import local_servers
from callstream.infra.setup import create_topics
from callstream.producers.contract import decode_events
from callstream.producers.openai_instrumentation import instrument_openai
from callstream.producers.recorder import CallRecorder
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings
from callstream.topic_reader import reader_consumer
from callstream.topics import RAW
from tests.integration.gateway import RESPONSE_SUFFIX, USAGE, Gateway

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def consume_raw(
    kafka: KafkaSettings, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Every event in the raw topic (from the beginning) until `done(events)` or the timeout."""
    consumer = reader_consumer(kafka)
    consumer.subscribe([kafka.topic(RAW)])
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(events):
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            valid, rejected = decode_events(message.value())
            assert rejected == []
            events += [e.to_wire() for e in valid]
    finally:
        consumer.close()
    return events


def test_openai_calls_arrive_in_the_raw_topic(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    run = uuid.uuid4().hex
    recorder = CallRecorder(settings=ProducerSettings(spool_dir=tmp_path / "spool"), kafka=kafka_settings)
    try:
        with Gateway() as gateway:
            client = instrument_openai(
                openai.OpenAI(
                    api_key="sk-kafka-test-000000", base_url=gateway.base_url, max_retries=0, timeout=1.5
                ),
                recorder,
                metadata={"run": run},
            )
            messages = [{"role": "user", "content": "hi"}]
            client.chat.completions.create(model="gpt-4.1", messages=messages)
            for _ in client.chat.completions.create(
                model="deepseek-v3.2", messages=messages, stream=True, stream_options={"include_usage": True}
            ):
                pass
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="rate-limit", messages=messages)
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="slow", messages=messages)
        assert recorder.flush(20)
    finally:
        recorder.close()
    stats = recorder.stats()
    assert (stats.recorded, stats.published, stats.spooled, stats.invalid, stats.dropped) == (4, 4, 0, 0, 0)

    events = consume_raw(
        kafka_settings, lambda evs: sum(e.get("metadata", {}).get("run") == run for e in evs) >= 4
    )
    mine = {e["request_model"]: e for e in events if e.get("metadata", {}).get("run") == run}
    assert sorted(mine) == ["deepseek-v3.2", "gpt-4.1", "rate-limit", "slow"]
    assert len([e for e in events if e.get("metadata", {}).get("run") == run]) == 4
    for model in ("gpt-4.1", "deepseek-v3.2"):
        assert mine[model]["response_model"] == model + RESPONSE_SUFFIX
        assert (mine[model]["input_tokens"], mine[model]["output_tokens"]) == (
            USAGE["prompt_tokens"],
            USAGE["completion_tokens"],
        )
    assert mine["deepseek-v3.2"]["streamed"] is True
    assert (mine["rate-limit"]["status_code"], mine["rate-limit"]["error_type"]) == (429, "RateLimitError")
    assert mine["slow"]["error_type"] == "timeout" and "status_code" not in mine["slow"]


# ---- broker outage and process restart ----

RECORD_WHILE_DOWN = """
import dataclasses, json, sys
from callstream.producers.recorder import CallRecorder
n, run, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
recorder = CallRecorder()
ids = [recorder.record("gpt-4.1", 100.0 + i, input_tokens=i, output_tokens=1, metadata={"run": run})
       for i in range(n)]
recorder.close()
json.dump({"ids": ids, "stats": dataclasses.asdict(recorder.stats())}, open(out, "w"))
"""

DRAIN_AFTER_RESTART = """
import dataclasses, json, sys, time
from callstream.producers.recorder import CallRecorder
n, out = int(sys.argv[1]), sys.argv[2]
recorder = CallRecorder()
deadline = time.monotonic() + 60
while recorder.stats().unspooled < n and time.monotonic() < deadline:
    time.sleep(0.05)
recorder.close()
json.dump({"stats": dataclasses.asdict(recorder.stats())}, open(out, "w"))
"""


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[local_servers.LocalServers]:
    """A broker of this test's own: it is stopped and restarted, which must not disturb other tests."""
    srv = local_servers.up(
        tmp_path / "noida",
        kafka_port=local_servers.free_port(),
        es_port=local_servers.free_port(),
        fresh=True,
    )
    try:
        create_topics(KafkaSettings(bootstrap_servers=srv.bootstrap_servers), partitions=3)
        yield srv
    finally:
        local_servers.down(srv.data_dir)


def run_worker(code: str, args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_spooled_calls_survive_broker_outage_and_restart(
    own_servers: local_servers.LocalServers, tmp_path: Path
) -> None:
    n = 500
    kafka = KafkaSettings(bootstrap_servers=own_servers.bootstrap_servers)
    spool_dir = tmp_path / "spool"
    env = {
        "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": own_servers.bootstrap_servers,
        "CALLSTREAM_PRODUCER_SPOOL_DIR": str(spool_dir),
        "CALLSTREAM_PRODUCER_CLOSE_TIMEOUT_MS": "3000",
        "CALLSTREAM_PRODUCER_SPOOL_RETRY_INTERVAL_MS": "200",
    }

    # Data written before the outage must still be there after it (the emulator keeps topic data).
    before = CallRecorder(settings=ProducerSettings(spool_dir=tmp_path / "before"), kafka=kafka)
    before_ids = {before.record("gpt-4.1", 5.0, metadata={"run": "before"}) for _ in range(20)}
    assert before.flush(20)
    before.close()
    assert before.stats().published == 20

    local_servers.stop_service("kafka", own_servers.data_dir)
    try:
        run = uuid.uuid4().hex
        run_worker(RECORD_WHILE_DOWN, [str(n), run, str(tmp_path / "first.json")], env)
    finally:
        local_servers.start_service("kafka", own_servers.data_dir)
    first = json.loads((tmp_path / "first.json").read_text())
    assert len(set(first["ids"])) == n
    assert (first["stats"]["published"], first["stats"]["spooled"], first["stats"]["dropped"]) == (0, n, 0)
    assert any(spool_dir.iterdir()), "the first process left its events in the spool"

    run_worker(DRAIN_AFTER_RESTART, [str(n), str(tmp_path / "second.json")], env)
    second = json.loads((tmp_path / "second.json").read_text())["stats"]
    assert (second["unspooled"], second["published"], second["dropped"], second["invalid"]) == (n, n, 0, 0)
    assert not any(p.suffix in (".seg", ".open") for p in spool_dir.iterdir()), "spool drained"

    wanted = set(first["ids"]) | before_ids
    events = consume_raw(kafka, lambda evs: wanted <= {e["event_id"] for e in evs})
    counts = Counter(e["event_id"] for e in events if e.get("metadata", {}).get("run") == run)
    assert set(counts) == set(first["ids"])  # exactly the N recorded events ...
    assert set(counts.values()) == {1}  # ... each exactly once
    by_id = {e["event_id"]: e for e in events}
    for i, event_id in enumerate(first["ids"]):
        assert (by_id[event_id]["duration_ms"], by_id[event_id].get("input_tokens", 0)) == (100.0 + i, i)
    assert before_ids <= set(by_id)
