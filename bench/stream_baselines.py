"""The two comparison apps of `callstream bench stream`, each run as its own process.

- `plain`: a confluent-kafka consume-enrich-produce loop, no framework: the practical limit of a
  Python consumer doing the stream's per-event work. Per raw message it validates
  (producers.contract.decode_events), enriches (streams.enrich.enrich, same price catalogue),
  publishes the enriched events as JSON arrays packed like the stream app packs them, and folds the
  batch into one-minute states rolled up to every window (streams.windows), published as partials
  by window partition (streams.partials), all with the stream's own core functions. It leaves
  out what the stream app adds on top (dedup, late flags, tables,
  the window merge), so it bounds the stream app from above.
- `quix`: the same job as an idiomatic Quix Streams application: each raw message expanded into
  events, each event enriched with the same rules and published, then re-keyed by model
  (`group_by`) into a tumbling one-minute window counting requests and summing cost, whose closed
  windows go to an output topic. Its grace period is a parameter: Quix keeps one event time per
  key across all input partitions, so events read partition after partition (a broker that hands
  over whole partitions per fetch, as noida-db does) are late for it, and it drops them, where the
  stream app, which keeps time per input partition, counts them all. RocksDB state, changelog
  topics and commits as Quix manages them. Rows reaching the window are counted and the count is
  published now and then (QuixProgress), because a closing-only window shows nothing from outside.

Both read the raw topic from the beginning with their own consumer group and stop cleanly on
SIGTERM; `bench/stream.py` decides when they are done from their output, the same way for all.

Usage (connection from CALLSTREAM_KAFKA_*):
    python -m bench.stream_baselines plain RAW ENRICHED AGGREGATES GROUP
    python -m bench.stream_baselines quix RAW ENRICHED AGGREGATES GROUP STATE_DIR PROGRESS EVENTS GRACE_MS
"""

from __future__ import annotations

import signal
import sys
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from callstream import logs
from callstream.producers.contract import RawCallEvent, decode_events
from callstream.producers.packing import split_into_arrays
from callstream.settings import KafkaSettings
from callstream.streams.catalogue import load_catalogue
from callstream.streams.enrich import enrich, epoch_ms
from callstream.streams.partials import Partial, encode_partial, partials_by_partition
from callstream.streams.settings import StreamSettings
from callstream.streams.windows import windows_of

log = logs.get(__name__)

JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
CONSUME_BATCH = 5000


def dumps(value: Any) -> bytes:
    """JSON exactly as the stream app writes it (datetimes as ISO-8601 with Z)."""
    return orjson.dumps(value, option=JSON_OPTIONS)


