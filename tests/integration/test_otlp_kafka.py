"""`callstream otlp --from-kafka`: an OpenTelemetry Collector's kafka exporter topic (otlp_proto and
otlp_json messages) read in a consumer group; calls published once, bad messages dead-lettered
without their bytes, offsets committed only for what was published (a restart reads nothing again)."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

pytest.importorskip("opentelemetry.proto")

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from callstream import topics
from callstream.infra.local_servers import LocalServers
from tests.pipeline import array_items, log_events, new_pipeline, wait_for
from tests.unit.test_otlp_decode import ATTRS, JSON_BODY, request

pytestmark = pytest.mark.integration

SECRET = "PLANTED-collector-content-77aa"


def test_collector_topic_is_read_once_and_committed(servers: LocalServers, tmp_path: Path) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    source = f"{pipeline.prefix}-otlp_spans"
    admin = AdminClient(pipeline.kafka.confluent_config())
    for future in admin.create_topics([NewTopic(source, num_partitions=3, replication_factor=1)]).values():
        future.result(30)
    producer = Producer(pipeline.kafka.confluent_config())
    proto = request(ATTRS | {"gen_ai.input.messages": SECRET}, count=7).SerializeToString()
    json_body = orjson.loads(orjson.dumps(JSON_BODY))
    json_body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "00000000000000aa"  # its own span
    json_attributes = json_body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    json_attributes[:] = [a for a in json_attributes if a["key"] != "user.id"]  # bytes: a rejected span
    json_attributes.append({"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}})
    for value in (proto, orjson.dumps(json_body), proto, b"\xff garbage " + SECRET.encode()):
        producer.produce(source, value)  # the second proto message is a Collector's redelivery
    assert producer.flush(30) == 0
    env = {"CALLSTREAM_PRODUCER_SPOOL_DIR": str(tmp_path / "spool"), "CALLSTREAM_OTLP_METRICS_PORT": "0"}
    args = ("otlp", "--from-kafka", source, "--group-id", f"{pipeline.prefix}-otlp")
    try:
        first = pipeline.start(*args, name="otlp", **env)

        def raw_events() -> list[dict[str, object]]:
            return array_items(pipeline.kafka, topics.RAW)

        wait_for(lambda: len(raw_events()) >= 15, 90, 0.5, describe=pipeline.logs)
        wait_for(lambda: array_items(pipeline.kafka, topics.DEADLETTER), 60, 0.5, describe=pipeline.logs)
        assert pipeline.stop(first, signal.SIGTERM) == 0
        events = raw_events()
        assert len(events) == 15 and len({e["event_id"] for e in events}) == 8  # 7 + 1, the redelivery twice
        (letter,) = array_items(pipeline.kafka, topics.DEADLETTER)
        assert "not an OTLP trace request" in letter["reason"] and letter["source_topic"] == source
        (done,) = log_events(first, "otlp done")
        assert (done["messages"], done["dead_letters"], done["spans_accepted"]) == (4, 1, 15)

        # Restarted, the group resumes after what it committed: one new span per partition comes
        # through, and nothing before it is read again.
        for partition in range(3):
            marker = request(ATTRS, trace_id=bytes([partition + 1]) * 16)
            producer.produce(source, marker.SerializeToString(), partition=partition)
        assert producer.flush(30) == 0
        second = pipeline.start(*args, name="otlp-again", **env)
        wait_for(lambda: len(raw_events()) >= 18, 90, 0.5, describe=pipeline.logs)
        assert pipeline.stop(second, signal.SIGTERM) == 0
        assert len(raw_events()) == 18
        everything = orjson.dumps([raw_events(), array_items(pipeline.kafka, topics.DEADLETTER)])
        assert SECRET.encode() not in everything
    finally:
        pipeline.stop_all()
