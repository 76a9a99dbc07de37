"""What the alert worker knows about one series, and the window arithmetic over it. Pure.

A *series* is what a rule group watches: one model, provider, model family, service or user
(`SeriesId("model", "gpt-4.1")`), all calls together (`TOTAL`, fed by the provider dimension:
every call has exactly one provider), or a pipeline signal sampled by the worker itself (the
lag of a consumer group, the end offsets of a dead-letter topic).

The stream publishes the *full* state of every changed window with a growing version, so a
series keeps, per window, the newest version it has seen: re-deliveries, replays and reordering
change nothing, and a lost update is repaired by the next one. Sums over a time range add whole
windows: the one-minute windows that make up "the last 5 minutes", or the largest windows that
tile a calendar day or month of a time zone (day windows where they fit, else hour windows,
else minute windows).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from callstream.alerts.rules import (
    BudgetRule,
    DeadLetterRule,
    FlatlineRule,
    ForecastRule,
    RulesFile,
    SpikeRule,
    StalledRule,
    ThresholdRule,
)
from callstream.budgets import BudgetFile
from callstream.streams.contract import WINDOW_SIZES_MS
from callstream.streams.sketch import LatencySketch

MINUTE_MS = WINDOW_SIZES_MS["1m"]
HOUR_MS = WINDOW_SIZES_MS["1h"]
DAY_MS = WINDOW_SIZES_MS["1d"]
PICO_PER_USD = 10**12
SIZES_DESCENDING = ("1d", "1h", "1m")

TOTAL_DIMENSION = "all"
TOTAL_SOURCE_DIMENSION = "provider"
CONSUMER_DIMENSION = "consumer"
DEADLETTER_DIMENSION = "deadletters"


@dataclass(frozen=True, slots=True, order=True)
class SeriesId:
    dimension: str
    key: str

    def encode(self) -> str:
        return f"{self.dimension}|{self.key}"

    @classmethod
    def decode(cls, text: str) -> SeriesId:
        dimension, key = text.split("|", 1)
        return cls(dimension, key)

    def partition(self, partitions: int) -> int:
        """Partition of the series on the alerts.series topic and in every alert table."""
        return zlib.crc32(self.encode().encode()) % partitions

    def __str__(self) -> str:
        return "all calls" if self == TOTAL else f"{self.dimension}={self.key}"


TOTAL = SeriesId(TOTAL_DIMENSION, "*")


@dataclass(slots=True)
class WindowStats:
    """The measures of one window that rules use, at one version."""

    version: int
    requests: int = 0
    errors: int = 0
    cost_pico: int = 0
    unpriced: int = 0
    latency_sum_us: int = 0
    sketch: LatencySketch | None = None
    active_ms: int = 0  # when calls were last seen arriving in this window (0: never)

    def to_wire(self) -> list[Any]:
        sketch = self.sketch.to_wire() if self.sketch is not None else None
        return [
            self.version,
            self.requests,
            self.errors,
            self.cost_pico,
            self.unpriced,
            self.latency_sum_us,
            sketch,
            self.active_ms,
        ]

    @classmethod
    def from_wire(cls, doc: list[Any]) -> WindowStats:
        version, requests, errors, cost, unpriced, latency_sum, sketch, active = doc
        return cls(
            version,
            requests,
            errors,
            cost,
            unpriced,
            latency_sum,
            LatencySketch.from_wire(sketch) if sketch is not None else None,
            active,
        )


@dataclass(frozen=True, slots=True)
class SeriesUpdate:
    """One window update as one series receives it: the message on alerts.series."""

    series: SeriesId
    source_key: str  # the aggregate's key (a provider, for TOTAL)
    size: str
    start_ms: int
    stats: WindowStats
    at_ms: int  # when the stream published the update (its Kafka timestamp)

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "s": self.series.encode(),
                "k": self.source_key,
                "z": self.size,
                "t": self.start_ms,
                "w": self.stats.to_wire(),
                "at": self.at_ms,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> SeriesUpdate:
        doc = orjson.loads(raw)
        return cls(
            SeriesId.decode(doc["s"]),
            doc["k"],
            doc["z"],
            doc["t"],
            WindowStats.from_wire(doc["w"]),
            doc["at"],
        )


@dataclass(slots=True)
class Totals:
    """Measures summed over windows; metrics are ratios of sums (never means of ratios)."""

    requests: int = 0
    errors: int = 0
    cost_pico: int = 0
    unpriced: int = 0
    latency_sum_us: int = 0
    sketch: LatencySketch | None = None
    windows: int = 0

    def add(self, stats: WindowStats) -> None:
        self.requests += stats.requests
        self.errors += stats.errors
        self.cost_pico += stats.cost_pico
        self.unpriced += stats.unpriced
        self.latency_sum_us += stats.latency_sum_us
        self.windows += 1
        if stats.sketch is not None:
            if self.sketch is None:
                self.sketch = LatencySketch()
            self.sketch.merge(stats.sketch)

    @property
    def cost_usd(self) -> float:
        return self.cost_pico / PICO_PER_USD

    def metric(self, name: str) -> float | None:
        """A rule metric; None when it has no value (no calls, or no latency sketch)."""
        if name == "requests":
            return float(self.requests)
        if name == "errors":
            return float(self.errors)
        if name == "unpriced_requests":
            return float(self.unpriced)
        if name == "cost_usd":
            return self.cost_usd
        if not self.requests:
            return None
        if name == "error_rate":
            return self.errors / self.requests
        if name == "latency_mean_ms":
            return self.latency_sum_us / 1000 / self.requests
        if name.startswith("latency_p") and name.endswith("_ms"):
            quantile = int(name[len("latency_p") : -len("_ms")]) / 100
            return self.sketch.quantile(quantile) if self.sketch is not None else None
        raise ValueError(f"unknown metric {name!r}")


def minute_floor(ms: int) -> int:
    return ms - ms % MINUTE_MS


@dataclass
class SeriesData:
    """Everything the worker holds for one series: windows per source key, and samples."""

    windows: dict[str, dict[tuple[str, int], WindowStats]] = field(default_factory=dict)
    samples: dict[int, dict[str, Any]] = field(default_factory=dict)

    # -- windows

    def apply(self, update: SeriesUpdate) -> WindowStats | None:
        """Keep the update if it is newer than what is held; returns what to store, else None.
        Activity (for flatline) is when the stream published a version with more calls, but never
        later than the window's end (a late correction is not a sign of life now)."""
        per_key = self.windows.setdefault(update.source_key, {})
        slot = (update.size, update.start_ms)
        held = per_key.get(slot)
        if held is not None and held.version >= update.stats.version:
            return None
        stats = update.stats
        end = update.start_ms + WINDOW_SIZES_MS[update.size]
        grew = stats.requests > (held.requests if held is not None else 0)
        active = min(update.at_ms, end) if grew else (held.active_ms if held is not None else 0)
        stored = WindowStats(
            stats.version,
            stats.requests,
            stats.errors,
            stats.cost_pico,
            stats.unpriced,
            stats.latency_sum_us,
            stats.sketch,
            max(active, held.active_ms if held is not None else 0),
        )
        per_key[slot] = stored
        return stored

    def restore(self, source_key: str, size: str, start_ms: int, stats: WindowStats) -> None:
        self.windows.setdefault(source_key, {})[(size, start_ms)] = stats

    def minutes(self, start_ms: int, end_ms: int) -> Totals:
        """One-minute windows that start in `[start_ms, end_ms)`, over every source key."""
        totals = Totals()
        for per_key in self.windows.values():
            for t in range(start_ms - start_ms % MINUTE_MS, end_ms, MINUTE_MS):
                if t < start_ms:
                    continue
                stats = per_key.get(("1m", t))
                if stats is not None:
                    totals.add(stats)
        return totals

    def recent(self, now_ms: int, minutes: int) -> Totals:
        """The last `minutes` one-minute windows up to now, the current (filling) one included."""
        current = minute_floor(now_ms)
        return self.minutes(current - (minutes - 1) * MINUTE_MS, current + MINUTE_MS)

    def period(self, start_ms: int, end_ms: int, now_ms: int) -> Totals:
        """Calls with event time in `[start_ms, end_ms)` up to now, tiled with the largest windows
        held: a window counts whole, so it must lie inside the period, or (the one still filling)
        hold nothing beyond it yet."""
        totals = Totals()
        for per_key in self.windows.values():
            _cover(per_key, start_ms, end_ms, now_ms, totals)
        return totals

    def last_active_ms(self) -> int | None:
        newest = max(
            (stats.active_ms for per_key in self.windows.values() for stats in per_key.values()), default=0
        )
        return newest or None

    def expire(self, now_ms: int, retention_ms: Mapping[str, int]) -> list[tuple[str, str, int]]:
        """Windows whose end plus their size's retention is behind now: dropped, and returned."""
        gone: list[tuple[str, str, int]] = []
        for source_key, per_key in list(self.windows.items()):
            for size, start in list(per_key):
                if start + WINDOW_SIZES_MS[size] + retention_ms.get(size, 0) < now_ms:
                    del per_key[(size, start)]
                    gone.append((source_key, size, start))
            if not per_key:
                del self.windows[source_key]
        return gone

    # -- samples (pipeline signals the worker measures itself)

    def add_sample(self, at_ms: int, values: dict[str, Any]) -> None:
        self.samples[at_ms] = values

    def sample_at_or_before(self, at_ms: int) -> tuple[int, dict[str, Any]] | None:
        times = [t for t in self.samples if t <= at_ms]
        if not times:
            return None
        newest = max(times)
        return newest, self.samples[newest]

    def samples_since(self, at_ms: int) -> list[tuple[int, dict[str, Any]]]:
        return sorted((t, v) for t, v in self.samples.items() if t >= at_ms)

    def expire_samples(self, before_ms: int) -> list[int]:
        """Samples older than `before_ms`, except the newest of them (the baseline for a count)."""
        old = sorted(t for t in self.samples if t < before_ms)
        gone = old[:-1]
        for t in gone:
            del self.samples[t]
        return gone

    @property
    def empty(self) -> bool:
        return not self.windows and not self.samples


