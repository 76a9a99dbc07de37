"""`callstream ingest`: JSON-lines call logs (an LLM gateway client's or callstream's own) -> the raw topic.

Lines are mapped onto the event contract (producers.gateway_log), checked with the same rules as
recorded calls (producers.prepare: redaction, privacy option, caps), packed per raw-topic
partition of their event ids into JSON arrays (producers.packing: units of up to
`batch_max_events` lines, each message under `batch_max_bytes`, lz4) and produced with the
ingestion time as the message timestamp (event time stays in the payload: an emulator or a topic
with short retention would otherwise expire a backfill of old logs on arrival).

Every line ends up as an event or as a dead letter, whatever it holds: not JSON, invalid UTF-8,
absurd numbers or times, metadata nested a thousand deep, a line of 50 MB (longer than
`max_line_bytes` it is never read into memory whole). A bad line is counted, logged (scrubbed)
and sent to the dead-letter topic as a DeadLetter with stage "ingest", reason `file:line: why`,
`source_file` and `source_line`, its original redacted like everything else; ingestion goes on.

The checkpoint (per followed path: device, inode, byte offset, line count) moves past a unit only
once Kafka acknowledged every message of it and of every unit before it, so a restart resumes
with no gap; after a clean stop (SIGTERM, end of input) there is no duplicate either. After a
crash, the units produced but not yet checkpointed are sent again with the same event ids
(log_id, or a hash of the file's inode, the line's offset and its content), which downstream dedups.
"""

from __future__ import annotations

import hashlib
import re
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
from callstream.producers.gateway_log import (
    GATEWAY_FIELDS,
    GatewayTimestamp,
    LineFormat,
    line_event_id,
    line_fields,
)
from callstream.producers.packing import pack_by_partition
from callstream.producers.prepare import (
    DROPPED_KEY,
    RAW_EVENT_FIELDS,
    Policy,
    build_event,
    contract_fields,
    safe_original,
)
from callstream.producers.publisher import describe_error, librdkafka_logger
from callstream.producers.redaction import scrub
from callstream.producers.settings import ProducerSettings
from callstream.producers.tail import Checkpoint, FilePosition, FileTailer, Line
from callstream.settings import KafkaSettings, state_dir

log = logs.get(__name__)

METADATA_TIMEOUT_S = 10.0


LINE_FIELDS = {**RAW_EVENT_FIELDS, **contract_fields(GATEWAY_FIELDS)}
"""What a bad line's dead letter keeps: the fields of either line format; the rest is dropped, named."""


_HEAD_FIELD = re.compile(
    rb'"(?P<name>[A-Za-z_]{1,32})"\s*:\s*(?P<value>"(?:[^"\\]|\\.){0,1024}"|-?[0-9][0-9.eE+\-]{0,31}|true|false|null)'
)
TOO_LONG_TO_READ = "the rest of a line too long to read (fields other than its scalar known ones)"


def head_fields(head: bytes, policy: Policy) -> dict[str, Any]:
    """What a dead letter keeps of a line too long to read whole (only its head was kept): the
    scalar fields of the line formats found in the head (the first of each name), never the rest,
    which is where a logged prompt or response would be."""
    found: dict[str, Any] = {}
    for match in _HEAD_FIELD.finditer(head):
        name = match.group("name").decode()
        if name in LINE_FIELDS and not LINE_FIELDS[name] and name not in found:
            try:
                found[name] = orjson.loads(match.group("value"))
            except orjson.JSONDecodeError:
                continue
    safe = safe_original(found, policy, LINE_FIELDS)
    return {**safe, DROPPED_KEY: [TOO_LONG_TO_READ]}


def default_checkpoint(paths: Sequence[Path]) -> Path:
    """The checkpoint of one set of followed files, under the state directory: two ingests of
    different files never share (and overwrite) one checkpoint."""
    names = "\n".join(sorted(str(Path(p).absolute()) for p in paths))
    return state_dir("ingest") / f"checkpoint-{hashlib.sha256(names.encode()).hexdigest()[:16]}.json"


