"""`callstream ingest` against a real broker: exact events, dead letters, resume, rotation, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callstream.producers.ingest import Ingestor
from callstream.settings import KafkaSettings
from callstream.streams.contract import DeadLetter
from callstream.topic_reader import reader_consumer
from callstream.topics import DEADLETTER
from tests.integration.test_producer_kafka import consume_raw

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODELS = ["gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash", "deepseek-v3.2"]


def gateway_line(i: int, when: datetime) -> dict[str, Any]:
    """A record exactly as an LLM gateway client writes it (one per line)."""
    status = [200, 200, 200, 429, 500, 401][i % 6]
    ok = status == 200
    return {
        "log_id": str(uuid.uuid4()),
        "timestamp": when.replace(tzinfo=None).isoformat() + "Z",
        "model": MODELS[i % 4],
        "endpoint": "https://api.holysheep.ai/v1/chat/completions",
        "request_tokens": 100 + i if ok else 0,
        "response_tokens": 10 + i % 7 if ok else 0,
        "total_tokens": 110 + i + i % 7 if ok else 0,
        "response_time_ms": round(200.0 + i * 1.5, 2),
        "status_code": status,
        "error_message": None if ok else f"upstream said {status}",
        "cost_usd": 0.0001 * i if ok else 0.0,
        "session_id": "session-1",
        "user_id": f"user-{i % 3}" if i % 5 else None,
        "metadata": {"source": "elk-integration-test", "client_ip": f"10.0.0.{i % 250}"},
    }


def write_lines(path: Path, docs: list[dict[str, Any]] | list[str]) -> None:
    with open(path, "a") as f:
        for doc in docs:
            f.write((doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False)) + "\n")


def consume_dead_letters(
    kafka: KafkaSettings, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    consumer = reader_consumer(kafka)
    consumer.subscribe([kafka.topic(DEADLETTER)])
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not done(letters):
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                letters.append(json.loads(message.value()))
    finally:
        consumer.close()
    return letters


def raw_events_with_ids(kafka: KafkaSettings, ids: set[str]) -> Counter[str]:
    events = consume_raw(kafka, lambda evs: ids <= {e["event_id"] for e in evs})
    return Counter(e["event_id"] for e in events if e["event_id"] in ids)


def test_gateway_log_with_bad_lines(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    log_file = tmp_path / "api_requests.log"
    start = datetime.now(UTC) - timedelta(days=40)  # older than default retention: message time = now
    docs = [gateway_line(i, start + timedelta(seconds=i)) for i in range(1_200)]
    write_lines(log_file, docs[:600])
    bad = ["{not json", json.dumps(gateway_line(0, start) | {"model": ""}), "[1, 2]", json.dumps({"x": 1})]
    write_lines(log_file, bad)
    write_lines(log_file, [""])  # blank lines are skipped, not errors
    write_lines(log_file, docs[600:])

    ingestor = Ingestor([log_file], tmp_path / "cp.json", kafka_settings, batch_max_events=500)
    stats = ingestor.run()
    assert (stats.lines, stats.events, stats.bad_lines, stats.unacknowledged) == (1_205, 1_200, 4, 0)
    assert stats.messages >= 3 and stats.dead_letters == 4  # 3 units of 500 lines, a message per partition

    counts = raw_events_with_ids(kafka_settings, {d["log_id"] for d in docs})
    assert set(counts) == {d["log_id"] for d in docs} and set(counts.values()) == {1}

    events = {e["event_id"]: e for e in consume_raw(kafka_settings, lambda evs: False, timeout_s=3)}
    for doc in docs[:50]:
        event = events[doc["log_id"]]
        assert (event["request_model"], event.get("input_tokens", 0)) == (doc["model"], doc["request_tokens"])
        assert event["status_code"] == doc["status_code"]
        assert event.get("reported_cost_usd", 0.0) == pytest.approx(doc["cost_usd"])
        assert event["metadata"]["client_ip"] == doc["metadata"]["client_ip"]

    letters = consume_dead_letters(
        kafka_settings, lambda ls: sum(str(log_file) in letter["reason"] for letter in ls) >= 4
    )
    mine = sorted(
        (letter for letter in letters if str(log_file) in letter["reason"]), key=lambda x: x["reason"]
    )
    assert [letter["reason"].split(": ")[0] for letter in mine] == [
        f"{log_file}:{n}" for n in (601, 602, 603, 604)
    ]
    assert [letter["source_line"] for letter in mine] == [601, 602, 603, 604]
    assert {letter["source_file"] for letter in mine} == {str(log_file)}
    assert mine[0]["reason"].split(": ", 1)[1] == "not JSON (at character 1)"
    # Lines with nothing to redact stay exact; an object keeps only the contract's fields and names
    # the rest as dropped.
    assert [letter["original"] for letter in mine] == [*bad[:3], '{"callstream.dropped":["x"]}']
    for letter in mine:
        assert DeadLetter.model_validate(letter).stage == "ingest"

    checkpoint = json.loads((tmp_path / "cp.json").read_text())["files"][str(log_file)]
    assert (checkpoint["offset"], checkpoint["line"]) == (log_file.stat().st_size, 1_205)


@pytest.mark.smoke  # also run on the embedded engine in CI
def test_restart_resumes_with_no_gap_and_no_duplicate(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    log_file = tmp_path / "api.log"
    now = datetime.now(UTC)
    docs = [gateway_line(i, now) for i in range(900)]
    write_lines(log_file, docs[:400])
    assert Ingestor([log_file], tmp_path / "cp.json", kafka_settings).run().events == 400
    write_lines(log_file, docs[400:])
    assert Ingestor([log_file], tmp_path / "cp.json", kafka_settings).run().events == 500
    assert Ingestor([log_file], tmp_path / "cp.json", kafka_settings).run().events == 0
    counts = raw_events_with_ids(kafka_settings, {d["log_id"] for d in docs})
    assert len(counts) == 900 and set(counts.values()) == {1}


def test_follow_across_rotation(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    log_file = tmp_path / "api.log"
    now = datetime.now(UTC)
    docs = [gateway_line(i, now) for i in range(300)]
    write_lines(log_file, docs[:100])
    ingestor = Ingestor([log_file], tmp_path / "cp.json", kafka_settings, follow=True, poll_interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=ingestor.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while ingestor.stats.events < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        write_lines(log_file, docs[100:150])
        os.rename(log_file, tmp_path / "api.log.1")  # logrotate: rename, then a new file
        write_lines(log_file, docs[150:300])
        while ingestor.stats.events < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert ingestor.stats.events == 300 and ingestor.stats.unacknowledged == 0
    counts = raw_events_with_ids(kafka_settings, {d["log_id"] for d in docs})
    assert len(counts) == 300 and set(counts.values()) == {1}
    checkpoint = json.loads((tmp_path / "cp.json").read_text())["files"][str(log_file)]
    assert (checkpoint["inode"], checkpoint["offset"]) == (log_file.stat().st_ino, log_file.stat().st_size)


def test_cli_follow_stops_cleanly_on_sigterm_and_resumes(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    log_file = tmp_path / "api.log"
    checkpoint = tmp_path / "cp.json"
    now = datetime.now(UTC)
    docs = [gateway_line(i, now) for i in range(200)]
    write_lines(log_file, docs[:120])
    command = [
        sys.executable, "-c", "from callstream.cli import main; main()",
        "ingest", str(log_file), "--follow", "--checkpoint", str(checkpoint),
    ]  # fmt: skip
    env = os.environ | {"CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (
                checkpoint.exists()
                and json.loads(checkpoint.read_text())["files"].get(str(log_file), {}).get("line") == 120
            ):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    write_lines(log_file, docs[120:])
    result = subprocess.run(
        [*command[:-3], "--checkpoint", str(checkpoint)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts = raw_events_with_ids(kafka_settings, {d["log_id"] for d in docs})
    assert len(counts) == 200 and set(counts.values()) == {1}
