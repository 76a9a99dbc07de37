"""`callstream ingest` (the real command, in a subprocess) on a log mixing valid and hostile lines,
against the local broker: every valid line arrives exactly once on its id's partition, every
hostile one is a dead letter with a reason, ingest exits 0 with its checkpoint at the end, and no
planted secret reaches Kafka, the state directory or the command's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from callstream.infra.setup import create_topics
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_to_end
from callstream.topics import DEADLETTER, RAW, TopicSpec
from tests.hostile import DEAD, EVENT, canaries_in, hostile_lines, valid_gateway_record

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 6


def test_hostile_log_through_the_ingest_command(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    kafka = kafka_settings.model_copy(update={"topic_prefix": f"h{uuid.uuid4().hex[:10]}"})
    create_topics(
        kafka, specs=[TopicSpec(kafka.topic(RAW), PARTITIONS), TopicSpec(kafka.topic(DEADLETTER), 3)]
    )

    hostile = hostile_lines()
    lines: list[tuple[bytes, str, str | None]] = []  # (line, expectation, the id it must arrive under)
    for i in range(300):
        log_id = f"valid-{uuid.uuid4().hex}"
        lines.append((json.dumps(valid_gateway_record(i, log_id=log_id)).encode(), EVENT, log_id))
        if i < len(hostile):
            lines.append((hostile[i].line, hostile[i].expect, hostile[i].event_id))
    log_file = tmp_path / "gateway.log"
    with open(log_file, "wb") as f:
        for line, _, _ in lines:
            f.write(line + b"\n")
    state = tmp_path / "state"
    env = os.environ | {
        "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CALLSTREAM_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "CALLSTREAM_STATE_DIR": str(state),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from callstream.cli import main; main()",
            "ingest",
            str(log_file),
            "--batch-max-events",
            "50",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]

    raw = [
        (message.partition(), event)
        for message in iter_to_end(kafka, kafka.topic(RAW), timeout_s=60)
        for event in orjson.loads(message.value())
    ]
    letter_values = [m.value() for m in iter_to_end(kafka, kafka.topic(DEADLETTER), timeout_s=60)]
    letters = [orjson.loads(value) for value in letter_values]

    counts = Counter(event["event_id"] for _, event in raw)
    assert set(counts.values()) == {1}, "nothing twice"
    for partition, event in raw:
        assert partition == zlib.crc32(event["event_id"].encode()) % PARTITIONS
    dead = Counter(letter["source_line"] for letter in letters)
    assert set(dead.values()) == {1}
    expected_dead = 0
    for number, (line, expect, event_id) in enumerate(lines, start=1):
        if expect == DEAD:
            assert number in dead, line[:100]
            expected_dead += 1
        elif expect == EVENT:
            assert number not in dead, [x["reason"] for x in letters if x["source_line"] == number]
            if event_id is not None:
                assert counts[event_id] == 1, event_id
        else:
            assert (number in dead) != (counts.get(event_id or "", 0) == 1), number
    assert len(raw) + len(letters) == len(lines)  # every line ends up in exactly one place
    assert len(letters) >= expected_dead
    for letter in letters:
        assert letter["stage"] == "ingest" and letter["source_file"] == str(log_file)
        assert letter["reason"].startswith(f"{log_file}:{letter['source_line']}: ")
        assert len(letter["reason"].split(": ", 1)[1]) > 3  # a reason, not an empty string

    checkpoints = list((state / "ingest").glob("checkpoint-*.json"))
    assert len(checkpoints) == 1
    position = json.loads(checkpoints[0].read_text())["files"][str(log_file)]
    assert (position["offset"], position["line"]) == (log_file.stat().st_size, len(lines))

    raw_bytes = b"".join(m.value() for m in iter_to_end(kafka, kafka.topic(RAW), timeout_s=60))
    state_bytes = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    for where, data in (
        ("raw topic", raw_bytes),
        ("dead letters", b"".join(letter_values)),
        ("state directory", state_bytes),
        ("ingest output", output),
    ):
        assert canaries_in(data) == [], where
