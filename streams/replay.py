"""Reprocess a range of history: copy its raw events into a fresh replay topic for a new generation.

A replay worker (`callstream stream --replay --generation G`) then recomputes the range's windows
from scratch, with today's price catalogue (say, corrected prices). Its window versions start at
G << 32, above every older generation's, so its documents replace the old ones in the sink; the
enriched calls keep their ids and are overwritten too. Ranges cover whole UTC days, because 1-day
windows are recomputed whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from callstream import topics
from callstream.errors import ConfigurationError
from callstream.producers.contract import RawCallEvent, decode_events
from callstream.producers.loadgen import PublishReport, publish
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_to_end

DAY_S = 86_400


class ReplayRangeError(ConfigurationError):
    pass


@dataclass
class ReplayReport:
    generation: int
    scanned_messages: int
    copied: PublishReport


def new_generation() -> int:
    """Seconds since the epoch: later replays outrank earlier ones."""
    return int(time.time())


def check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = (
        start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC),
        (end.astimezone(UTC) if end.tzinfo else end.replace(tzinfo=UTC)),
    )
    for name, value in (("--from", start), ("--to", end)):
        if int(value.timestamp()) % DAY_S:
            raise ReplayRangeError(
                f"{name} {value.isoformat()} is not a UTC midnight: a replay recomputes whole days, "
                "because each 1-day window is rebuilt from scratch"
            )
    if end <= start:
        raise ReplayRangeError(f"--to ({end.date()}) must be after --from ({start.date()})")
    return start, end


def raw_events_between(
    kafka: KafkaSettings,
    start: datetime,
    end: datetime,
    scanned: list[int],
    stop: threading.Event | None = None,
) -> Iterator[RawCallEvent]:
    """Valid raw events with start <= event time < end, reading the raw topic up to its current end.
    Invalid ones are skipped: the live stream already dead-lettered them."""
    for message in iter_to_end(kafka, kafka.topic(topics.RAW), stop=stop):
        scanned[0] += 1
        origin = f"{message.topic()}:{message.partition()}:{message.offset()}"
        valid, _ = decode_events(message.value(), origin)
        yield from (event for event in valid if start <= event.event_time < end)


def copy_range(
    kafka: KafkaSettings,
    start: datetime,
    end: datetime,
    generation: int,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> ReplayReport:
    start, end = check_range(start, end)
    scanned = [0]
    events = raw_events_between(kafka, start, end, scanned, stop)
    copied = publish(
        kafka, kafka.topic(topics.replay_topic(generation)), events, batch_size=1000, on_progress=on_progress
    )
    return ReplayReport(generation, scanned[0], copied)