class _Stop:
    """SIGTERM only flips a flag; the loop ends at a safe point."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            cls.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def run_plain(kafka: KafkaSettings, raw_topic: str, enriched_topic: str, agg_topic: str, group: str) -> int:
    from confluent_kafka import Consumer, KafkaError, Message, Producer

    settings = StreamSettings()
    prices = load_catalogue(settings)
    consumer = Consumer(
        kafka.confluent_config()
        | {
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "receive.message.max.bytes": kafka.receive_message_max_bytes,
        }
    )
    producer = Producer(
        kafka.confluent_config()
        | {"acks": "all", "compression.type": "lz4", "linger.ms": 5, "message.max.bytes": 8 * 1024 * 1024}
    )
    failed = 0

    def delivered(err: KafkaError | None, msg: Message) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    def produce(topic: str, value: bytes, partition: int = -1) -> None:
        while True:
            try:
                producer.produce(topic, value=value, partition=partition, on_delivery=delivered)
                return
            except BufferError:
                producer.poll(0.05)

    _Stop.install()
    partitions = settings.partitions
    events = 0
    consumer.subscribe([raw_topic])
    try:
        while not _Stop.requested:
            messages = consumer.consume(CONSUME_BATCH, 0.5)
            for message in messages:
                if message.error():
                    continue
                valid, _ = decode_events(message.value())
                docs = [enrich(e, prices) for e in valid]
                for chunk in split_into_arrays([dumps(doc) for doc in docs], settings.enriched_max_bytes):
                    produce(enriched_topic, chunk)
                source = f"{message.topic()}:{message.partition()}"
                windows = windows_of(docs)
                for target, states in partials_by_partition(windows, partitions).items():
                    produce(agg_topic, encode_partial(Partial(source, message.offset(), 0, states)), target)
                events += len(docs)
            producer.poll(0)
            if messages:
                consumer.commit(asynchronous=True)
    finally:
        remaining = producer.flush(60)
        consumer.close()
    log.info("plain loop stopped", events=events, failed_deliveries=failed, undelivered=remaining)
    return 1 if failed or remaining else 0


class QuixProgress:
    """Rows that reached the Quix window step, published every `every` rows and at `total`.

    A tumbling window with `.final()` says nothing until a window closes, so this marker is what
    lets the benchmark see, from outside, when Quix has windowed every event (late ones included:
    Quix drops those, and the marker counts how many).
    """

    def __init__(self, kafka: KafkaSettings, topic: str, total: int, every: int = 10_000) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(kafka.confluent_config() | {"acks": "all"})
        self.topic, self.total, self.every = topic, total, every
        self.rows = self.late = 0

    def row(self, value: Any) -> None:
        self.rows += 1
        if self.rows % self.every == 0 or self.rows == self.total:
            self.producer.produce(self.topic, orjson.dumps({"rows": self.rows, "late": self.late}))
            self.producer.poll(0)
            if self.rows == self.total:
                self.producer.flush(30)

    def on_late(
        self,
        value: Any,
        key: Any,
        timestamp_ms: int,
        late_by_ms: int,
        start: int,
        end: int,
        store_name: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> bool:
        self.late += 1
        return False  # counted, not logged (one warning per late event would dominate the run)


def run_quix(
    kafka: KafkaSettings,
    raw_topic: str,
    enriched_topic: str,
    agg_topic: str,
    group: str,
    state_dir: Path,
    progress_topic: str,
    events: int,
    grace_ms: int,
) -> int:
    from quixstreams import Application
    from quixstreams.dataframe.windows import aggregations as agg
    from quixstreams.kafka.configuration import ConnectionConfig
    from quixstreams.models.serializers.json import JSONSerializer

    prices = load_catalogue(StreamSettings())
    progress = QuixProgress(kafka, progress_topic, events)
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(kafka.confluent_config(), ignore_extras=True),
        consumer_group=group,
        auto_offset_reset="earliest",
        consumer_extra_config={"receive.message.max.bytes": kafka.receive_message_max_bytes},
        producer_extra_config={"compression.type": "lz4"},
        state_dir=state_dir,
        loglevel="WARNING",
    )
    raw = app.topic(raw_topic, value_deserializer="bytes")
    enriched = app.topic(enriched_topic, value_serializer=JSONSerializer(dumps=dumps))
    windows = app.topic(agg_topic, key_serializer="str", value_serializer="json")

    def events_of(value: bytes) -> list[RawCallEvent]:
        valid, _ = decode_events(value)
        return valid

    sdf = app.dataframe(raw)
    sdf = sdf.apply(events_of, expand=True)
    sdf = sdf.apply(lambda event: enrich(event, prices))
    sdf = sdf.to_topic(enriched)
    # Windows run on event time, like the stream app's, not on the message's arrival time.
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: epoch_ms(value["event_time"]))
    sdf = sdf.apply(lambda doc: {"model": doc["model"], "cost_pico": doc["cost_pico"]})
    sdf = sdf.group_by("model")
    sdf = sdf.update(progress.row)
    sdf = (
        sdf.tumbling_window(timedelta(minutes=1), grace_ms=grace_ms, on_late=progress.on_late)
        .agg(requests=agg.Count(), cost_pico=agg.Sum("cost_pico"))
        .final()
    )
    sdf.to_topic(windows)
    app.run()  # stops cleanly on SIGTERM
    log.info("quix stopped", rows=progress.rows, late=progress.late)
    return 0


def main(argv: list[str]) -> int:
    logs.configure()
    kind, raw_topic, enriched_topic, agg_topic, group, *rest = argv
    kafka = KafkaSettings()
    if kind == "plain":
        return run_plain(kafka, raw_topic, enriched_topic, agg_topic, group)
    if kind == "quix":
        state_dir, progress_topic, events, grace_ms = rest
        return run_quix(
            kafka,
            raw_topic,
            enriched_topic,
            agg_topic,
            group,
            Path(state_dir),
            progress_topic,
            int(events),
            int(grace_ms),
        )
    raise SystemExit(f"unknown baseline {kind!r}: expected plain or quix")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