class LineRejected(ValueError):
    """A line that cannot become an event; the message is the reason for its dead letter."""


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
    """Consecutive lines of one file: its raw messages (one per partition, or more when large) plus
    their dead letters. Checkpointable once every message of it is acknowledged."""

    key: str
    position: FilePosition | None = None
    events: list[tuple[str, bytes]] = field(default_factory=list)
    size: int = 2
    letters: list[bytes] = field(default_factory=list)
    outstanding: int = 0


class Ingestor:
    def __init__(
        self,
        paths: Sequence[Path],
        checkpoint_path: Path | None = None,
        kafka: KafkaSettings | None = None,
        settings: ProducerSettings | None = None,
        *,
        line_format: LineFormat = "auto",
        naive_zone: tzinfo = UTC,
        gateway_timestamp: GatewayTimestamp = "end",
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
        self.topic = self.kafka.topic(self.settings.raw_topic)
        self.deadletter_topic = self.kafka.topic(self.settings.deadletter_topic)
        self.checkpoint_path = checkpoint_path or default_checkpoint(self.paths)
        self.checkpoint = Checkpoint(self.checkpoint_path)
        log.info("ingest checkpoint", path=str(self.checkpoint_path), files=len(self.paths))
        self.line_format: LineFormat = line_format
        self.naive_zone = naive_zone
        self.gateway_timestamp: GatewayTimestamp = gateway_timestamp
        self.follow = follow
        self.batch_max_events = batch_max_events
        self.batch_max_bytes = self.settings.batch_max_bytes
        self.poll_interval_s = poll_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.max_pending_units = max_pending_units
        self.policy = Policy.from_settings(self.settings)
        self.stats = IngestStats()
        conf = self.settings.confluent_config(self.kafka) | {"logger": librdkafka_logger()}
        self._producer = (producer_factory or _confluent_producer)(conf)
        self._partitions: int | None = None
        self._units: deque[_Unit] = deque()
        self._current: _Unit | None = None
        self._retries: list[tuple[_Unit, str, bytes, int | None]] = []
        self._last_save = 0.0
        self._dirty = False
        self._stop = threading.Event()
        self.tailers = [
            FileTailer(p, self.checkpoint.positions.get(str(p)), max_line_bytes=self.settings.max_line_bytes)
            for p in self.paths
        ]

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
            consumed += line.position.offset - line.start_offset
            self.stats.lines += 1
            unit = self._unit_for(key)
            before = unit.position
            unit.position = line.position
            if not line.truncated and not line.text.strip():
                continue
            try:
                event_id, encoded = self._event(line)
            except Exception as exc:  # whatever the line holds: a dead letter, and on to the next
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
            unit.events.append((event_id, encoded))
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

    def _event(self, line: Line) -> tuple[str, bytes]:
        if line.truncated:
            raise LineRejected(
                f"line of {line.length} bytes is longer than max_line_bytes ({self.settings.max_line_bytes})"
            )
        doc = parse_line(line.text)
        fields = line_fields(doc, self.line_format, self.naive_zone, self.gateway_timestamp)
        if not fields.get("event_id"):
            fields["event_id"] = line_event_id(line.text, line.position.inode, line.start_offset)
        event = build_event(fields, self.policy)
        return event["event_id"], orjson.dumps(event)

    def _bad_line(self, unit: _Unit, line: Line, exc: Exception) -> None:
        where = f"{line.source}:{line.number}"
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else _reason(exc)
        self.stats.bad_lines += 1
        log.warning(
            "bad line sent to the dead-letter topic",
            file=line.source,
            line=line.number,
            reason=scrub(reason, self.policy.secrets)[:500],
        )
        letter = dead_letter(
            f"{where}: {reason}",
            "ingest",
            self._safe_original(line),
            source_file=line.source,
            source_line=line.number,
            secrets=frozenset(self.policy.secrets),
        )
        letter["original_bytes"] = max(letter["original_bytes"], line.length)
        letter["original_truncated"] = letter["original_truncated"] or line.truncated
        unit.letters.append(encode_dead_letter(letter))

    def _safe_original(self, line: Line) -> Any:
        """The line as it may leave the process: a JSON object cut to the fields of the line formats
        (safe_original: the rest dropped and named), the privacy option applied and redacted by key
        and pattern, anything else as bytes (dead_letter scrubs them)."""
        if line.truncated:
            return head_fields(line.text, self.policy)
        try:
            doc = orjson.loads(line.text)
            if isinstance(doc, dict):
                safe = safe_original(doc, self.policy, LINE_FIELDS)
                return line.text if safe == doc else safe  # the exact line when nothing changed
        except Exception:
            pass
        return line.text

    def _partition_count(self) -> int | None:
        """The raw topic's partition count, asked once (retried while Kafka does not answer, until stop)."""
        while self._partitions is None and not self._stop.is_set():
            try:
                metadata = self._producer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
                topic = metadata.topics.get(self.topic)
                if topic is not None and topic.error is None and topic.partitions:
                    self._partitions = len(topic.partitions)
                    log.info("raw topic partitions", topic=self.topic, partitions=self._partitions)
                    break
                log.warning(
                    "raw topic not available yet",
                    topic=self.topic,
                    error=describe_error(getattr(topic, "error", None)),
                )
            except Exception as exc:
                log.warning("Kafka metadata unavailable; retrying", error=describe_error(exc))
            self._stop.wait(min(5.0, max(0.1, self.poll_interval_s)))
        return self._partitions

    def _close_unit(self) -> None:
        """Produce the current unit's messages; it joins the queue of units awaiting acknowledgement."""
        unit, self._current = self._current, None
        if unit is None:
            return
        if unit.position is None:  # nothing consumed into it
            return
        messages: list[tuple[str, bytes, int | None]] = []
        if unit.events:
            partitions = self._partition_count()
            if partitions is None:  # stopped before Kafka told: nothing produced, nothing checkpointed
                unit.outstanding = 1
                self._units.append(unit)
                return
            for packed in pack_by_partition(
                unit.events, partitions, self.batch_max_bytes, self.batch_max_events
            ):
                messages.append((self.topic, packed.payload, packed.partition))
        messages += [(self.deadletter_topic, letter, None) for letter in unit.letters]
        unit.events, unit.letters = [], []
        unit.outstanding = len(messages)
        self._units.append(unit)
        for topic, payload, partition in messages:
            self._produce(unit, topic, payload, partition)
        while len(self._units) > self.max_pending_units and not self._stop.is_set():
            self._service(wait_s=0.1)  # Kafka is behind (or down): wait, but still obey a stop

    def _produce(self, unit: _Unit, topic: str, payload: bytes, partition: int | None) -> None:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is None:
                unit.outstanding -= 1
                if topic == self.topic:
                    self.stats.messages += 1
                else:
                    self.stats.dead_letters += 1
                return
            self.stats.delivery_failures += 1
            log.warning("Kafka delivery failed; will retry", error=describe_error(err), topic=topic)
            self._retries.append((unit, topic, payload, partition))

        timestamp = int(time.time() * 1000)
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, payload, timestamp=timestamp, on_delivery=on_delivery)
                else:
                    self._producer.produce(
                        topic, payload, partition=partition, timestamp=timestamp, on_delivery=on_delivery
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
            for unit, topic, payload, partition in retries:
                self._produce(unit, topic, payload, partition)
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
            if self._partitions is None and self._stop.is_set():
                break
        self.stats.unacknowledged = sum(u.outstanding for u in self._units)
        if self.stats.unacknowledged:
            log.error(
                "messages not acknowledged by Kafka; the checkpoint stays before them",
                messages=self.stats.unacknowledged,
            )
        self._save()


def parse_line(text: bytes) -> dict[str, Any]:
    """A log line as a JSON object, or LineRejected with a plain reason ("not JSON", ...)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise LineRejected(f"not JSON: invalid UTF-8 at byte {bad.start}") from None
        if "recursion" in str(exc).lower() or "depth" in str(exc).lower():
            raise LineRejected("not JSON: nested too deep to read") from None
        raise LineRejected(f"not JSON (at character {exc.pos})") from None
    if not isinstance(doc, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        raise LineRejected(f"not a JSON object: {kind.get(type(doc), 'null')}")
    return doc


def _reason(exc: Exception) -> str:
    """A line's rejection reason: our own messages as they are, anything unexpected by its type."""
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        return str(exc) or type(exc).__name__
    return f"cannot be read as a call ({type(exc).__name__}: {str(exc)[:200]})"


def _confluent_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(conf)
