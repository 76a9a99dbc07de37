"""What one raw message becomes: the per-message core of `process_calls`, without Kafka.

Given a raw message (a batch of events) and its partition's state, `RawProcessor.process` decodes
and validates the events, refuses event times outside the accepted bounds, sets aside events whose
id belongs to another partition, drops duplicates, enriches, flags late events, caps the distinct
names per dimension, and folds the batch into partial window states. It returns everything the
shell must publish and persist; the shell (streams/app.py) only moves those bytes. Deterministic:
the same input and state give the same outcome, which is what makes re-processing after a crash
harmless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from callstream.producers.contract import (
    RawCallEvent,
    decode_positioned_events,
    encode_events,
    partition_for_event_id,
)
from callstream.producers.deadletter import dead_letter
from callstream.producers.packing import split_into_arrays
from callstream.producers.prepare import RAW_EVENT_FIELDS
from callstream.streams.clock import EventTimeBounds, PartitionClock, is_late
from callstream.streams.dedup import DedupIndex
from callstream.streams.enrich import enrich, epoch_ms
from callstream.streams.keycap import KeyCap
from callstream.streams.partials import Partial, encode_partial, partials_by_partition
from callstream.streams.pricing import PriceCatalogue
from callstream.streams.windows import Labels, WindowKey, WindowState, labels_of, windows_of

JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


@dataclass(frozen=True, slots=True)
class RawInput:
    """One raw message and where it came from."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    published_ms: int  # streams.clock.publication_ms of its message timestamp

    @property
    def origin(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class PartitionState:
    """What `process` reads and updates for one raw partition (rebuilt from the changelog)."""

    clock: PartitionClock
    dedup: DedupIndex
    keycap: KeyCap


@dataclass
class Outcome:
    enriched: list[bytes] = field(default_factory=list)  # JSON-array messages for calls.enriched
    late: list[dict[str, Any]] = field(default_factory=list)  # for calls.late
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    elsewhere: dict[int, bytes] = field(default_factory=dict)  # raw partition -> events owned there
    partials: dict[int, bytes] = field(default_factory=dict)  # partials partition -> partial
    dedup_record: bytes | None = None  # this input's batch record, when it admitted any id
    expired_batches: list[int] = field(default_factory=list)  # dedup batch records to delete
    valid: int = 0
    invalid: int = 0
    out_of_bounds: int = 0
    duplicates: int = 0
    rerouted: int = 0


class RawProcessor:
    def __init__(
        self,
        prices: PriceCatalogue,
        partitions: int,
        grace_ms: int,
        bounds: EventTimeBounds,
        enriched_max_bytes: int,
    ) -> None:
        self.prices = prices
        self.partitions = partitions
        self.grace_ms = grace_ms
        self.bounds = bounds
        self.enriched_max_bytes = enriched_max_bytes

    def process(self, state: PartitionState, raw: RawInput) -> Outcome:
        """Every stage, in order (`callstream bench stream --core` times each of them)."""
        out = Outcome()
        valid = self.decode(raw, out)
        mine = self.bound(valid, raw, out)
        fresh = self.deduplicate(mine, state, raw, out)
        docs = self.enrich_events(fresh, state.clock, out)
        out.valid = len(docs)
        out.enriched = self.pack(docs)
        windows = self.fold(docs, state.keycap)
        out.partials = self.partials(windows, state, raw)
        out.expired_batches = state.dedup.expire(state.clock.stream_time_ms)
        state.clock.next_offset = raw.offset + 1
        return out

    def decode(self, raw: RawInput, out: Outcome) -> list[tuple[int | None, RawCallEvent]]:
        """Decode and validate the message's events; the rejected ones become dead letters."""
        valid, rejected = decode_positioned_events(raw.value, raw.origin)
        for rejection in rejected:
            out.dead_letters.append(
                self._letter(rejection.reason, "stream.validate", rejection.original, raw, rejection.index)
            )
        out.invalid = len(rejected)
        return valid

    def bound(
        self, valid: list[tuple[int | None, RawCallEvent]], raw: RawInput, out: Outcome
    ) -> list[tuple[RawCallEvent, int]]:
        """Events within the accepted event-time bounds that this partition owns, with their time."""
        events: list[tuple[RawCallEvent, int]] = []
        for index, event in valid:
            at = epoch_ms(event.event_time)
            reason = self.bounds.violation(at, raw.published_ms)
            if reason is None:
                events.append((event, at))
            else:
                out.dead_letters.append(
                    self._letter(reason, "stream.event_time", event.to_wire(), raw, index)
                )
                out.out_of_bounds += 1
        return self._set_aside_others(events, raw.partition, out)

    @staticmethod
    def deduplicate(
        mine: list[tuple[RawCallEvent, int]], state: PartitionState, raw: RawInput, out: Outcome
    ) -> list[tuple[RawCallEvent, int]]:
        verdicts = state.dedup.admit(raw.offset, ((e.event_id, at) for e, at in mine))
        fresh = [pair for pair, ok in zip(mine, verdicts, strict=True) if ok]
        out.duplicates = len(mine) - len(fresh)
        if fresh:
            out.dedup_record = state.dedup.batches[raw.offset]
        return fresh

    def pack(self, docs: list[dict[str, Any]]) -> list[bytes]:
        """The enriched events as JSON-array messages of at most `enriched_max_bytes`."""
        return list(
            split_into_arrays(
                [orjson.dumps(doc, option=JSON_OPTIONS) for doc in docs], self.enriched_max_bytes
            )
        )

    def fold(self, docs: list[dict[str, Any]], keycap: KeyCap) -> dict[WindowKey, WindowState]:
        return windows_of(docs, self._capped_labels(keycap))

    def partials(
        self, windows: dict[WindowKey, WindowState], state: PartitionState, raw: RawInput
    ) -> dict[int, bytes]:
        """The message's windows as one encoded partial per partials partition that owns some."""
        source = f"{raw.topic}:{raw.partition}"
        return {
            target: encode_partial(Partial(source, raw.offset, state.clock.stream_time_ms, states))
            for target, states in partials_by_partition(windows, self.partitions).items()
        }

    def _set_aside_others(
        self, events: list[tuple[RawCallEvent, int]], partition: int, out: Outcome
    ) -> list[tuple[RawCallEvent, int]]:
        """Events whose id belongs to another partition go there, so that dedup sees every copy."""
        mine: list[tuple[RawCallEvent, int]] = []
        elsewhere: dict[int, list[RawCallEvent]] = defaultdict(list)
        for event, at in events:
            target = partition_for_event_id(event.event_id, self.partitions)
            if target == partition:
                mine.append((event, at))
            else:
                elsewhere[target].append(event)
        out.elsewhere = {target: encode_events(moved) for target, moved in sorted(elsewhere.items())}
        out.rerouted = sum(len(moved) for moved in elsewhere.values())
        return mine

    def enrich_events(
        self, events: list[tuple[RawCallEvent, int]], clock: PartitionClock, out: Outcome
    ) -> list[dict[str, Any]]:
        """Enrich in order; a late event is flagged and published to the late topic, and still counted."""
        docs: list[dict[str, Any]] = []
        for event, at in events:
            doc = enrich(event, self.prices)
            if is_late(at, clock.stream_time_ms, self.grace_ms):
                doc["late"] = True
                out.late.append(doc)
            else:
                clock.observe(at)
            docs.append(doc)
        return docs

    @staticmethod
    def _capped_labels(keycap: KeyCap) -> Callable[[dict[str, Any]], Labels]:
        """Labels with each dimension's name capped per day (see streams.keycap)."""

        def labels(doc: dict[str, Any]) -> Labels:
            at = epoch_ms(doc["event_time"])
            model, provider, family, service, user = labels_of(doc)
            return (
                keycap.name("model", at, model),
                keycap.name("provider", at, provider),
                keycap.name("model_family", at, family),
                keycap.name("service", at, service),
                keycap.name("user", at, user),
            )

        return labels

    @staticmethod
    def _letter(reason: str, stage: str, original: Any, raw: RawInput, index: int | None) -> dict[str, Any]:
        return dead_letter(
            reason,
            stage,
            original,
            source_topic=raw.topic,
            source_partition=raw.partition,
            source_offset=raw.offset,
            batch_index=index,
            fields=RAW_EVENT_FIELDS,
        )
