"""Crash recovery of the stream app: a worker killed or stopped while input is still arriving.

The newest aggregate of every window must equal ground truth exactly afterwards: the dead worker's
window and dedup state came back from the table changelogs, nothing was counted twice (re-delivered
partials are skipped, duplicates of already-counted events are dropped) and nothing was lost.

Every test acts while input is still arriving, which is when faust-streaming drops fetched input
during recovery (docs/stream.md, "Guard"); one test makes that loss on purpose and checks the guard.
SIGKILL and scale-out/in need a broker that evicts a dead group member after its session timeout
(the real engine): the embedded one never does, so the partitions would stay orphaned there, and
its rejoins after a member left mid-run stalled.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from callstream import topics
from callstream.infra.local_servers import GROUP_EVICTION, LocalServers
from callstream.producers import synthetic
from callstream.producers.contract import RawCallEvent
from callstream.producers.loadgen import publish
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_until_idle
from tests.ground_truth import compare, expected_windows
from tests.pipeline import Pipeline, latest_aggregates, log_events, new_pipeline

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 11, 58, 30, tzinfo=UTC)

# faust reads these from the environment (faust.types.settings: BROKER_SESSION_TIMEOUT, ...);
# StreamSettings has no setting for them. A short session timeout lets the broker evict a killed
# member in seconds, not faust's 60 s.
FAST_EVICTION = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}


def messages_processed(process: subprocess.Popen[bytes]) -> int:
    progress = log_events(process, "stream progress")
    return int(progress[-1]["messages"]) if progress else 0


def poll(condition: Callable[[], bool], timeout_s: float, interval_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def publish_all(pipeline: Pipeline, events: list[RawCallEvent], batch_size: int = 100, **kw: Any) -> None:
    report = publish(pipeline.kafka, pipeline.topic(topics.RAW), events, batch_size=batch_size, **kw)
    assert report.failed_messages == 0, report.errors[:3]


def publish_while(
    pipeline: Pipeline,
    events: list[RawCallEvent],
    schedule: Sequence[tuple[float, Callable[[], object]]],
    duration_s: float = 2.0,
) -> None:
    """Publish `events` paced over `duration_s` and run each action of `schedule` at its time
    (seconds from the start), while publication is still going on."""
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(
            publish,
            pipeline.kafka,
            pipeline.topic(topics.RAW),
            events,
            batch_size=50,
            rate_per_s=len(events) / duration_s,
        )
        for at_s, action in schedule:
            time.sleep(max(0.0, started + at_s - time.monotonic()))
            assert not future.done(), "publication ended before an action: it would act at a quiet moment"
            action()
        report = future.result()
    assert report.failed_messages == 0, report.errors[:3]


def publish_first_input(
    pipeline: Pipeline, events: list[RawCallEvent], read: Callable[[KafkaSettings], dict[str, Any]]
) -> None:
    """Publish `events` and wait until aggregates come out (`read`: how to read them)."""
    publish_all(pipeline, events)
    assert poll(lambda: bool(read(pipeline.kafka)), 90), pipeline.logs()


def converge(
    pipeline: Pipeline,
    events: list[RawCallEvent],
    read: Callable[[KafkaSettings], dict[str, dict[str, Any]]],
    timeout_s: float,
) -> None:
    """Wait until the newest aggregates equal ground truth; fail with the differences and with
    where the missing input went."""
    expected = expected_windows(events)
    problems: list[str] = []

    def exact() -> bool:
        problems[:] = compare(expected, read(pipeline.kafka))
        return not problems

    if not poll(exact, timeout_s, interval_s=2):
        pytest.fail(
            f"aggregates differ from ground truth after {timeout_s}s:\n"
            + "\n".join(problems[:15])
            + f"\n{lost_input(pipeline, events)}\n{pipeline.logs()}"
        )


def lost_input(pipeline: Pipeline, events: list[RawCallEvent]) -> str:
    """Which raw messages (partition, offset) hold events that never reached calls.enriched, and
    where the stream's consumer group has committed: a lost message below its commit was skipped."""
    enriched = {
        item["event_id"]
        for message in iter_until_idle(pipeline.kafka, pipeline.topic(topics.ENRICHED))
        for item in orjson.loads(message.value())
    }
    missing = {e.event_id for e in events} - enriched
    if not missing:
        return "every event reached calls.enriched"
    raw = pipeline.topic(topics.RAW)
    consumer = Consumer(pipeline.kafka.confluent_config() | {"group.id": f"{pipeline.prefix}-stream"})
    try:
        committed = consumer.committed(
            [TopicPartition(raw, p) for p in range(pipeline.partitions)], timeout=15
        )
    finally:
        consumer.close()
    holders: dict[tuple[int, int], int] = {}
    for message in iter_until_idle(pipeline.kafka, raw):
        lost = sum(1 for item in orjson.loads(message.value()) if item["event_id"] in missing)
        if lost:
            holders[(message.partition(), message.offset())] = lost
    return (
        f"{len(missing)} events never reached calls.enriched; (partition, offset): events lost = "
        f"{sorted(holders.items())}; group commits: {[(tp.partition, tp.offset) for tp in committed]}"
    )


