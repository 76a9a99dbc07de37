"""Failures survived under steady load, on the real engines: a Kafka broker SIGKILLed out of a
three-broker cluster, and a stream worker SIGKILLed while input keeps arriving.

Both run producers (acks=all, idempotent), stream and sink workers as separate processes, and then
check Elasticsearch against ground truth computed from the generated input: every event indexed
exactly once, every window aggregate exact, and no worker exited (none needed a restart). Each
also measures the time to recover: from the SIGKILL until, for every raw partition, an event
published after the kill is searchable (with an explicit refresh, so the index's refresh interval
is not counted), measured the same way just before the kill as a baseline (the pipeline's own
latency under this load on this machine). The figures are printed and recorded as test properties.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from elasticsearch import ApiError, Elasticsearch, helpers

from callstream import topics
from callstream.infra import real_engines
from callstream.infra.local_servers import GROUP_EVICTION, KAFKA_CLUSTER, LocalServers
from callstream.producers import synthetic
from callstream.producers.contract import RawCallEvent, partition_for_event_id
from callstream.producers.loadgen import publish
from callstream.settings import ElasticsearchSettings
from tests.ground_truth import compare, expected_windows
from tests.pipeline import Pipeline, new_pipeline, wait_for

pytestmark = pytest.mark.integration

# A short session timeout lets the broker evict a SIGKILLed stream worker in seconds (faust's
# default is 60 s); faust reads these from the environment.
FAST_EVICTION = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}
RATE_PER_S = 200.0
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PROBE_IDS_PER_PARTITION = 40


@dataclass(frozen=True)
class ClusterAndSearch:
    """Kafka from the three-broker cluster, Elasticsearch from the session's servers."""

    bootstrap_servers: str
    es_url: str

    def env(self) -> dict[str, str]:
        return {
            "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CALLSTREAM_ES_URL": self.es_url,
        }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[real_engines.KafkaCluster]:
    """Three KRaft nodes (broker + controller each, 384 MB heaps): every topic replicated 3 times,
    min.insync.replicas 2, brokers fenced 3 s after their last heartbeat."""
    started = real_engines.cluster_up(tmp_path_factory.mktemp("cluster"), brokers=3)
    try:
        yield started
    finally:
        started.down()


@dataclass
class SteadyLoad:
    """Publishes synthetic events at a steady rate from a thread (loadgen: acks=all, idempotent)
    until stopped, and remembers each event it handed to the producer and when: those are the
    ground truth, however long the machine took to get to each step of the test."""

    pipeline: Pipeline
    seed: int
    rate_per_s: float = RATE_PER_S
    events: list[RawCallEvent] = field(default_factory=list)
    handed_at: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _timed(self) -> Iterator[RawCallEvent]:
        """Every event yielded is published: the generator, not publish(), watches `stop`."""
        for event in synthetic.iter_events(
            10_000_000, seed=self.seed, start=START, rate_per_s=self.rate_per_s
        ):
            if self.stop.is_set():
                return
            self.events.append(event)
            self.handed_at.append(time.monotonic())
            yield event

    def _run(self) -> None:
        report = publish(
            self.pipeline.kafka,
            self.pipeline.topic(topics.RAW),
            self._timed(),
            batch_size=20,
            rate_per_s=self.rate_per_s,
        )
        self.failed.extend(report.errors[:3] if report.failed_messages else [])

    def start(self) -> SteadyLoad:
        self.thread = threading.Thread(target=self._run, name="steady-load", daemon=True)
        self.thread.start()
        return self

    def finish(self, timeout_s: float = 120) -> list[RawCallEvent]:
        """Stop publishing; every event handed out, once all were delivered."""
        assert self.thread is not None
        self.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "publication did not finish"
        assert not self.failed, f"deliveries failed: {self.failed}"
        return self.events

    def handed_after(self, at: float) -> dict[int, list[str]]:
        """Ids of the first events handed out after `at`, per raw partition."""
        first = next(i for i, t in enumerate(self.handed_at) if t > at)
        by_partition: dict[int, list[str]] = defaultdict(list)
        for event in self.events[first:]:
            ids = by_partition[partition_for_event_id(event.event_id, self.pipeline.partitions)]
            if len(ids) < PROBE_IDS_PER_PARTITION:
                ids.append(event.event_id)
        return dict(by_partition)