def _cover(
    windows: dict[tuple[str, int], WindowStats], start_ms: int, end_ms: int, now_ms: int, totals: Totals
) -> None:
    finer: dict[str, set[int]] = {"1d": set(), "1h": set()}  # spans that hold smaller windows
    for size, start in windows:
        if size == "1m":
            finer["1h"].add(start - start % HOUR_MS)
            finer["1d"].add(start - start % DAY_MS)
        elif size == "1h":
            finer["1d"].add(start - start % DAY_MS)
    t = start_ms
    while t < end_ms and t <= now_ms:
        step = 0
        for size in SIZES_DESCENDING:
            length = WINDOW_SIZES_MS[size]
            if t % length or min(t + length, now_ms) > end_ms:
                continue
            stats = windows.get((size, t))
            if stats is not None:
                totals.add(stats)
                step = length
                break
            if size == "1m" or t not in finer[size]:
                step = length  # nothing held in this span at any size: no calls (or long expired)
                break
        if not step:  # not on a minute boundary (never for modern zones): to the next one
            step = MINUTE_MS - t % MINUTE_MS
        t += step


# -- which series an aggregate update feeds -----------------------------------------------------


@dataclass(frozen=True)
class Routing:
    """Which window sizes of which dimensions the rules need, per key and for all calls."""

    sizes: Mapping[str, frozenset[str]]
    total_sizes: frozenset[str]
    sketches: bool  # some rule reads latency percentiles: keep one-minute sketches

    def targets(self, dimension: str, key: str, size: str) -> list[SeriesId]:
        found = []
        if size in self.sizes.get(dimension, frozenset()):
            found.append(SeriesId(dimension, key))
        if dimension == TOTAL_SOURCE_DIMENSION and size in self.total_sizes:
            found.append(TOTAL)
        return found

    @property
    def dimensions(self) -> set[str]:
        return set(self.sizes) | ({TOTAL_SOURCE_DIMENSION} if self.total_sizes else set())


