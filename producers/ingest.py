"""`callstream ingest`: JSON-lines call logs (the seed client's or callstream's own) -> the raw topic.

Lines are mapped onto the event contract (producers.seed_format), checked with the same rules as
recorded calls (producers.prepare), packed into JSON arrays (one Kafka message per unit of up to
`batch_max_events` lines, under `batch_max_bytes`, lz4) and produced with the ingestion time as the
message timestamp (event time stays in the payload: an emulator or a topic with short retention
would otherwise expire a backfill of old logs on arrival).

A bad line is reported with file and line number, counted, and sent to the dead-letter topic as a
DeadLetter with stage "ingest"; ingestion goes on. The checkpoint (per followed path: device,
inode, byte offset, line count) moves past a unit only once Kafka acknowledged every message of
it and of every unit before it, so a restart resumes with no gap; after a clean stop (SIGTERM,
end of input) there is no duplicate either. After a crash, the units produced but not yet
checkpointed are sent again with the same event ids (log_id, or a hash of the line), which
downstream dedups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from callstream import logs
from callstream.producers.contract import describe_validation_error
from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.producers.prepare import Policy, build_event
from callstream.producers.seed_format import LineFormat, SeedTimestamp, line_event_id, line_fields
from callstream.producers.settings import ProducerSettings
from callstream.producers.tail import Checkpoint, FilePosition, FileTailer, Line
from callstream.settings import KafkaSettings

log = logs.get(__name__)


@dataclass
class IngestStats:
    lines: int = 0
    events: int = 0
    bad_lines: int = 0
    messages: int = 0  # raw-topic messages acknowledged
    dead_letters: int = 0  # dead letters acknowledged
    delivery_failures: int = 0  # messages Kafka failed to take (re-sent)
    bytes_read: int = 0
    unacknowledged: int = 0  # messages still without acknowledgement at the end (not checkpointed)


@dataclass
class _Unit:
    """Consecutive lines of one file: one raw message plus their dead letters. Checkpointable once
    every message of it is acknowledged."""

    key: str
    position: FilePosition | None = None
    events: list[bytes] = field(default_factory=list)
    size: int = 2
    letters: list[bytes] = field(default_factory=list)
    outstanding: int = 0


class Ingestor:
    def __init__(
        self,
        paths: Sequence[Path],
        checkpoint_path: Path,
        kafka: KafkaSettings | None = None,
        settings: ProducerSettings | None = None,
        *,
        line_format: LineFormat = "auto",
        naive_zone: tzinfo = UTC,
        seed_timestamp: SeedTimestamp = "end",
        follow: bool = False,
        batch_max_events: int = 2_000,
        poll_interval_s: float = 0.2,
        checkpoint_interval_s: float = 1.0,
        max_pending_units: int = 64,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.paths = [Path(p).resolve() for p in paths]
        self.kafka = kafka or KafkaSettings()
        self.settings = settings or ProducerSettings()
        self.topic = self.settings.raw_topic(self.kafka)
        self.deadletter_topic = self.settings.deadletter_topic_name(self.kafka)
        self.checkpoint = Checkpoint(checkpoint_path)
        self.line_format: LineFormat = line_format
        self.naive_zone = naive_zone
        self.seed_timestamp: SeedTimestamp = seed_timestamp
        self.follow = follow
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = self.settings.batch_max_bytes
        self.poll_interval_s = poll_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.max_pending_units = max_pending_units
        self.policy = Policy.from_settings(self.settings)
        self.stats = IngestStats()
        conf = self.settings.confluent_config(self.kafka) | {
            "logger": logging.getLogger("callstream.librdkafka")
        }
        self._producer = (producer_factory or _confluent_producer)(conf)
        self._units: deque[_Unit] = deque()
        self._current: _Unit | None = None
        self._retries: list[tuple[_Unit, str, bytes]] = []
        self._last_save = 0.0
        self._dirty = False
        self._stop = threading.Event()
        self.tailers = [FileTailer(p, self.checkpoint.positions.get(str(p))) for p in self.paths]

    def bytes_remaining(self) -> int:
        return sum(t.size_remaining() for t in self.tailers)

    # ---- the loop ----

    def run(
        self,
        stop: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
        finish_timeout_s: float = 60.0,
    ) -> IngestStats:
        """Ingest until the input ends (or, when following, until `stop` is set)."""
        stop = self._stop = stop or threading.Event()
        try:
            while not stop.is_set():
                progressed = False
                for tailer in self.tailers:
                    lines = tailer.read(self.batch_max_events, final=not self.follow)
                    if not lines:
                        switched, lines = tailer.check_rotation()
                        progressed |= switched
                    if lines:
                        progressed = True
                        consumed = self._ingest(tailer.key, lines)
                        if on_progress is not None:
                            on_progress(consumed)
                self._service()
                if not progressed:
                    self._close_unit()
                    if not self.follow:
                        break
                    stop.wait(self.poll_interval_s)
            self._close_unit()
            self._finish(finish_timeout_s)
        finally:
            for tailer in self.tailers:
                tailer.close()
        return self.stats

    def _ingest(self, key: str, lines: list[Line]) -> int:
        consumed = 0
        for line in lines:
            consumed += len(line.text) + 1
            self.stats.lines += 1
            unit = self._unit_for(key)
            before = unit.position
            unit.position = line.position
            if not line.text.strip():
                continue
            try:
                encoded = orjson.dumps(self._event(line))
            except (ValidationError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
                self._bad_line(unit, line, exc)
                continue
            if unit.events and (
                len(unit.events) >= self.batch_max_events
                or unit.size + len(encoded) + 1 > self.batch_max_bytes
            ):
                unit.position = before  # this line belongs to the next unit
                self._close_unit()
                unit = self._unit_for(key)
                unit.position = line.position
            unit.events.append(encoded)
            unit.size += len(encoded) + 1
            self.stats.events += 1
        self.stats.bytes_read += consumed
        return consumed

    def _unit_for(self, key: str) -> _Unit:
        unit = self._current
        if unit is not None and unit.key != key:
            self._close_unit()
            unit = None
        if unit is None:
            unit = self._current = _Unit(key)
        return unit

    def _event(self, line: Line) -> dict[str, Any]:
        doc = orjson.loads(line.text)
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        fields = line_fields(doc, self.line_format, self.naive_zone, self.seed_timestamp)
        if not fields.get("event_id"):
            fields["event_id"] = line_event_id(line.text, line.number)
        return build_event(fields, self.policy)

    def _bad_line(self, unit: _Unit, line: Line, exc: Exception) -> None:
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        where = f"{line.source}:{line.number}"
        self.stats.bad_lines += 1
        log.warning(
            "bad line sent to the dead-letter topic", file=line.source, line=line.number, reason=reason
        )
        text = line.text.decode("utf-8", "replace")
        unit.letters.append(encode_dead_letter(dead_letter(f"{where}: {reason}", "ingest", text)))

    def _close_unit(self) -> None:
        """Produce the current unit's messages; it joins the queue of units awaiting acknowledgement."""
        unit, self._current = self._current, None
        if unit is None:
            return
        if unit.position is None:  # nothing consumed into it
            return
        messages: list[tuple[str, bytes]] = [(self.deadletter_topic, letter) for letter in unit.letters]
        if unit.events:
            messages.insert(0, (self.topic, b"[" + b",".join(unit.events) + b"]"))
        unit.events, unit.letters = [], []
        unit.outstanding = len(messages)
        self._units.append(unit)
        for topic, payload in messages:
            self._produce(unit, topic, payload)
        while len(self._units) > self.max_pending_units and not self._stop.is_set():
            self._service(wait_s=0.1)  # Kafka is behind (or down): wait, but still obey a stop

    def _produce(self, unit: _Unit, topic: str, payload: bytes) -> None:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is None:
                unit.outstanding -= 1
                if topic == self.topic:
                    self.stats.messages += 1
                else:
                    self.stats.dead_letters += 1
                return
            self.stats.delivery_failures += 1
            log.warning("Kafka delivery failed; will retry", error=str(err), topic=topic)
            self._retries.append((unit, topic, payload))

        while True:
            try:
                self._producer.produce(
                    topic, payload, timestamp=int(time.time() * 1000), on_delivery=on_delivery
                )
                return
            except BufferError:
                self._producer.poll(0.1)

    def _service(self, wait_s: float = 0.0) -> None:
        """Serve delivery reports, re-send failures, move the checkpoint over acknowledged units."""
        self._producer.poll(wait_s)
        if self._retries:
            retries, self._retries = self._retries, []
            time.sleep(min(1.0, self.poll_interval_s))  # Kafka is struggling: do not spin
            for unit, topic, payload in retries:
                self._produce(unit, topic, payload)
        while self._units and self._units[0].outstanding == 0:
            unit = self._units.popleft()
            if unit.position is not None:
                self.checkpoint.positions[unit.key] = unit.position
                self._dirty = True
        if self._dirty and time.monotonic() - self._last_save >= self.checkpoint_interval_s:
            self._save()

    def _save(self) -> None:
        self.checkpoint.save()
        self._dirty = False
        self._last_save = time.monotonic()

    def _finish(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._units and time.monotonic() < deadline:
            self._producer.flush(0.2)
            self._service()
        self.stats.unacknowledged = sum(u.outstanding for u in self._units)
        if self.stats.unacknowledged:
            log.error(
                "messages not acknowledged by Kafka; the checkpoint stays before them",
                messages=self.stats.unacknowledged,
            )
        self._save()


def _confluent_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(conf)
