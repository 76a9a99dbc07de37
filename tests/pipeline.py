"""Helpers for tests that run callstream's workers as separate processes against real servers.

Each test gets its own topic prefix, consumer-group ids and index prefix, so tests sharing one
server never see each other's data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from callstream import topics
from callstream.infra.local_servers import free_port
from callstream.infra.processes import start_worker, stop_process
from callstream.infra.setup import create_topics
from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.sinks import index_templates
from callstream.topic_reader import iter_to_end
from tests.backend import Servers
from tests.ground_truth import Expected, compare

REPO = Path(__file__).resolve().parent.parent
HISTORY_MS = 5 * 365 * 86_400_000


@dataclass
class Pipeline:
    servers: Servers
    prefix: str
    partitions: int = 6
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.servers.bootstrap_servers, topic_prefix=self.prefix)

    def topic(self, name: str) -> str:
        return self.kafka.topic(name)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.servers.env())
        env.update(
            {
                "CALLSTREAM_KAFKA_TOPIC_PREFIX": self.prefix,
                "CALLSTREAM_ES_INDEX_PREFIX": self.prefix,
                "CALLSTREAM_STREAM_APP_ID": f"{self.prefix}-stream",
                "CALLSTREAM_STREAM_PARTITIONS": str(self.partitions),
                "CALLSTREAM_SINK_GROUP_ID": f"{self.prefix}-sink",
                "CALLSTREAM_STREAM_DATA_DIR": str((self.log_dir or Path("/tmp")) / "stream-data"),
                # Most tests replay fixed dates from the past (day boundaries, dated prices): accept
                # them. The hostile-input tests run with the default bounds.
                "CALLSTREAM_STREAM_MAX_EVENT_AGE_MS": str(HISTORY_MS),
                # several workers share a host in tests: each serves /metrics on a free port
                "CALLSTREAM_STREAM_METRICS_PORT": "0",
                "CALLSTREAM_SINK_METRICS_PORT": "0",
                "CALLSTREAM_PRODUCER_METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1",
                # the seed traffic's ground truth (tests/ground_truth.py) is the gateway sheet
                "CALLSTREAM_STREAM_PRICE_PROFILE": "gateway",
            }
        )
        env.update(extra)
        return env

    def setup(self) -> None:
        """Its topics, and callstream's index templates for its index prefix: the sink writes into
        indices mapped as in production (a dynamic mapping differs between engines: real
        Elasticsearch maps a JSON number as a 32-bit float and then refuses a larger one)."""
        create_topics(self.kafka, self.partitions)
        es_settings = ElasticsearchSettings(url=self.servers.es_url, index_prefix=self.prefix)
        client = es_settings.client()
        try:
            index_templates.apply(client, es_settings)
        finally:
            client.close()

    def start(self, *args: str, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        """Start `callstream ARGS...` as a separate process; its output goes to a log file."""
        log_dir = self.log_dir or Path("/tmp")
        log_path = log_dir / f"{self.prefix}-{name}-{len(self.processes)}.log"
        process = start_worker(args, self.env(**env), log_path, cwd=REPO)
        process.log_path = log_path  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def start_stream_worker(self, **env: str) -> subprocess.Popen[bytes]:
        return self.start("stream", "--web-port", str(free_port()), name="stream", **env)

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        return stop_process(process, sig, timeout_s)

    def stop_all(self) -> None:
        for process in self.processes:
            self.stop(process)

    def wait_for_aggregates(self, expected: dict[str, Expected], timeout_s: float = 180) -> None:
        """Wait until the newest aggregates equal `expected`; fail with the differences."""
        problems: list[str] = []

        def check() -> bool:
            problems[:] = compare(expected, latest_aggregates(self.kafka))
            return not problems

        wait_for(check, timeout_s, interval_s=2, describe=lambda: "\n".join(problems[:20]) + self.logs())

    def logs(self) -> str:
        out = []
        for process in self.processes:
            path: Path = process.log_path  # type: ignore[attr-defined]
            out.append(f"--- {path} (rc={process.poll()})\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)


def new_pipeline(servers: Servers, tmp_path: Path, partitions: int = 6) -> Pipeline:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    pipeline = Pipeline(servers, prefix, partitions, log_dir=tmp_path)
    pipeline.setup()
    return pipeline


def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 30) -> list[tuple[bytes | None, bytes]]:
    """Every message currently in `topic`, from the beginning of each partition up to its end."""
    return [(m.key(), m.value()) for m in iter_to_end(kafka, topic, timeout_s=timeout_s)]


def latest_aggregates(kafka: KafkaSettings) -> dict[str, dict[str, Any]]:
    """The newest version of every window aggregate published so far."""
    latest: dict[str, dict[str, Any]] = {}
    for _, value in read_topic(kafka, kafka.topic(topics.AGGREGATES)):
        doc = orjson.loads(value)
        current = latest.get(doc["doc_id"])
        if current is None or doc["version"] > current["version"]:
            latest[doc["doc_id"]] = doc
    return latest


def array_items(kafka: KafkaSettings, topic_name: str) -> list[dict[str, Any]]:
    """All items of a topic whose messages are JSON arrays (or single objects)."""
    items: list[dict[str, Any]] = []
    for _, value in read_topic(kafka, kafka.topic(topic_name)):
        doc = orjson.loads(value)
        items.extend(doc if isinstance(doc, list) else [doc])
    return items


def log_events(process: subprocess.Popen[bytes], event: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines for `event` (faust's own lines are not JSON and are skipped)."""
    path: Path = process.log_path  # type: ignore[attr-defined]
    found = []
    for line in path.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            doc = orjson.loads(line[start:])
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            found.append(doc)
    return found


def wait_for(
    condition: Callable[[], Any], timeout_s: float, interval_s: float = 1.0, describe: Callable[[], str] = str
) -> Any:
    """Poll until `condition()` is truthy; returns its value or raises with `describe()`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s: {describe()}")
        time.sleep(interval_s)


def ids(items: Iterable[dict[str, Any]]) -> list[str]:
    return [item["event_id"] for item in items]