def zone_needs_minutes(zone: ZoneInfo, year: int = 2026) -> bool:
    """Whether the zone's days start off the hour (India +5:30, Nepal +5:45, ...) at any time of
    the year: then calendar days need one-minute windows at their edges."""
    from datetime import datetime

    for month in range(1, 13):
        for day in (1, 15):
            offset = datetime(year, month, day, 12, tzinfo=zone).utcoffset()
            if offset is not None and offset.total_seconds() % 3600:
                return True
    return False


def routing_for(rules: RulesFile, budgets: BudgetFile) -> Routing:
    sizes: dict[str, set[str]] = {}
    total: set[str] = set()
    sketches = False

    def want(dimension: str | None, wanted: Iterable[str]) -> None:
        if dimension is None or dimension == TOTAL_DIMENSION:
            total.update(wanted)
        else:
            sizes.setdefault(dimension, set()).update(wanted)

    calendar = {"1h", "1d"} | ({"1m"} if zone_needs_minutes(budgets.zone) else set())
    for rule in rules.rules:
        if isinstance(rule, ThresholdRule | SpikeRule):
            want(rule.group_by, {"1m"})
            sketches = sketches or rule.metric.startswith("latency_p")
        elif isinstance(rule, FlatlineRule):
            want(rule.group_by, {"1m", "1h"})  # service and user come in hour windows only
        elif isinstance(rule, BudgetRule | ForecastRule):
            for budget in budgets.budgets:
                if rule.budgets is None or budget.name in rule.budgets:
                    want(None if budget.scope == "all" else budget.scope, calendar)
    return Routing({d: frozenset(s) for d, s in sizes.items()}, frozenset(total), sketches)


