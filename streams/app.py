"""The faust-streaming app: raw events in; enriched events, dead letters, late events and window
aggregates out. A thin shell: the rules live in the core modules it calls.

Two agents:

- `process_calls` reads raw (or replay) batches. Per message, `streams.process.RawProcessor`
  decides everything (validation, event-time bounds, re-routing, dedup, enrichment, lateness,
  name caps, partial windows); this shell publishes the outcome and persists the partition's state
  in changelogged tables. faust commits the input offset only after a producer flush, which
  `faust_surface.complete_flush` makes wait for every output and table record (at-least-once).
  Whatever the message holds, it ends up processed or in a dead letter, and the partition moves on.
- `merge_windows` reads partials in batches, merges them into the window table through
  `streams.partials.WindowEntry` (which skips partials of source offsets it already merged), then
  publishes each changed window once, with a growing version, and only then acks its inputs.

Both agents record the next offset of every input partition and read input their consumer moved
past (streams.continuity).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from callstream import logs, topics
from callstream.errors import MissingExtraError
from callstream.metrics import Metrics

try:
    import faust
except ImportError as exc:
    raise MissingExtraError("stream", "faust-streaming") from exc

from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.producers.prepare import RAW_EVENT_FIELDS
from callstream.settings import KafkaSettings
from callstream.streams import faust_surface
from callstream.streams.catalogue import load_catalogue
from callstream.streams.clock import PartitionClock, publication_ms
from callstream.streams.continuity import EndOfPartitionCheck, InputContinuity, first_expected
from callstream.streams.dedup import DedupIndex
from callstream.streams.frame import byte_table, forget_unowned, settled, worker_app
from callstream.streams.keycap import KeyCap, parse_slot_key, slot_key
from callstream.streams.partials import (
    PARTIAL_FIELDS,
    PartialError,
    WindowEntry,
    decode_partial,
    window_partition,
)
from callstream.streams.process import JSON_OPTIONS, Outcome, PartitionState, RawInput, RawProcessor
from callstream.streams.settings import StreamSettings
from callstream.streams.windows import WindowKey, WindowState, expired
from callstream.topic_reader import group_committed, read_range

log = logs.get(__name__)


@dataclass
class Counters:
    messages: int = 0
    valid: int = 0
    invalid: int = 0
    out_of_bounds: int = 0  # events whose time is outside the accepted bounds (dead-lettered)
    failed: int = 0  # inputs no rule could process (dead-lettered whole)
    duplicates: int = 0
    rerouted: int = 0
    late: int = 0
    capped: int = 0  # names aggregated under `other` by the per-day cap
    skipped_read: int = 0  # input messages the consumer moved past, read directly
    refetched: int = 0  # times the consumer was sent back to input left at a partition's end
    redelivered: int = 0  # input delivered again within an assignment, not processed twice
    partials_merged: int = 0
    partials_skipped: int = 0
    partials_too_late: int = 0  # partial windows whose window had already left state
    partials_invalid: int = 0
    windows_published: int = 0
    windows_expired: int = 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StreamPipeline:
    """The state and the per-message steps of the app; faust only moves messages in and out."""

    def __init__(self, app: faust.App, settings: StreamSettings, kafka: KafkaSettings) -> None:
        self.app = app
        self.settings = settings
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
        self.processor = RawProcessor(
            load_catalogue(settings),
            self.partitions,
            settings.grace_ms,
            settings.event_time_bounds(),
            settings.enriched_max_bytes,
        )
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
        partitions = self.partitions
        raw_partition = int  # keys of the raw side's tables start with their raw partition
        # State of a raw partition, owned with it.
        self.raw_tables = {
            "stream_time": byte_table(app, "stream-time", partitions, raw_partition),
            "dedup": byte_table(app, "dedup", partitions, lambda key: int(key.split(":", 1)[0])),
            "key_cap": byte_table(app, "key-cap", partitions, lambda key: parse_slot_key(key)[0]),
        }
        # State of a partials partition: the windows placed on it, and its next offset to merge.
        self.merge_tables = {
            "windows": byte_table(app, "windows", partitions, lambda key: window_partition(key, partitions)),
            "merge_progress": byte_table(app, "merge-progress", partitions, raw_partition),
        }
        self.stream_times = self.raw_tables["stream_time"].table
        self.dedup_table = self.raw_tables["dedup"].table
        self.keycap_table = self.raw_tables["key_cap"].table
        self.windows = self.merge_tables["windows"].table
        self.merge_progress = self.merge_tables["merge_progress"].table
        self.partition_states: dict[int, PartitionState] = {}
        self.window_cache: dict[str, WindowEntry] = {}
        self.window_time_ms = 0
        self.republish_pending = False
        self.last_input: dict[faust.types.TP, float] = {}  # when each input partition last delivered
        self.continuity = InputContinuity()
        self.end_check = EndOfPartitionCheck()
        self.group_starts: dict[faust.types.TP, int] = {}  # where the group's consumer starts
        self.assigned_at = time.monotonic()
        self.metrics = Metrics("stream")
        self.metrics.expose(lambda: asdict(self.counters), "Stream worker counts since start")
        self.lag = self.metrics.gauge(
            "input_lag_messages", "Input messages not processed yet", ["topic", "partition"]
        )

    async def observe_lag(self) -> None:
        """Lag per input partition: its end minus the next offset this worker would process."""
        consumer = self.app.consumer
        inputs = [tp for tp in consumer.assignment() if tp.topic in (self.source_name, self.partials_name)]
        ends = await consumer.highwaters(*inputs) if inputs else {}
        self.lag.clear()
        for tp in inputs:
            end = ends.get(tp)
            recorded = self._recorded_next(tp)
            if end is not None and recorded is not None:
                self.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, end - recorded))

    # -- process_calls ---------------------------------------------------------------------------

    async def process_calls(self, event: faust.types.EventT) -> None:
        message = event.message
        holes = await self._input_skipped_before(message.tp, message.offset)
        if holes is None:
            return
        for skipped in holes:
            ts_type, ts_ms = skipped.timestamp()
            timestamp = None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts_ms
            await self._process(
                message.topic, message.partition, skipped.offset(), skipped.value(), timestamp
            )
        timestamp_ms = int(message.timestamp * 1000) if message.timestamp else None
        await self._process(message.topic, message.partition, message.offset, event.value, timestamp_ms)

    async def _process(
        self, topic: str, partition: int, offset: int, value: bytes | None, timestamp_ms: int | None
    ) -> None:
        """One raw message: processed, or (if no rule could) dead-lettered whole; either way the
        partition's state moves past it."""
        self.counters.messages += 1
        self.last_activity = time.monotonic()
        state = self._partition_state(partition)
        raw = RawInput(topic, partition, offset, value, publication_ms(timestamp_ms, _now_ms()))
        try:
            outcome = self.processor.process(state, raw)
        except Exception as exc:  # an input no rule foresaw (or a bug): never stop the partition for it
            log.exception("input could not be processed; dead-lettered", topic=topic, partition=partition)
            letter = dead_letter(
                f"could not be processed: {type(exc).__name__}: {exc}",
                "stream.process",
                value,
                source_topic=topic,
                source_partition=partition,
                source_offset=offset,
                fields=RAW_EVENT_FIELDS,
            )
            outcome = Outcome(dead_letters=[letter])
            state.clock.next_offset = offset + 1
            self.counters.failed += 1
        await self._publish_outcome(outcome)
        self._persist(partition, state, outcome)

    async def _publish_outcome(self, outcome: Outcome) -> None:
        counters = self.counters
        for letter in outcome.dead_letters:
            await self.deadletter.send(value=encode_dead_letter(letter))
        for target, value in outcome.elsewhere.items():
            await self.source.send(value=value, partition=target)
        for chunk in outcome.enriched:
            await self.enriched.send(value=chunk)
        if outcome.late:
            await self.late.send(value=orjson.dumps(outcome.late, option=JSON_OPTIONS))
        for target, value in outcome.partials.items():
            await self.partials.send(value=value, partition=target)
        counters.valid += outcome.valid
        counters.invalid += outcome.invalid
        counters.out_of_bounds += outcome.out_of_bounds
        counters.duplicates += outcome.duplicates
        counters.rerouted += outcome.rerouted
        counters.late += len(outcome.late)

    def _persist(self, partition: int, state: PartitionState, outcome: Outcome) -> None:
        """The partition's state after this input, in the changelogged tables."""
        offset = (state.clock.next_offset or 1) - 1
        if outcome.dedup_record is not None:
            self.dedup_table[f"{partition}:{offset}"] = outcome.dedup_record
        for gone in outcome.expired_batches:
            self.dedup_table.pop(f"{partition}:{gone}", None)
        for slot, record in state.keycap.snapshots().items():
            self.keycap_table[slot_key(partition, slot)] = record
        for slot in state.keycap.expire(state.clock.stream_time_ms - self.settings.max_event_age_ms):
            self.keycap_table.pop(slot_key(partition, slot), None)
        self.counters.capped = sum(s.keycap.bucketed for s in self.partition_states.values())
        self.stream_times[str(partition)] = state.clock.to_bytes()

    def _partition_state(self, partition: int) -> PartitionState:
        """The partition's state: cached, else rebuilt from the tables faust recovered."""
        state = self.partition_states.get(partition)
        if state is None:
            dedup = DedupIndex(self.settings.dedup_horizon_ms)
            keycap = KeyCap(self.settings.name_caps())
            prefix = f"{partition}:"
            for key, record in self.dedup_table.items():
                if key.startswith(prefix):
                    dedup.restore(int(key[len(prefix) :]), record)
            for key, record in self.keycap_table.items():
                owner, slot = parse_slot_key(key)
                if owner == partition:
                    keycap.restore(slot, record)
            clock = PartitionClock.from_bytes(self.stream_times.get(str(partition)))
            state = self.partition_states[partition] = PartitionState(clock, dedup, keycap)
        return state

    # -- input continuity (streams.continuity) -----------------------------------------------------

    async def _input_skipped_before(self, tp: faust.types.TP, offset: int) -> list[Message] | None:
        """The messages of `tp` from the offset expected next (streams.continuity) to `offset`,
        which the consumer moved past unprocessed (usually none). faust is told they are done, for
        its commits."""
        self.last_input[tp] = time.monotonic()
        hole = self.continuity.deliver(tp, offset, await self._expected_offset(tp))
        if hole is None:  # processed already since the assignment
            self.counters.redelivered += 1
            return None
        if not hole:
            return []
        log.warning(
            "input skipped by the consumer, reading it directly",
            topic=tp.topic,
            partition=tp.partition,
            offsets=f"{hole.start}..{hole.stop - 1}",
            recorded_next=self._recorded_next(tp),
            group_start=self.group_starts.get(tp),
        )
        loop = asyncio.get_running_loop()
        skipped = await loop.run_in_executor(
            None, read_range, self.kafka, tp.topic, tp.partition, hole.start, hole.stop
        )
        self.counters.skipped_read += len(skipped)
        await faust_surface.mark_done(self.app, tp, hole.start, hole.stop - 1)
        return skipped

    async def fetch_input_left_behind(self) -> None:
        """A hole at the end of a partition shows only when the partition's next message arrives.
        When a partition has been quiet for a while, compare the offset expected next with its end;
        if input lies between at two checks in a row (streams.continuity.EndOfPartitionCheck), seek
        the consumer back to it, so that it comes through the agent."""
        consumer = self.app.consumer
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
            expected = await self._expected_offset(tp)
            end = ends.get(tp)
            if end is not None and self.end_check.left_behind(tp, expected, end):
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
            return self._partition_state(tp.partition).clock.next_offset
        raw = self.merge_progress.get(str(tp.partition))
        return int(raw) if raw else None

    async def _expected_offset(self, tp: faust.types.TP) -> int:
        """The offset the next message of an input partition should have (streams.continuity). Its
        recorded next offset is read only before the first delivery after an assignment."""
        expected = self.continuity.expected(tp)
        if expected is not None:
            return expected
        if tp not in self.group_starts:  # asked once per assignment, not on every timer tick
            # The broker's record of the group's commit: faust's consumer holds it only after it
            # has committed itself, so a restarted worker read None there, started from the
            # earliest offset and read the whole retained input again.
            loop = asyncio.get_running_loop()
            committed = await loop.run_in_executor(
                None, group_committed, self.kafka, self.app.conf.id, tp.topic, tp.partition
            )
            if committed is None:
                committed = (await self.app.consumer.earliest_offsets(tp)).get(tp) or 0
            self.group_starts[tp] = int(committed)
        return first_expected(self._recorded_next(tp), self.group_starts[tp])

    # -- merge_windows ---------------------------------------------------------------------------

    async def merge_windows(self, events: Sequence[faust.types.EventT]) -> None:
        """Merge a batch of partials, then publish every changed window once."""
        self.last_activity = time.monotonic()
        by_partition: dict[faust.types.TP, list[tuple[int, bytes | None]]] = defaultdict(list)
        next_offsets: dict[int, int] = {}
        for event in events:  # a hole may open anywhere in a batch, not only before its first event
            tp, offset = event.message.tp, event.message.offset
            skipped = await self._input_skipped_before(tp, offset)
            if skipped is None:
                continue
            by_partition[tp].extend((m.offset(), m.value()) for m in skipped)
            by_partition[tp].append((offset, event.value))
            next_offsets[tp.partition] = offset + 1
        changed: set[str] = set()
        letters: list[dict[str, Any]] = []
        for tp, values in by_partition.items():
            for offset, value in values:
                changed |= self._merge_partial(tp, offset, value, letters)
        for letter in letters:
            await self.deadletter.send(value=encode_dead_letter(letter))
        # Publish first, then record in the changelog: a crash in between re-merges the same
        # partials into the same versions, which the sink treats as already written.
        # A snapshot of the entries: the recovery timer may run while this batch awaits its sends.
        entries = [(key, self.window_cache[key]) for key in sorted(changed)]
        for key, entry in entries:
            await self._publish(key, entry)
        for key, entry in entries:
            self.windows[key] = entry.to_bytes()
        for partition, next_offset in next_offsets.items():
            self.merge_progress[str(partition)] = str(next_offset).encode()
        self.counters.windows_published += len(changed)
        self._expire_windows()
        await self.app.producer.flush()

    def _merge_partial(
        self, tp: faust.types.TP, offset: int, value: bytes | None, letters: list[dict[str, Any]]
    ) -> set[str]:
        """Merge one partials message; what cannot be read goes to `letters`. Returns changed keys."""

        def letter(reason: str, original: Any) -> dict[str, Any]:
            return dead_letter(
                reason,
                "stream.merge",
                original,
                source_topic=tp.topic,
                source_partition=tp.partition,
                source_offset=offset,
                fields=PARTIAL_FIELDS,
            )

        try:
            partial = decode_partial(value)
        except PartialError as exc:
            self.counters.partials_invalid += 1
            letters.append(letter(str(exc), value))
            return set()
        # The window clock follows the sources' stream times, which the clock bounds already keep
        # near the present; it never runs ahead of this worker's clock by more than the skew.
        ceiling = _now_ms() + self.settings.max_clock_skew_ms
        self.window_time_ms = max(self.window_time_ms, min(partial.stream_time_ms, ceiling))
        changed: set[str] = set()
        for key, wire in partial.windows.items():
            try:
                window = WindowKey.decode(key)
                state = WindowState.from_wire(wire)
            except (ValueError, KeyError, TypeError) as exc:
                self.counters.partials_invalid += 1
                letters.append(letter(f"invalid partial window {key[:200]!r}: {exc}", wire))
                continue
            entry = self._window(key, window, state)
            if entry is None:
                self.counters.partials_too_late += 1
            elif entry.apply(state, partial.source, partial.offset):
                changed.add(key)
                self.counters.partials_merged += 1
            else:
                self.counters.partials_skipped += 1
        return changed

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
        self._forget_state_of_others()
        count = 0
        for key in list(self.windows.keys()):
            raw = self.windows.get(key)  # now: the merge agent may have expired it meanwhile
            if raw and key not in self.window_cache:
                # Into the cache, which is what expiry walks: a recovered window that no partial
                # touches again must still leave state once its retention is behind.
                entry = self.window_cache[key] = WindowEntry.from_bytes(raw)
                await self._publish(key, entry)
                count += 1
        await self.app.producer.flush()
        log.info("windows republished after recovery", windows=count)

    def state_counts(self) -> dict[str, int]:
        """What this worker holds, by kind: the counts that bound its memory (docs/stream.md).
        Tests compare them with what the input implies; the benchmark samples RSS."""
        states = self.partition_states.values()
        counts = {
            "windows": len(self.window_cache),
            "dedup_batches": sum(len(s.dedup.batches) for s in states),
            "name_slots": sum(len(s.keycap.admitted) for s in states),
            "partition_states": len(self.partition_states),
        }
        for name, placed in {**self.raw_tables, **self.merge_tables}.items():
            counts[f"table_{name}"] = faust_surface.local_key_count(placed.table)
        return counts

    def _forget_state_of_others(self) -> None:
        """Drop what this worker wrote to its tables for partitions it no longer owns (frame.
        forget_unowned): a stale window would be republished as the newest record of its key."""
        assignment = self.app.consumer.assignment()
        forget_unowned(self.raw_tables, {tp.partition for tp in assignment if tp.topic == self.source_name})
        forget_unowned(
            self.merge_tables, {tp.partition for tp in assignment if tp.topic == self.partials_name}
        )

    def _window(self, key: str, window: WindowKey, first: WindowState) -> WindowEntry | None:
        """The window's entry: cached, else recovered from the table, else new (labelled like
        `first`); None when the window has already left state (past its retention): recreating it
        would publish a fresh, lower version holding only the late events."""
        entry = self.window_cache.get(key)
        if entry is None:
            raw = self.windows.get(key)
            if raw:
                entry = WindowEntry.from_bytes(raw)
            elif expired(window, self.window_time_ms, self.retention):
                return None
            else:
                entry = WindowEntry.new(first)
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
        self.partition_states.clear()
        self.window_cache.clear()
        self.continuity.forget()
        self.end_check.forget()
        self.group_starts.clear()
        self.republish_pending = True