def searchable(es: Elasticsearch, index: str, query: dict[str, Any] | None = None) -> int:
    """Documents searchable in `index` now; 0 while the index or its shard does not exist yet."""
    try:
        return int(es.count(index=index, allow_no_indices=True, query=query)["count"])
    except ApiError:  # 503 while a new index's shard starts, 404 before it exists
        return 0


def wait_for_handout(load: SteadyLoad, at: float, timeout_s: float = 30) -> None:
    wait_for(lambda: load.handed_at and load.handed_at[-1] > at + 1, timeout_s)


def seconds_until_every_partition_flows(
    es: Elasticsearch, index: str, probes: dict[int, list[str]], since: float, timeout_s: float
) -> dict[int, float]:
    """For each raw partition, seconds from `since` until one of its probe events is searchable."""
    recovered: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(recovered) < len(probes) and time.monotonic() < deadline:
        es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        now = time.monotonic()
        for partition, ids in probes.items():
            if partition not in recovered and searchable(es, index, {"ids": {"values": ids}}):
                recovered[partition] = round(now - since, 1)
        time.sleep(0.25)
    assert len(recovered) == len(probes), f"partitions still without post-kill events: {recovered}, {probes}"
    return recovered


# A figure, not a limit: on a loaded 2-core machine the pipeline's own latency under this load has
# exceeded two minutes right after the workers' first rebalance (a CI run failed there, before the
# kill), so the wait is generous; the exact counts are what the tests assert.
FLOW_TIMEOUT_S = 300


def seconds_to_flow(es: Elasticsearch, index: str, load: SteadyLoad, since: float) -> dict[int, float]:
    """Per raw partition: seconds from `since` until an event handed out after it is searchable."""
    wait_for_handout(load, since)
    return seconds_until_every_partition_flows(es, index, load.handed_after(since), since, FLOW_TIMEOUT_S)


def assert_exact_in_elasticsearch(
    es: Elasticsearch, pipeline: Pipeline, events: list[RawCallEvent], timeout_s: float = 240
) -> None:
    """Every event indexed exactly once (ids are the event ids: the set and the count must match),
    and the newest aggregate of every window equal to ground truth."""
    calls = f"{pipeline.prefix}-calls-*"

    def all_indexed() -> bool:
        es.indices.refresh(index=calls)
        return searchable(es, calls) >= len(events)

    wait_for(all_indexed, timeout_s, describe=pipeline.logs)
    ids = scan_ids(es, calls)
    assert len(ids) == len(events)
    assert Counter(ids) == Counter(e.event_id for e in events)

    expected = expected_windows(events)
    aggregates = f"{pipeline.prefix}-aggregates-*"
    problems: list[str] = []

    def aggregates_exact() -> bool:
        es.indices.refresh(index=aggregates)
        docs = es.search(index=aggregates, size=10_000)["hits"]["hits"]
        problems[:] = compare(expected, {d["_id"]: d["_source"] for d in docs})
        return not problems

    wait_for(aggregates_exact, timeout_s, describe=lambda: "\n".join(problems[:20]) + pipeline.logs())


def scan_ids(es: Elasticsearch, index: str) -> list[str]:
    return [hit["_id"] for hit in helpers.scan(es, index=index, source=False, size=5000)]


def search_for(pipeline: Pipeline, servers: LocalServers) -> tuple[Elasticsearch, str]:
    """A client for the pipeline's indices (new_pipeline applied the index templates to its prefix)."""
    es = ElasticsearchSettings(url=servers.es_url, index_prefix=pipeline.prefix).client()
    return es, f"{pipeline.prefix}-calls-*"


def report(record_property: Any, name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}: {figures}")
    for key, value in figures.items():
        record_property(key, value)