@pytest.mark.needs(GROUP_EVICTION)
def test_sigkill_of_one_of_two_workers_mid_run_is_exact(servers: LocalServers, tmp_path: Path) -> None:
    """kill -9 one of two workers while input arrives; the other takes over its partitions
    after the session timeout, recovers the dead worker's tables from their changelogs and finishes."""
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(10_000, seed=21, start=START, rate_per_s=50)
    shuffle = random.Random(21)
    duplicates = shuffle.sample(events[:4000], 150) + shuffle.sample(events[:7000], 250)
    try:
        victim = pipeline.start_stream_worker(**FAST_EVICTION)
        survivor = pipeline.start_stream_worker(**FAST_EVICTION)
        publish_first_input(pipeline, events[:4000] + duplicates[:150], latest_aggregates)
        assert poll(lambda: messages_processed(victim) > 0, 30), "the victim never processed input"

        publish_while(pipeline, events[4000:7000], [(1.0, lambda: victim.send_signal(signal.SIGKILL))])
        assert victim.wait(10) == -signal.SIGKILL
        publish_all(pipeline, events[7000:] + duplicates[150:])

        converge(
            pipeline,
            events,
            latest_aggregates,
            timeout_s=75,
        )
        recovered = [doc["windows"] for doc in log_events(survivor, "windows republished after recovery")]
        assert max(recovered, default=0) > 0, f"the survivor recovered no windows: {recovered}"
    finally:
        pipeline.stop_all()


@pytest.mark.needs(GROUP_EVICTION)
def test_sigkill_and_restart_of_the_only_worker_is_exact(servers: LocalServers, tmp_path: Path) -> None:
    """The same crash with a single worker, restarted under the same app id while input keeps
    arriving. The broker evicts the dead member after the session timeout (noida-db never does, so
    the restarted worker would get no partitions there)."""
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(8000, seed=22, start=START, rate_per_s=50)
    duplicates = random.Random(22).sample(events[:5000], 300)
    try:
        first = pipeline.start_stream_worker(**FAST_EVICTION)
        publish_first_input(pipeline, events[:3000], latest_aggregates)
        restarted: list[subprocess.Popen[bytes]] = []

        def kill_and_restart() -> None:
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
            restarted.append(pipeline.start_stream_worker(**FAST_EVICTION))

        publish_while(pipeline, events[3000:6000], [(1.0, kill_and_restart)], duration_s=15.0)
        publish_all(pipeline, events[6000:] + duplicates)
        converge(
            pipeline,
            events,
            latest_aggregates,
            timeout_s=90,
        )
        # Its progress is logged every 5 s: the exact aggregates may come before the next line.
        assert poll(lambda: messages_processed(restarted[0]) > 0, 15), (
            "the restarted worker processed nothing"
        )
    finally:
        pipeline.stop_all()


@pytest.mark.smoke  # also run on the embedded engine in CI
def test_sigterm_and_restart_mid_run_with_duplicates_is_exact(servers: LocalServers, tmp_path: Path) -> None:
    """Graceful stop of the only worker while input arrives, then a restart; duplicates of events
    counted before the stop arrive after it, so the dedup table must have come back too."""
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(10_000, seed=5, start=START, rate_per_s=50)
    shuffle = random.Random(3)
    duplicates = shuffle.sample(events[:4000], 100) + shuffle.sample(events[:7000], 400)
    try:
        first = pipeline.start_stream_worker()
        publish_first_input(pipeline, events[:4000] + duplicates[:100], latest_aggregates)

        stopped: list[int] = []
        publish_while(pipeline, events[4000:7000], [(1.0, lambda: stopped.append(pipeline.stop(first)))])
        assert stopped == [0], pipeline.logs()
        pipeline.start_stream_worker()
        publish_all(pipeline, events[7000:] + duplicates[100:])
        converge(pipeline, events, latest_aggregates, timeout_s=60)
    finally:
        pipeline.stop_all()


@pytest.mark.needs(GROUP_EVICTION)
def test_worker_added_then_stopped_mid_run_is_exact(servers: LocalServers, tmp_path: Path) -> None:
    """Scale out, then in, with input arriving throughout: a second worker joins (both rebalance
    and recover), then the first stops gracefully (the second takes over all partitions). Not on
    noida-db: there the survivor's rejoin after the other member left mid-run stalled in one run
    (its commits failed with IllegalGeneration and no new assignment came)."""
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(12_000, seed=9, start=START, rate_per_s=50)
    duplicates = random.Random(9).sample(events[:9000], 300)
    try:
        first = pipeline.start_stream_worker(**FAST_EVICTION)
        publish_first_input(pipeline, events[:3000], latest_aggregates)
        workers: list[subprocess.Popen[bytes]] = []
        stopped: list[int] = []

        def stop_first_once_the_second_works() -> None:
            assert poll(lambda: messages_processed(workers[0]) > 0, 45), "the added worker got no input"
            stopped.append(pipeline.stop(first))

        publish_while(
            pipeline,
            events[3000:9000],
            [
                (0.5, lambda: workers.append(pipeline.start_stream_worker(**FAST_EVICTION))),
                (3.0, stop_first_once_the_second_works),
            ],
            duration_s=60.0,  # group joins take seconds: input keeps arriving through both
        )
        assert stopped == [0], pipeline.logs()
        publish_all(pipeline, events[9000:] + duplicates)
        converge(
            pipeline,
            events,
            latest_aggregates,
            timeout_s=90,
        )
    finally:
        pipeline.stop_all()