def create_app(
    settings: StreamSettings | None = None,
    kafka: KafkaSettings | None = None,
    stop_when_idle_s: float | None = None,
) -> tuple[faust.App, StreamPipeline]:
    settings = settings or StreamSettings()
    kafka = kafka or KafkaSettings()
    app_id = settings.app_id if not settings.generation else f"{settings.app_id}-g{settings.generation}"
    app = worker_app(
        app_id,
        kafka,
        partitions=settings.partitions,
        data_dir=settings.data_dir,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        producer_compression_type="lz4",
        producer_max_request_size=8 * 1024 * 1024,
    )
    pipeline = StreamPipeline(app, settings, kafka)

    @app.agent(pipeline.source, name="process_calls")
    async def process_calls(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await pipeline.process_calls(event)

    @app.agent(pipeline.partials, name="merge_windows")
    async def merge_windows(stream: faust.StreamT) -> None:
        within = settings.flush_interval_ms / 1000
        async for events in faust_surface.take_events(stream, settings.max_pending_partials, within):
            await pipeline.merge_windows(events)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        pipeline.forget_cached_state()

    @app.timer(interval=1.0)
    async def republish_after_recovery() -> None:
        if pipeline.republish_pending and settled(app):
            await pipeline.republish_windows()

    @app.timer(interval=5.0)
    async def fetch_input_left_behind() -> None:
        if settled(app) and not pipeline.republish_pending:
            await pipeline.fetch_input_left_behind()

    @app.timer(interval=5.0)
    async def report() -> None:
        log.info("stream progress", **asdict(pipeline.counters), state=pipeline.state_counts())
        if settled(app):
            await pipeline.observe_lag()
            pipeline.metrics.set_healthy(True, ttl_s=30)  # lapses if this timer stops running
        else:
            pipeline.metrics.set_healthy(False, "rebalancing or recovering tables")
        idle_for = time.monotonic() - pipeline.last_activity
        if stop_when_idle_s is not None and idle_for > stop_when_idle_s:
            log.info("idle, stopping", idle_s=round(idle_for, 1))
            os.kill(os.getpid(), signal.SIGTERM)

    return app, pipeline
