"""Event time as a value: the bounds an event's time must keep, lateness, and a partition's clock.

The stream's notion of "now" is each raw partition's stream time: the newest event time it has
accepted. Dedup expiry, window retention and lateness all follow it, so one absurd timestamp must
never move it. An event's time is therefore checked against when it was published (its Kafka
message timestamp, never later than the worker's own clock): at most `max_age_ms` before, at most
`max_skew_ms` after. Outside, the event is dead-lettered with the reason. A replay of history sets
its own bound instead: the range it recomputes. Pure: the shell passes the clock readings in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from callstream.durations import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _span(ms: int) -> str:
    """A duration a person reads: '3 days', '7 minutes', '12 seconds'."""
    for unit, size in (("day", DAY_MS), ("hour", HOUR_MS), ("minute", MINUTE_MS), ("second", SECOND_MS)):
        if ms >= size:
            count = ms // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{ms} ms"


def publication_ms(message_timestamp_ms: int | None, now_ms: int) -> int:
    """When an input was published: its message timestamp, but never later than this worker's
    clock (a producer's clock, or a hostile timestamp, cannot push the bound into the future)."""
    if message_timestamp_ms is None or message_timestamp_ms <= 0:
        return now_ms
    return min(message_timestamp_ms, now_ms)


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    """Which event times the stream accepts."""

    max_age_ms: int
    max_skew_ms: int
    range_ms: tuple[int, int] | None = None  # a replay's [from, to): replaces the age and skew bounds

    def violation(self, event_ms: int, published_ms: int) -> str | None:
        """Why `event_ms` is not acceptable for an input published at `published_ms`, or None."""
        if self.range_ms is not None:
            start, end = self.range_ms
            if start <= event_ms < end:
                return None
            return f"event_time {iso(event_ms)} is outside the replayed range [{iso(start)}, {iso(end)})"
        if event_ms > published_ms + self.max_skew_ms:
            return (
                f"event_time {iso(event_ms)} is {_span(event_ms - published_ms)} after the event was "
                f"published ({iso(published_ms)}); at most {_span(self.max_skew_ms)} of clock skew is "
                "accepted (CALLSTREAM_STREAM_MAX_CLOCK_SKEW_MS)"
            )
        if event_ms < published_ms - self.max_age_ms:
            return (
                f"event_time {iso(event_ms)} is {_span(published_ms - event_ms)} before the event was "
                f"published ({iso(published_ms)}); events older than {_span(self.max_age_ms)} are not "
                "accepted (CALLSTREAM_STREAM_MAX_EVENT_AGE_MS; replay older history instead)"
            )
        return None


def minute_window_closes_ms(event_ms: int, grace_ms: int) -> int:
    """When the one-minute window of `event_ms` stops taking on-time events: its end plus grace."""
    return event_ms - event_ms % MINUTE_MS + MINUTE_MS + grace_ms


def is_late(event_ms: int, stream_time_ms: int, grace_ms: int) -> bool:
    """An event is late when its minute window closed (end + grace) before the partition's stream
    time reached it. Late events are still counted (as corrections) and flagged."""
    return minute_window_closes_ms(event_ms, grace_ms) < stream_time_ms


@dataclass(slots=True)
class PartitionClock:
    """One raw partition's progress: its stream time, and the offset of the next input to process
    (None until recorded). Snapshotted to the changelog after every input."""

    stream_time_ms: int = 0
    next_offset: int | None = None

    def observe(self, event_ms: int) -> None:
        """An accepted, on-time event: stream time only moves forward."""
        if event_ms > self.stream_time_ms:
            self.stream_time_ms = event_ms

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.stream_time_ms, self.next_offset])

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> PartitionClock:
        """A snapshot; also the older form that held only the stream time."""
        if not raw:
            return cls()
        record = orjson.loads(raw)
        if isinstance(record, int):
            return cls(record, None)
        stream_time, next_offset = record
        return cls(int(stream_time), None if next_offset is None else int(next_offset))
