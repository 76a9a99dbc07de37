"""The faust-streaming app: raw events in; enriched events, dead letters, late events and window
aggregates out.

Two agents, each a thin shell around the pure core (enrich, dedup, windows):

- `process_calls` reads raw (or replay) batches. Per message it validates, re-routes events that
  sit on the wrong partition, drops duplicates, enriches, flags late events, publishes the
  enriched batch, and pre-aggregates the whole batch into partial window states, which go to the
  partials topic by window. Work is per batch, so a hot model costs one partial per batch, not
  one table write per event. Every output is attached to the input message: faust publishes
  it before it commits the input offset (at-least-once). It also records each partition's next
  offset, and reads input its consumer moved past (faust-streaming drops input fetched during
  recovery; see "input continuity" below), as does `merge_windows`.
- `merge_windows` reads partials in batches, merges them into the window table (its changelog is
  what a restarted worker recovers), then publishes each changed window once, with a growing
  version, and only then acks its inputs. A partial carries its source (topic:partition, offset),
  and a window skips sources it has already applied, so a partial re-sent after a crash is never
  counted twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from confluent_kafka import Message

from callstream.errors import MissingExtraError

try:
    import faust
    from mode.utils.times import want_seconds
except ImportError as exc:
    raise MissingExtraError("stream", "faust-streaming") from exc


from callstream import logs, topics
from callstream.producers.contract import (
    RawCallEvent,
    RejectedEvent,
    decode_events,
    encode_events,
    partition_for_event_id,
)
from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.settings import KafkaSettings
from callstream.streams.catalogue import load_catalogue
from callstream.streams.dedup import DedupIndex
from callstream.streams.enrich import enrich, epoch_ms
from callstream.streams.settings import StreamSettings
from callstream.streams.windows import WindowKey, WindowState, expired, fold_minutes, rollup
from callstream.topic_reader import read_range
from callstream.topics import TopicSpec

log = logs.get(__name__)

MINUTE_MS = 60_000
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def window_partition(window_key: str, partitions: int) -> int:
    """Partition of a window in the partials topic and in the window table's changelog."""
    return zlib.crc32(window_key.encode()) % partitions


@dataclass
class WindowEntry:
    state: WindowState
    version: int = 0
    applied: dict[str, int] = field(default_factory=dict)  # source "topic:partition" -> last offset merged

    def to_bytes(self) -> bytes:
        return orjson.dumps({"s": self.state.to_wire(), "v": self.version, "a": self.applied})

    @classmethod
    def from_bytes(cls, raw: bytes) -> WindowEntry:
        doc = orjson.loads(raw)
        return cls(WindowState.from_wire(doc["s"]), doc["v"], doc["a"])


@dataclass
class Counters:
    messages: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    rerouted: int = 0
    late: int = 0
    skipped_read: int = 0  # input messages the consumer moved past, read directly
    refetched: int = 0  # times the consumer was sent back to input left at a partition's end
    partials_merged: int = 0
    partials_skipped: int = 0
    windows_published: int = 0
    windows_expired: int = 0


