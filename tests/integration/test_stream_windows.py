"""The stream app end to end on a real broker: exact aggregates for any number of workers.

Workers run as separate processes (`callstream stream`); input is generated, published through
Kafka, and the newest version of every window aggregate is compared with ground truth computed
independently from the generated events.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from callstream import topics
from callstream.infra.local_servers import LocalServers
from callstream.producers import synthetic
from callstream.producers.loadgen import publish
from tests.ground_truth import expected_windows
from tests.pipeline import array_items, latest_aggregates, new_pipeline, wait_for

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 11, 58, 30, tzinfo=UTC)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_aggregates_exact_for_any_worker_count(servers: LocalServers, tmp_path: Path, workers: int) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    # Heavy skew: one model carries 80% of the traffic.
    skewed = tuple(
        synthetic.ModelProfile(
            m.name,
            0.8 if m.name == "gpt-4.1" else 0.05,
            m.median_latency_ms,
            m.median_input_tokens,
            m.median_output_tokens,
            m.cache_read_share,
            m.reasoning_share,
        )
        for m in synthetic.DEFAULT_MODELS
    )
    events = synthetic.generate(
        12_000, seed=workers, start=START, rate_per_s=100, models=skewed, late_share=0.01
    )
    duplicates = random.Random(7).sample(events, 300)
    try:
        for _ in range(workers):
            pipeline.start_stream_worker()
        report = publish(pipeline.kafka, pipeline.topic(topics.RAW), events + duplicates, batch_size=250)
        assert report.failed_messages == 0
        pipeline.wait_for_aggregates(expected_windows(events))
        late = array_items(pipeline.kafka, topics.LATE)
        assert late, "late events must reach the late topic"
        assert all(item["late"] for item in late)
    finally:
        pipeline.stop_all()


def test_worker_stopped_mid_run_changes_nothing(servers: LocalServers, tmp_path: Path) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(10_000, seed=11, start=START, rate_per_s=50)
    try:
        first = pipeline.start_stream_worker()
        pipeline.start_stream_worker()
        assert (
            publish(pipeline.kafka, pipeline.topic(topics.RAW), events[:5000], batch_size=200).failed_messages
            == 0
        )
        wait_for(lambda: latest_aggregates(pipeline.kafka), 120, describe=pipeline.logs)
        assert pipeline.stop(first) == 0, pipeline.logs()
        assert (
            publish(pipeline.kafka, pipeline.topic(topics.RAW), events[5000:], batch_size=200).failed_messages
            == 0
        )
        pipeline.start_stream_worker()
        pipeline.wait_for_aggregates(expected_windows(events))
    finally:
        pipeline.stop_all()


def test_invalid_inputs_are_dead_lettered_with_reasons(servers: LocalServers, tmp_path: Path) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(500, seed=3, start=START)
    bad = synthetic.invalid_inputs()
    try:
        pipeline.start_stream_worker()
        publish(pipeline.kafka, pipeline.topic(topics.RAW), events[:250] + [b for b, _ in bad] + events[250:])
        letters = wait_for(
            lambda: (
                len(array_items(pipeline.kafka, topics.DEADLETTER)) >= len(bad)
                and array_items(pipeline.kafka, topics.DEADLETTER)
            ),
            120,
            describe=pipeline.logs,
        )
        assert len(letters) == len(bad)
        for (original, reason_fragment), letter in zip(
            bad, sorted(letters, key=lambda x: x["batch_index"]), strict=True
        ):
            assert orjson.loads(letter["original"]) == original
            assert reason_fragment in letter["reason"], letter["reason"]
        pipeline.wait_for_aggregates(expected_windows(events))
    finally:
        pipeline.stop_all()
