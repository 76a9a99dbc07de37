"""`callstream read TOPIC`: what a newcomer uses to see what arrived on a topic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from callstream import topics
from callstream.infra.local_servers import LocalServers
from tests.pipeline import REPO, new_pipeline

pytestmark = pytest.mark.integration


def test_read_prints_messages_as_json_lines(servers: LocalServers, tmp_path: Path) -> None:
    pipeline = new_pipeline(servers, tmp_path, partitions=1)
    from confluent_kafka import Producer

    producer = Producer(pipeline.kafka.confluent_config())
    for value in (b'{"n": 1}', b'{"n": 2}', b"not json"):
        producer.produce(pipeline.topic(topics.RAW), value)
    assert producer.flush(30) == 0
    result = subprocess.run(
        [sys.executable, "-m", "callstream.cli", "read", topics.RAW, "--max", "0"],
        env=pipeline.env(),
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=True,
    )
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(x["partition"], x["offset"], x["value"]) for x in lines] == [
        (0, 0, {"n": 1}),
        (0, 1, {"n": 2}),
        (0, 2, "not json"),
    ]
