"""Issue 2's end-to-end guarantee: generated calls go through Kafka, the stream and sink workers
(separate processes) and land in Elasticsearch exactly once, with aggregates equal to the truth."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from callstream import topics
from callstream.infra.local_servers import LocalServers
from callstream.producers import synthetic
from callstream.producers.loadgen import publish
from callstream.settings import ElasticsearchSettings
from tests.ground_truth import compare, expected_windows
from tests.pipeline import array_items, new_pipeline, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.smoke  # also run on the embedded engine in CI
def test_calls_and_aggregates_reach_elasticsearch_exactly(servers: LocalServers, tmp_path: Path) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(8_000, seed=42, start=datetime(2026, 5, 4, 23, 57, tzinfo=UTC), rate_per_s=20)
    bad = synthetic.invalid_inputs()
    es = ElasticsearchSettings(url=servers.es_url, index_prefix=pipeline.prefix).client()
    try:
        pipeline.start_stream_worker()
        pipeline.start("sink", name="sink")
        report = publish(
            pipeline.kafka, pipeline.topic(topics.RAW), events[:4000] + [b for b, _ in bad] + events[4000:]
        )
        assert report.failed_messages == 0

        calls = f"{pipeline.prefix}-calls-*"

        def all_calls_indexed() -> bool:
            es.indices.refresh(index=calls)
            return es.count(index=calls)["count"] >= len(events)

        wait_for(all_calls_indexed, 180, describe=pipeline.logs)
        hits = es.search(index=calls, size=10_000, source=["event_id"])["hits"]["hits"]
        assert sorted(h["_id"] for h in hits) == sorted(e.event_id for e in events)
        assert all(h["_source"]["event_id"] == h["_id"] for h in hits)
        # The calls span midnight: daily indices follow event time.
        days = {h["_index"].rsplit("-", 1)[-1] for h in hits}
        assert days == {"2026.05.04", "2026.05.05"}

        expected = expected_windows(events)
        aggregates = f"{pipeline.prefix}-aggregates-*"
        state: dict[str, list[str]] = {"problems": []}

        def aggregates_match() -> bool:
            es.indices.refresh(index=aggregates)
            docs = es.search(index=aggregates, size=10_000)["hits"]["hits"]
            state["problems"] = compare(expected, {d["_id"]: d["_source"] for d in docs})
            return not state["problems"]

        wait_for(aggregates_match, 180, describe=lambda: "\n".join(state["problems"][:20]) + pipeline.logs())

        letters = array_items(pipeline.kafka, topics.DEADLETTER)
        assert len(letters) == len(bad)
        by_original = {repr(orjson.loads(letter["original"])): letter["reason"] for letter in letters}
        for original, fragment in bad:
            assert fragment in by_original[repr(original)]
    finally:
        pipeline.stop_all()
        es.close()