class StreamPipeline:
    """The state and the per-batch steps of the app; faust only moves messages in and out."""

    def __init__(self, app: faust.App, settings: StreamSettings, kafka: KafkaSettings) -> None:
        self.app = app
        self.settings = settings
        self.prices = load_catalogue(settings)
        self.counters = Counters()
        self.partitions = settings.partitions
        self.retention = settings.retention_ms()
        self.version_base = settings.generation << 32
        self.last_activity = time.monotonic()
        if settings.source == "replay":
            source_name = topics.replay_topic(settings.generation)
            partials_name = topics.replay_partials_topic(settings.generation)
        else:
            source_name, partials_name = topics.RAW, topics.AGGREGATE_PARTIALS
        raw: dict[str, Any] = {"value_serializer": "raw", "key_serializer": "raw"}
        self.source = app.topic(kafka.topic(source_name), partitions=self.partitions, **raw)
        self.enriched = app.topic(kafka.topic(topics.ENRICHED), **raw)
        self.late = app.topic(kafka.topic(topics.LATE), **raw)
        self.deadletter = app.topic(kafka.topic(topics.DEADLETTER), **raw)
        self.partials = app.topic(kafka.topic(partials_name), partitions=self.partitions, **raw)
        self.aggregates = app.topic(kafka.topic(topics.AGGREGATES), **raw)
        self.source_name = kafka.topic(source_name)
        self.partials_name = kafka.topic(partials_name)
        self.kafka = kafka
        # value_type=bytes makes faust use the raw codec for the changelog: values come back from
        # recovery exactly as written (orjson bytes). Keys are strings (json codec).
        table_options: dict[str, Any] = {"partitions": self.partitions, "key_type": str, "value_type": bytes}
        self.stream_times = app.Table("stream-time", **table_options)
        self.dedup_table = app.Table("dedup", **table_options)
        self.windows = app.Table("windows", **table_options)
        # Window keys are placed by our own hash (the one that routed their partials), so the
        # changelog partition of a key is the partials partition that owns it, even when the
        # table is written while a batch is flushed.
        partitions = self.partitions
        self.windows.partition_for_key = lambda key: window_partition(key, partitions)  # type: ignore[method-assign]
        # Next offset to merge per partials partition, keyed by that partition (and kept there).
        self.merge_progress = app.Table("merge-progress", **table_options)
        self.merge_progress.partition_for_key = lambda key: int(key)  # type: ignore[method-assign]
        self.dedup_indexes: dict[int, DedupIndex] = {}
        self.window_cache: dict[str, WindowEntry] = {}
        self.window_time_ms = 0
        self.republish_pending = False
        self.last_input: dict[faust.types.TP, float] = {}  # when each input partition last delivered
        self.group_starts: dict[faust.types.TP, int] = {}  # for partitions with nothing recorded
        self.assigned_at = time.monotonic()

    # -- process_calls ---------------------------------------------------------------------------

    async def process_calls(self, event: faust.types.EventT) -> None:
        message = event.message
        topic, partition, offset = message.topic, message.partition, message.offset
        stream_time, recorded = self._progress(partition)
        for skipped in await self._input_skipped_before(message.tp, offset, recorded):
            stream_time = await self._process(
                topic, partition, skipped.offset(), skipped.value(), stream_time
            )
        await self._process(topic, partition, offset, event.value, stream_time)

    # -- input continuity --------------------------------------------------------------------------
    # faust-streaming 0.15.3 drops messages fetched while a worker finishes table recovery
    # (Recovery.on_recovery_completed clears the agents' queues after resuming the partitions), and
    # its commit can then move past them. Both agents record the next offset of every input
    # partition in a changelogged table; a message beyond it reveals a hole, which is read directly,
    # and a timer finds holes at the end of quiet partitions. Reading more than was skipped is
    # harmless: reprocessing a raw message yields what its first processing yielded, and windows
    # skip partials of source offsets they merged.

    async def _input_skipped_before(
        self, tp: faust.types.TP, offset: int, recorded: int | None
    ) -> list[Message]:
        """The messages of `tp` between its `recorded` next offset and `offset`, which the consumer
        moved past unprocessed (usually none). faust is told they are done, for its commits."""
        self.last_input[tp] = time.monotonic()
        expected = await self._expected_offset(tp, recorded)
        if offset <= expected:
            return []
        log.warning(
            "input skipped by the consumer, reading it directly",
            topic=tp.topic,
            partition=tp.partition,
            offsets=f"{expected}..{offset - 1}",
        )
        loop = asyncio.get_running_loop()
        skipped = await loop.run_in_executor(
            None, read_range, self.kafka, tp.topic, tp.partition, expected, offset
        )
        self.counters.skipped_read += len(skipped)
        # faust waits for acks of these offsets before it commits past them: it never will get them.
        await cast(Any, self.app.consumer)._add_gap(tp, expected, offset - 1)
        return skipped

    async def fetch_input_left_behind(self) -> None:
        """A hole at the end of a partition shows only when the partition's next message arrives.
        When a partition has been quiet for a while, compare its recorded next offset with its end;
        if input lies between, seek the consumer back to it, so that it comes through the agent."""
        consumer = cast(Any, self.app.consumer)
        now = time.monotonic()
        quiet = [
            tp
            for tp in consumer.assignment()
            if tp.topic in (self.source_name, self.partials_name)
            and now - max(self.last_input.get(tp, 0.0), self.assigned_at) > self.settings.input_quiet_s
        ]
        if not quiet:
            return
        ends = await consumer.highwaters(*quiet)
        for tp in quiet:
            expected = await self._expected_offset(tp, self._recorded_next(tp))
            end = ends.get(tp)
            if end is not None and end > expected:
                log.warning(
                    "input left behind at the end of a partition, fetching it again",
                    topic=tp.topic,
                    partition=tp.partition,
                    offsets=f"{expected}..{end - 1}",
                )
                self.counters.refetched += 1
                self.last_input[tp] = now  # give the consumer time to deliver it
                await consumer.seek(tp, expected)

    def _recorded_next(self, tp: faust.types.TP) -> int | None:
        """The next offset recorded for an input partition (raw or partials), if any."""
        if tp.topic == self.source_name:
            return self._progress(tp.partition)[1]
        raw = self.merge_progress.get(str(tp.partition))
        return int(raw) if raw else None

    async def _expected_offset(self, tp: faust.types.TP, recorded: int | None) -> int:
        """The next offset to process on an input partition: as recorded, else (nothing recorded
        yet) where the group's consumer starts."""
        if recorded is not None:
            return recorded
        if tp not in self.group_starts:  # asked once per assignment, not on every timer tick
            # faust's consumer read the group's commits when it was assigned the partition; this
            # asks no other client to talk to the group coordinator on the worker's behalf.
            consumer = cast(Any, self.app.consumer)
            committed = consumer._committed_offset[tp]
            if committed is None:
                committed = (await consumer.earliest_offsets(tp)).get(tp) or 0
            self.group_starts[tp] = int(committed)
        return self.group_starts[tp]

    async def _process(self, topic: str, partition: int, offset: int, value: bytes, stream_time: int) -> int:
        """One raw message (a batch of events); returns the partition's new stream time."""
        self.counters.messages += 1
        self.last_activity = time.monotonic()
        valid, rejected = decode_events(value)
        for rejection in rejected:
            await self.deadletter.send(value=self._dead_letter(rejection, topic, partition, offset))
        self.counters.invalid += len(rejected)
        valid = await self._reroute(valid, partition)
        times = [epoch_ms(e.event_time) for e in valid]
        index = self._dedup_index(partition)
        verdicts = index.admit(offset, zip((e.event_id for e in valid), times, strict=True))
        fresh = [(e, at) for e, at, ok in zip(valid, times, verdicts, strict=True) if ok]
        self.counters.duplicates += len(valid) - len(fresh)
        if fresh:  # the index recorded this batch's ids and newest event time: persist that record
            self.dedup_table[f"{partition}:{offset}"] = index.batches[offset]
        docs, late, stream_time = self._enrich(fresh, stream_time)
        self.counters.valid += len(docs)
        self.counters.late += len(late)
        self.stream_times[str(partition)] = orjson.dumps([stream_time, offset + 1])
        for chunk in _chunks_by_bytes(docs, self.settings.enriched_max_bytes):
            await self.enriched.send(value=chunk)
        if late:
            await self.late.send(value=orjson.dumps(late, option=JSON_OPTIONS))
        source = f"{topic}:{partition}"
        by_partition: dict[int, dict[str, Any]] = defaultdict(dict)
        for window, state in rollup(fold_minutes(docs)).items():
            key = window.encode()
            by_partition[window_partition(key, self.partitions)][key] = state.to_wire()
        for target, states in sorted(by_partition.items()):
            body = {"src": source, "o": offset, "st": stream_time, "w": states}
            await self.partials.send(value=orjson.dumps(body), partition=target)
        for gone in index.expire(stream_time):
            self.dedup_table.pop(f"{partition}:{gone}", None)
        return stream_time

    async def _reroute(self, events: list[RawCallEvent], partition: int) -> list[RawCallEvent]:
        """Events whose id belongs to another partition go there, so that dedup sees every copy."""
        mine: list[RawCallEvent] = []
        elsewhere: dict[int, list[RawCallEvent]] = defaultdict(list)
        for e in events:
            target = partition_for_event_id(e.event_id, self.partitions)
            (mine if target == partition else elsewhere[target]).append(e)
        for target, moved in sorted(elsewhere.items()):
            await self.source.send(value=encode_events(moved), partition=target)
            self.counters.rerouted += len(moved)
        return mine

    def _enrich(
        self, events: list[tuple[RawCallEvent, int]], stream_time: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """Enrich in order; an event whose minute window closed (end + grace) before the partition's
        stream time reached it is late: flagged, published to the late topic, and still counted."""
        grace = self.settings.grace_ms
        docs: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []
        for e, at in events:
            doc = enrich(e, self.prices)
            if at - at % MINUTE_MS + MINUTE_MS + grace < stream_time:
                doc["late"] = True
                late.append(doc)
            elif at > stream_time:
                stream_time = at
            docs.append(doc)
        return docs, late, stream_time

    def _progress(self, partition: int) -> tuple[int, int | None]:
        """The partition's stream time and the offset of the next message to process (None if
        not recorded: nothing processed yet, or a record from before offsets were recorded)."""
        raw = self.stream_times.get(str(partition))
        if not raw:
            return 0, None
        record = orjson.loads(raw)
        return (int(record), None) if isinstance(record, int) else (int(record[0]), int(record[1]))

    def _dedup_index(self, partition: int) -> DedupIndex:
        index = self.dedup_indexes.get(partition)
        if index is None:
            index = self.dedup_indexes[partition] = DedupIndex(self.settings.dedup_horizon_ms)
            prefix = f"{partition}:"
            for key, record in self.dedup_table.items():
                if key.startswith(prefix):
                    index.restore(int(key[len(prefix) :]), record)
        return index

    def _dead_letter(self, rejection: RejectedEvent, topic: str, partition: int, offset: int) -> bytes:
        letter = dead_letter(
            rejection.reason,
            "stream.validate",
            rejection.original,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            batch_index=rejection.index,
        )
        return encode_dead_letter(letter)

    # -- merge_windows ---------------------------------------------------------------------------

    async def merge_windows(self, events: Sequence[faust.types.EventT]) -> None:
        """Merge a batch of partials, then publish every changed window once."""
        self.last_activity = time.monotonic()
        by_partition: dict[faust.types.TP, list[bytes]] = {}
        next_offsets: dict[int, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if tp not in by_partition:
                skipped = await self._input_skipped_before(tp, offset, self._recorded_next(tp))
                by_partition[tp] = [m.value() for m in skipped]
            by_partition[tp].append(event.value)
            next_offsets[tp.partition] = offset + 1
        changed: set[str] = set()
        for value in (value for values in by_partition.values() for value in values):
            body = orjson.loads(value)
            source, offset = body["src"], body["o"]
            self.window_time_ms = max(self.window_time_ms, body["st"])
            for key, wire in body["w"].items():
                partial = WindowState.from_wire(wire)
                entry = self._window(key, partial)
                if entry.applied.get(source, -1) >= offset:
                    self.counters.partials_skipped += 1
                    continue
                entry.state.merge(partial)
                entry.applied[source] = offset
                entry.version += 1
                changed.add(key)
                self.counters.partials_merged += 1
        # Publish first, then record in the changelog: a crash in between re-merges the same
        # partials into the same versions, which the sink treats as already written.
        for key in sorted(changed):
            await self._publish(key, self.window_cache[key])
        for key in sorted(changed):
            self.windows[key] = self.window_cache[key].to_bytes()
        for partition, next_offset in next_offsets.items():
            self.merge_progress[str(partition)] = str(next_offset).encode()
        self.counters.windows_published += len(changed)
        self._expire_windows()
        await self.app.producer.flush()

    async def _publish(self, key: str, entry: WindowEntry) -> None:
        aggregate = entry.state.to_aggregate(WindowKey.decode(key), self.version_base + entry.version)
        await self.aggregates.send(
            key=key.encode(), value=orjson.dumps(aggregate, option=JSON_OPTIONS), force=True
        )

    async def republish_windows(self) -> None:
        """After recovery, publish every window this worker now owns once more, in case a crash
        came between a window's changelog write and its publication (versions make it harmless)."""
        self.republish_pending = False
        self.assigned_at = time.monotonic()  # partitions count as quiet from here, not from the revoke
        count = 0
        for key, raw in list(self.windows.items()):
            if raw and key not in self.window_cache:
                await self._publish(key, WindowEntry.from_bytes(raw))
                count += 1
        await self.app.producer.flush()
        log.info("windows republished after recovery", windows=count)

    def _window(self, key: str, first: WindowState) -> WindowEntry:
        """The window's entry: cached, else recovered from the table, else new (labelled like `first`)."""
        entry = self.window_cache.get(key)
        if entry is None:
            raw = self.windows.get(key)
            if raw:
                entry = WindowEntry.from_bytes(raw)
            else:
                entry = WindowEntry(WindowState(provider=first.provider, model_family=first.model_family))
            self.window_cache[key] = entry
        return entry

    def _expire_windows(self) -> None:
        """Windows past their retention leave memory and the changelog (a tombstone)."""
        for key in [
            k for k in self.window_cache if expired(WindowKey.decode(k), self.window_time_ms, self.retention)
        ]:
            del self.window_cache[key]
            self.windows.pop(key, None)
            self.counters.windows_expired += 1

    def forget_cached_state(self) -> None:
        """After a rebalance, in-memory views are rebuilt from the tables, which faust recovered."""
        self.dedup_indexes.clear()
        self.window_cache.clear()
        self.group_starts.clear()
        self.republish_pending = True


def _chunks_by_bytes(docs: list[dict[str, Any]], max_bytes: int) -> list[bytes]:
    """Serialise enriched events (each once) into JSON arrays of at most `max_bytes` each
    (a single larger event gets an array of its own)."""
    chunks: list[bytes] = []
    parts: list[bytes] = []
    size = 2
    for doc in docs:
        encoded = orjson.dumps(doc, option=JSON_OPTIONS)
        if parts and size + len(encoded) + 1 > max_bytes:
            chunks.append(b"[" + b",".join(parts) + b"]")
            parts, size = [], 2
        parts.append(encoded)
        size += len(encoded) + 1
    if parts:
        chunks.append(b"[" + b",".join(parts) + b"]")
    return chunks


def faust_broker_settings(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka's view of the same connection settings the confluent clients use."""
    conf: dict[str, Any] = {"broker": [f"kafka://{s.strip()}" for s in kafka.bootstrap_servers.split(",")]}
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        if kafka.ssl_certificate_location:
            ssl_context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location)
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        if kafka.sasl_mechanism == "PLAIN":
            conf["broker_credentials"] = faust.SASLCredentials(
                username=kafka.sasl_username, password=password, ssl_context=ssl_context
            )
        else:
            conf["broker_credentials"] = faust.SASLCredentials(
                username=kafka.sasl_username,
                password=password,
                mechanism=kafka.sasl_mechanism,
                ssl_context=ssl_context,
            )
    elif ssl_context is not None:
        conf["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return conf


def internal_topic_specs(app: faust.App) -> list[TopicSpec]:
    """The topics faust would create for `app` (the tables' changelogs, the assignor's leader topic),
    with their partitions and cleanup policy. `callstream stream` creates them before the worker
    starts: a worker that creates them itself on a fresh Apache Kafka can join its group before the
    broker lists them, and then faust assigns it no changelog partitions and every table write
    fails with PartitionsMismatch (seen with Kafka 4.1; noida-db lists a topic at once)."""
    specs: list[TopicSpec] = []
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = ",".join(p for p, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        config = {"cleanup.policy": policy} if policy else {}
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        config.update({key: str(value) for key, value in (topic.config or {}).items()})
        partitions = table.partitions or app.conf.topic_partitions
        specs.extend(TopicSpec(name, partitions, config) for name in topic.topics)
    specs.append(TopicSpec(f"{app.conf.id}-__assignor-__leader", 1))
    return specs


def create_app(
    settings: StreamSettings | None = None,
    kafka: KafkaSettings | None = None,
    stop_when_idle_s: float | None = None,
) -> tuple[faust.App, StreamPipeline]:
    settings = settings or StreamSettings()
    kafka = kafka or KafkaSettings()
    app_id = settings.app_id if not settings.generation else f"{settings.app_id}-g{settings.generation}"
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        app_id,
        **faust_broker_settings(kafka),
        broker_client_id=kafka.client_id,
        store="memory://",
        datadir=str(settings.data_dir / f"{app_id}-data"),
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        producer_compression_type="lz4",
        producer_max_request_size=8 * 1024 * 1024,
        producer_acks=-1,
        web_enabled=False,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        autodiscover=False,
    )
    pipeline = StreamPipeline(app, settings, kafka)

    @app.agent(pipeline.source, name="process_calls")
    async def process_calls(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await pipeline.process_calls(event)

    @app.agent(pipeline.partials, name="merge_windows")
    async def merge_windows(stream: faust.StreamT) -> None:
        # take_events acks the batch only after the body returns: after the flush.
        within = settings.flush_interval_ms / 1000
        batches = stream.take_events(settings.max_pending_partials, within=within)  # type: ignore[attr-defined]
        async for events in batches:
            await pipeline.merge_windows(events)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        pipeline.forget_cached_state()

    @app.timer(interval=1.0)
    async def republish_after_recovery() -> None:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if pipeline.republish_pending and not app.rebalancing and recovered:
            await pipeline.republish_windows()

    @app.timer(interval=5.0)
    async def fetch_input_left_behind() -> None:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if recovered and not app.rebalancing and not pipeline.republish_pending:
            await pipeline.fetch_input_left_behind()

    @app.timer(interval=5.0)
    async def report() -> None:
        log.info("stream progress", **pipeline.counters.__dict__)
        idle_for = time.monotonic() - pipeline.last_activity
        if stop_when_idle_s is not None and idle_for > stop_when_idle_s:
            log.info("idle, stopping", idle_s=round(idle_for, 1))
            os.kill(os.getpid(), signal.SIGTERM)

    return app, pipeline