@pytest.mark.needs(KAFKA_CLUSTER)
def test_a_broker_killed_under_load_loses_and_duplicates_nothing(
    cluster: real_engines.KafkaCluster, servers: LocalServers, tmp_path: Path, record_property: Any
) -> None:
    """SIGKILL the broker that leads the most raw partitions while producers, a stream worker and
    a sink worker run under steady load; restart it 20 s later. Leaderships move to the two
    survivors (min.insync.replicas 2 keeps acks=all writes going), and nothing is lost or doubled."""
    pipeline = new_pipeline(ClusterAndSearch(cluster.bootstrap_servers, servers.es_url), tmp_path)
    raw = pipeline.topic(topics.RAW)
    admin = AdminClient(pipeline.kafka.confluent_config())
    replicas = {len(p.replicas) for p in admin.list_topics(raw, timeout=10).topics[raw].partitions.values()}
    assert replicas == {3}
    config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, raw)])
    assert next(iter(config.values())).result()["min.insync.replicas"].value == "2"

    es, calls = search_for(pipeline, servers)
    try:
        stream = pipeline.start_stream_worker()
        sink = pipeline.start("sink", name="sink")
        load = SteadyLoad(pipeline, seed=51).start()
        wait_for(lambda: searchable(es, calls) > 500, 120, describe=pipeline.logs)
        baseline = seconds_to_flow(es, calls, load, time.monotonic())

        leaders = Counter(cluster.leader(raw, p) for p in range(pipeline.partitions))
        victim, led = leaders.most_common(1)[0]
        killed_at = time.monotonic()
        cluster.kill(victim)
        wait_for(
            lambda: all(cluster.leader(raw, p) not in (victim, -1) for p in range(pipeline.partitions)), 60
        )
        leaders_moved_s = round(time.monotonic() - killed_at, 1)
        recovered = seconds_to_flow(es, calls, load, killed_at)
        time.sleep(max(0.0, killed_at + 20 - time.monotonic()))
        restarted_at = time.monotonic()
        cluster.restart(victim)
        restart_s = round(time.monotonic() - restarted_at, 1)
        time.sleep(5)  # load on the whole cluster again before publication ends
        events = load.finish()
        assert_exact_in_elasticsearch(es, pipeline, events)
        drained_s = round(time.monotonic() - killed_at, 1)
        assert stream.poll() is None and sink.poll() is None, pipeline.logs()
        report(
            record_property,
            "broker failover",
            {
                "victim": victim,
                "raw_partitions_it_led": led,
                "leaders_moved_s": leaders_moved_s,
                "baseline_s": max(baseline.values()),
                "recovered_s_per_partition": recovered,
                "recovered_s": max(recovered.values()),
                "broker_restart_s": restart_s,
                "all_exact_after_kill_s": drained_s,
                "events": len(events),
                "rate_per_s": RATE_PER_S,
            },
        )
    finally:
        pipeline.stop_all()
        es.close()


@pytest.mark.needs(GROUP_EVICTION)
def test_a_stream_worker_killed_under_load_loses_and_duplicates_nothing(
    servers: LocalServers, tmp_path: Path, record_property: Any
) -> None:
    """Two stream workers and a sink under steady load; SIGKILL one worker. The broker evicts it
    after the session timeout, the survivor recovers its tables from the changelogs and carries
    on: Elasticsearch ends up exact, and the survivor and the sink never exited."""
    pipeline = new_pipeline(servers, tmp_path)
    es, calls = search_for(pipeline, servers)
    try:
        victim = pipeline.start_stream_worker(**FAST_EVICTION)
        survivor = pipeline.start_stream_worker(**FAST_EVICTION)
        sink = pipeline.start("sink", name="sink")
        load = SteadyLoad(pipeline, seed=52).start()
        wait_for(lambda: searchable(es, calls) > 500, 120, describe=pipeline.logs)
        baseline = seconds_to_flow(es, calls, load, time.monotonic())
        killed_at = time.monotonic()
        victim.kill()
        assert victim.wait(10) < 0
        recovered = seconds_to_flow(es, calls, load, killed_at)
        time.sleep(5)
        events = load.finish()
        assert_exact_in_elasticsearch(es, pipeline, events)
        drained_s = round(time.monotonic() - killed_at, 1)
        assert survivor.poll() is None and sink.poll() is None, pipeline.logs()
        report(
            record_property,
            "stream worker failover",
            {
                "baseline_s": max(baseline.values()),
                "recovered_s_per_partition": recovered,
                "recovered_s": max(recovered.values()),
                "all_exact_after_kill_s": drained_s,
                "events": len(events),
                "rate_per_s": RATE_PER_S,
                "session_timeout_s": int(FAST_EVICTION["BROKER_SESSION_TIMEOUT"]),
            },
        )
    finally:
        pipeline.stop_all()
        es.close()
