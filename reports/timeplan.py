"""Time ranges, local-time buckets and the stored windows that cover them exactly. Pure.

A report asks about [start, end) in a time zone, grouped by local day or hour. The stream stores
UTC-aligned 1m, 1h and 1d windows, so each bucket is covered by the coarsest whole windows that
fit inside it: a UTC day is one 1d window, a day in Asia/Seoul (+09:00) is 24 1h windows, a day
in Asia/Kolkata (+05:30) is 30 1m windows, 23 1h windows and 30 1m windows. No window is split
and none is counted twice, so sums over buckets equal sums over the range.

Ranges are whole minutes (the finest stored window): their ends are rounded down to the minute.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callstream.durations import DAY_MS, HOUR_MS, MINUTE_MS
from callstream.errors import ConfigurationError
from callstream.streams.contract import WINDOW_SIZES_MS

COARSEST_FIRST = ("1d", "1h", "1m")
FINER = {"1d": "1h", "1h": "1m"}
BucketBy = Literal["day", "hour", "minute", "range"]

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_DURATION_MS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One stored aggregate window: its size and UTC start (epoch ms)."""

    start_ms: int
    size: str

    @property
    def end_ms(self) -> int:
        return self.start_ms + WINDOW_SIZES_MS[self.size]


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start_ms, end_ms) in epoch ms, reported in the time zone `tz_name`."""

    start_ms: int
    end_ms: int
    tz_name: str = "UTC"

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.tz_name)

    @property
    def empty(self) -> bool:
        return self.end_ms <= self.start_ms

    def local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.tz)

    def describe(self) -> str:
        return (
            f"{self.local(self.start_ms).isoformat(timespec='minutes')} to "
            f"{self.local(self.end_ms).isoformat(timespec='minutes')} ({self.tz_name})"
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    """A local day or hour (or the whole range) and the windows that cover it."""

    label: str
    start_ms: int
    end_ms: int
    windows: tuple[Window, ...]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r} (use an IANA name such as Asia/Seoul)"
        ) from None


def parse_duration_ms(text: str) -> int:
    """'90m', '24h', '7d', '2w' -> milliseconds."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ConfigurationError(f"duration {text!r} must look like 90m, 24h, 7d or 2w")
    return int(match.group(1)) * _DURATION_MS[match.group(2)]