def group_offsets(pipeline: Pipeline) -> tuple[list[int], list[int]]:
    """The stream group's committed offsets and the high watermarks of the raw partitions."""
    raw = pipeline.topic(topics.RAW)
    consumer = Consumer(pipeline.kafka.confluent_config() | {"group.id": f"{pipeline.prefix}-stream"})
    try:
        partitions = [TopicPartition(raw, p) for p in range(pipeline.partitions)]
        committed = [tp.offset for tp in consumer.committed(partitions, timeout=15)]
        highs = [consumer.get_watermark_offsets(tp, timeout=15)[1] for tp in partitions]
        return committed, highs
    finally:
        consumer.close()


def commit_group(pipeline: Pipeline, offsets: list[int]) -> None:
    raw = pipeline.topic(topics.RAW)
    consumer = Consumer(pipeline.kafka.confluent_config() | {"group.id": f"{pipeline.prefix}-stream"})
    try:
        consumer.commit(
            offsets=[TopicPartition(raw, p, o) for p, o in enumerate(offsets)], asynchronous=False
        )
    finally:
        consumer.close()


def commits_reached_the_end(pipeline: Pipeline) -> bool:
    committed, highs = group_offsets(pipeline)
    return committed == highs


def skip_input_behind_the_worker(
    pipeline: Pipeline, processed: list[RawCallEvent], skipped: list[RawCallEvent]
) -> dict[int, int]:
    """Run a worker over `processed` and stop it; publish `skipped` and move the group's commits
    past it, as faust's recovery bug does. Returns the skipped messages per partition that got any."""
    first = pipeline.start_stream_worker()
    publish_all(pipeline, processed)
    pipeline.wait_for_aggregates(expected_windows(processed), timeout_s=90)
    assert pipeline.stop(first) == 0, pipeline.logs()
    _, before = group_offsets(pipeline)
    publish_all(pipeline, skipped)
    _, after = group_offsets(pipeline)
    commit_group(pipeline, after)
    return {p: a - b for p, (a, b) in enumerate(zip(after, before, strict=True)) if a > b}


def test_input_the_consumer_moved_past_is_read_directly(servers: LocalServers, tmp_path: Path) -> None:
    """While the worker is stopped, its group's commits are moved past 1,500 events it never
    processed. The restarted worker sees the hole in its recorded progress when the next input
    arrives, reads that input directly, the aggregates are exact, and its commits then reach the
    end of every partition (faust is told those offsets are done)."""
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(6000, seed=31, start=START, rate_per_s=50)
    try:
        holes = skip_input_behind_the_worker(pipeline, events[:3000], events[3000:4500])
        # The check of quiet partitions (next test) is off here: it would heal these holes too.
        worker = pipeline.start_stream_worker(CALLSTREAM_STREAM_INPUT_QUIET_S="3600")
        publish_all(pipeline, events[4500:])
        pipeline.wait_for_aggregates(expected_windows(events), timeout_s=90)
        # At least the skipped input: the progress record of a partition may trail its last commit,
        # and then a little more is read again (harmlessly: the aggregates above are exact).
        assert poll(lambda: messages_processed(worker) > 0, 15)
        progress = log_events(worker, "stream progress")[-1]
        assert progress["skipped_read"] >= sum(holes.values()), pipeline.logs()
        warned = {
            w["partition"] for w in log_events(worker, "input skipped by the consumer, reading it directly")
        }
        assert warned >= holes.keys()
        assert poll(lambda: commits_reached_the_end(pipeline), 30), (
            f"commits stalled: {group_offsets(pipeline)}"
        )
    finally:
        pipeline.stop_all()


def test_input_left_behind_at_a_partitions_end_is_fetched_again(
    servers: LocalServers, tmp_path: Path
) -> None:
    """The same loss at the end of the input: nothing arrives after the skipped 1,500 events, so no
    later message reveals the hole. The worker checks quiet partitions against their end and sends
    its consumer back to the input it left behind."""
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(4500, seed=32, start=START, rate_per_s=50)
    try:
        holes = skip_input_behind_the_worker(pipeline, events[:3000], events[3000:])
        worker = pipeline.start_stream_worker(CALLSTREAM_STREAM_INPUT_QUIET_S="3")
        pipeline.wait_for_aggregates(expected_windows(events), timeout_s=90)
        warned = {
            w["partition"]
            for w in log_events(worker, "input left behind at the end of a partition, fetching it again")
        }
        assert warned == holes.keys()
        assert poll(lambda: commits_reached_the_end(pipeline), 30), (
            f"commits stalled: {group_offsets(pipeline)}"
        )
    finally:
        pipeline.stop_all()