def retention_for(rules: RulesFile, budgets: BudgetFile) -> dict[str, int]:
    """How long after its end a window of each size is still needed."""
    minutes = 0.0
    for rule in rules.rules:
        if isinstance(rule, ThresholdRule):
            minutes = max(minutes, rule.window_minutes)
        elif isinstance(rule, SpikeRule):
            minutes = max(minutes, rule.window_minutes + rule.baseline_minutes)
        elif isinstance(rule, FlatlineRule):
            minutes = max(minutes, rule.minutes)
    retention = {"1m": int(minutes * MINUTE_MS) + 10 * MINUTE_MS, "1h": 2 * DAY_MS, "1d": 2 * DAY_MS}
    if any(b.period == "month" for b in budgets.budgets):
        retention["1h"] = retention["1d"] = 33 * DAY_MS  # a month's edges in the zone are hour windows
    if zone_needs_minutes(budgets.zone):
        retention["1m"] = max(retention["1m"], 2 * DAY_MS)  # a day's edges are minute windows
    return retention


def sample_horizon_ms(rules: RulesFile) -> int:
    """How far back pipeline samples are needed (dead-letter windows, stalled periods)."""
    minutes = 5.0
    for rule in rules.rules:
        if isinstance(rule, DeadLetterRule):
            minutes = max(minutes, rule.window_minutes)
        elif isinstance(rule, StalledRule):
            minutes = max(minutes, rule.minutes)
    return int(minutes * MINUTE_MS) + 5 * MINUTE_MS


class InvalidAggregate(ValueError):
    """An aggregate update the alert worker cannot read (it is dead-lettered)."""


def updates_from_aggregate(aggregate: Any, at_ms: int, routing: Routing) -> list[SeriesUpdate]:
    """The series updates one aggregate update (a WindowAggregate dict) feeds; [] when no rule
    needs it. Raises InvalidAggregate when the fields the rules read are missing or wrong."""
    if not isinstance(aggregate, dict):
        raise InvalidAggregate(f"expected an object, got {type(aggregate).__name__}")
    try:
        dimension, key, size = aggregate["dimension"], aggregate["key"], aggregate["window_size"]
        if size not in WINDOW_SIZES_MS or not isinstance(key, str) or not isinstance(dimension, str):
            raise InvalidAggregate(f"bad dimension/key/window_size: {dimension!r}/{key!r}/{size!r}")
        targets = routing.targets(dimension, key, size)
        if not targets:
            return []
        from datetime import datetime

        start = aggregate["window_start"]
        start_ms = int(datetime.fromisoformat(start).timestamp() * 1000) if isinstance(start, str) else None
        if start_ms is None:
            raise InvalidAggregate("window_start is not an ISO-8601 string")
        requests = int(aggregate["requests"])
        mean = aggregate["latency_ms"]["mean"]
        sketch = None
        if routing.sketches and size == "1m" and aggregate.get("latency_sketch"):
            sketch = LatencySketch.from_wire(aggregate["latency_sketch"])
        stats = WindowStats(
            version=int(aggregate["version"]),
            requests=requests,
            errors=int(aggregate["errors"]),
            cost_pico=round(float(aggregate["cost_usd"]) * PICO_PER_USD),
            unpriced=int(aggregate["unpriced_requests"]),
            latency_sum_us=round(float(mean) * requests * 1000) if mean is not None else 0,
            sketch=sketch,
        )
    except InvalidAggregate:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidAggregate(f"{type(exc).__name__}: {exc}") from None
    return [SeriesUpdate(series, key, size, start_ms, stats, at_ms) for series in targets]