def parse_instant_ms(text: str, tz: ZoneInfo) -> int:
    """An ISO-8601 date or date-time; without an offset it is read in the report's time zone."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text.strip()), time())
        except ValueError:
            raise ConfigurationError(
                f"time {text!r} is not ISO-8601 (e.g. 2026-05-04 or 2026-05-04T13:00+09:00)"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return round(parsed.timestamp() * 1000)


def resolve_range(
    since: str | None, until: str | None, last: str | None, tz_name: str, now_ms: int
) -> TimeRange:
    """The range a user asked for: `--since/--until`, or `--last` back from `--until` (default now);
    with neither, the last 7 days. Both ends are rounded down to whole minutes."""
    tz = zone(tz_name)
    if since and last:
        raise ConfigurationError("give --since or --last, not both")
    end = parse_instant_ms(until, tz) if until else now_ms
    start = parse_instant_ms(since, tz) if since else end - parse_duration_ms(last or "7d")
    start, end = start - start % MINUTE_MS, end - end % MINUTE_MS
    if end < start:
        raise ConfigurationError(f"the range ends before it starts ({since or last} .. {until or 'now'})")
    return TimeRange(start, end, tz_name)


def cover(start_ms: int, end_ms: int) -> list[Window]:
    """The coarsest whole windows that tile [start_ms, end_ms) (both whole minutes), in order."""
    if start_ms % MINUTE_MS or end_ms % MINUTE_MS:
        raise ValueError("cover() needs whole minutes")
    windows: list[Window] = []
    t = start_ms
    while t < end_ms:
        for size in COARSEST_FIRST:
            size_ms = WINDOW_SIZES_MS[size]
            if t % size_ms == 0 and t + size_ms <= end_ms:
                windows.append(Window(t, size))
                t += size_ms
                break
    return windows


def next_local_boundary(ms: int, tz: ZoneInfo, by: Literal["day", "hour", "minute"]) -> int:
    """The first local midnight (or local full hour, or minute) strictly after `ms`, as epoch ms."""
    if by == "minute":  # every zone's offset is whole minutes
        return ms - ms % MINUTE_MS + MINUTE_MS
    local = datetime.fromtimestamp(ms / 1000, tz)
    if by == "hour":
        into_hour = (local.minute * 60 + local.second) * 1000 + local.microsecond // 1000
        return ms - into_hour + HOUR_MS
    tomorrow = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=tz)
    return round(tomorrow.timestamp() * 1000)


def local_edges(span: TimeRange, by: BucketBy) -> list[int]:
    """Bucket edges within the range: its start, every local boundary inside it, its end."""
    if span.empty:
        return []
    edges = [span.start_ms]
    if by != "range":
        t = next_local_boundary(span.start_ms, span.tz, by)
        while t < span.end_ms:
            edges.append(t)
            t = next_local_boundary(t, span.tz, by)
    edges.append(span.end_ms)
    return edges


def bucket_label(span: TimeRange, start_ms: int, by: BucketBy) -> str:
    local = span.local(start_ms)
    if by == "day":
        return local.date().isoformat()
    if by == "hour":  # a partial first hour keeps the label of the local hour it belongs to
        return local.replace(minute=0, second=0, microsecond=0).isoformat(timespec="minutes")
    if by == "minute":
        return local.isoformat(timespec="minutes")
    return span.describe()


def buckets(span: TimeRange, by: BucketBy) -> list[Bucket]:
    """Local days, local hours, or the whole range, each with the windows that cover it exactly.

    A bucket cut by the range's ends is partial and keeps its local label; edges that fall on
    no whole minute (no zone has such offsets today) are rounded down to the minute."""
    edges = [e - e % MINUTE_MS for e in local_edges(span, by)]
    out = []
    for start, end in itertools.pairwise(edges):
        if end > start:
            out.append(Bucket(bucket_label(span, start, by), start, end, tuple(cover(start, end))))
    return out


def windows_of(bucket_list: Iterable[Bucket]) -> list[Window]:
    return [w for b in bucket_list for w in b.windows]


def window_sizes_used(windows: Iterable[Window]) -> dict[str, int]:
    """How many windows of each size a plan reads: the report prints it."""
    counts = Counter(w.size for w in windows)
    return {size: counts[size] for size in COARSEST_FIRST if counts[size]}


def runs(windows: Iterable[Window]) -> dict[str, list[tuple[int, int]]]:
    """Per size, the windows' starts merged into contiguous [first start, last end) runs: what a
    reader asks the store for (one range per run instead of one term per window)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for w in sorted(windows):
        spans = out.setdefault(w.size, [])
        if spans and spans[-1][1] == w.start_ms:
            spans[-1] = (spans[-1][0], w.end_ms)
        else:
            spans.append((w.start_ms, w.end_ms))
    return out


def refine(windows: Iterable[Window], uniform: Callable[[Window], bool]) -> list[Window]:
    """Split every window for which `uniform(window)` is false into the next finer windows, down
    to minutes: used where a price changes inside a window, so each piece has one price."""
    out: list[Window] = []
    for w in windows:
        if w.size in FINER and not uniform(w):
            out.extend(refine(_split(w), uniform))
        else:
            out.append(w)
    return out


def _split(window: Window) -> list[Window]:
    finer = FINER[window.size]
    step = WINDOW_SIZES_MS[finer]
    return [Window(t, finer) for t in range(window.start_ms, window.end_ms, step)]


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
