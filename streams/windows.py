"""Tumbling event-time windows and their mergeable aggregate state.

A `WindowState` is a value that merges (associative, commutative, exact: integer tokens,
pico-dollars and microseconds), so per-batch partials, several workers and replays combine to the
same result in any order. Events are folded once into one-minute states per label set (model,
provider, family, service, user); hour and day windows and the other dimensions are merges of
those, never a second pass over events.

What a window holds is declared once, in `FIELDS`: how one enriched event contributes, how two
states merge, the field's key on the wire and its place in the published aggregate. A new aggregate
field is one entry there (and its contract line in streams.contract.WindowAggregate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from callstream.producers.contract import LATEST_EVENT_TIME_MS
from callstream.streams.contract import WINDOW_SIZES_MS
from callstream.streams.pricing import PICO_PER_USD
from callstream.streams.sketch import LatencySketch

DIMENSIONS = ("model", "provider", "model_family", "service", "user")
# Per-service and per-user windows exist for the long range only: a minute per user is noise.
DIMENSION_SIZES: dict[str, tuple[str, ...]] = {
    "model": ("1m", "1h", "1d"),
    "provider": ("1m", "1h", "1d"),
    "model_family": ("1m", "1h", "1d"),
    "service": ("1h", "1d"),
    "user": ("1h", "1d"),
}
KEY_SEPARATOR = "|"
NONE_KEY = "(none)"  # the service or user of calls that named none
INT64_MAX = 2**63 - 1

Merge = Literal["sum", "min", "max", "counts", "sketch"]


def window_start(ts_ms: int, size_ms: int) -> int:
    return ts_ms - ts_ms % size_ms


@dataclass(frozen=True, slots=True)
class WindowKey:
    dimension: str
    key: str
    size: str
    start_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + WINDOW_SIZES_MS[self.size]

    def encode(self) -> str:
        """Also the aggregate's document id: deterministic per (dimension, key, size, start)."""
        return KEY_SEPARATOR.join((self.dimension, self.key, self.size, str(self.start_ms)))

    @classmethod
    def decode(cls, text: str) -> WindowKey:
        dimension, rest = text.split(KEY_SEPARATOR, 1)
        key, size, start = rest.rsplit(KEY_SEPARATOR, 2)
        if size not in WINDOW_SIZES_MS:
            raise ValueError(f"window key {text[:200]!r}: unknown window size {size!r}")
        start_ms = int(start)
        if not 0 <= start_ms <= LATEST_EVENT_TIME_MS:
            raise ValueError(f"window key {text[:200]!r}: start {start_ms} is out of range")
        return cls(dimension, key, size, start_ms)


@dataclass(frozen=True, slots=True)
class Field:
    """One thing a window aggregates.

    `of_event` is one enriched event's contribution (None: no contribution); `merge` says how two
    states combine; `wire` is the compact key in partials and the changelog; `path` is where the
    value goes in the published aggregate (None: used only to derive other values)."""

    name: str
    wire: str
    merge: Merge
    of_event: Callable[[dict[str, Any]], Any]
    path: tuple[str, ...] | None


def _one(_: dict[str, Any]) -> int:
    return 1


FIELDS: tuple[Field, ...] = (
    Field("requests", "n", "sum", _one, ("requests",)),
    Field("successes", "ok", "sum", lambda d: int(d["error_category"] is None), ("successes",)),
    Field("errors", "err", "sum", lambda d: int(d["error_category"] is not None), ("errors",)),
    Field(
        "errors_by_type",
        "et",
        "counts",
        lambda d: None if d["error_category"] is None else d["error_category"],
        ("errors_by_type",),
    ),
    Field("input_tokens", "ti", "sum", lambda d: d["input_tokens"], ("tokens", "input")),
    Field("output_tokens", "to", "sum", lambda d: d["output_tokens"], ("tokens", "output")),
    Field(
        "cache_read_input_tokens",
        "tcr",
        "sum",
        lambda d: d["cache_read_input_tokens"],
        ("tokens", "cache_read_input"),
    ),
    Field(
        "cache_creation_input_tokens",
        "tcc",
        "sum",
        lambda d: d["cache_creation_input_tokens"],
        ("tokens", "cache_creation_input"),
    ),
    Field(
        "reasoning_output_tokens",
        "tr",
        "sum",
        lambda d: d["reasoning_output_tokens"],
        ("tokens", "reasoning_output"),
    ),
    Field("cost_pico", "c", "sum", lambda d: d["cost_pico"] if d["priced"] else 0, ("cost_pico",)),
    Field("unpriced_requests", "up", "sum", lambda d: int(not d["priced"]), ("unpriced_requests",)),
    Field(
        "usage_missing_requests",
        "um",
        "sum",
        lambda d: int(d.get("usage") == "missing"),
        ("usage_missing_requests",),
    ),
    Field("latency_min_ms", "lmin", "min", lambda d: d["duration_ms"], ("latency_ms", "min")),
    Field("latency_max_ms", "lmax", "max", lambda d: d["duration_ms"], ("latency_ms", "max")),
    Field("latency_sum_us", "lsum", "sum", lambda d: round(d["duration_ms"] * 1000), None),
    Field("late_events", "late", "sum", lambda d: int(bool(d.get("late"))), ("late_events",)),
    Field("sketch", "sk", "sketch", lambda d: d["duration_ms"], None),
)


def _empty(field: Field) -> Any:
    if field.merge == "sum":
        return 0
    if field.merge == "counts":
        return {}
    if field.merge == "sketch":
        return LatencySketch()
    return None


def wire_int(value: int) -> int | str:
    """An integer as JSON can carry it: sums of hostile or simply huge inputs can pass 64 bits,
    which orjson (and Elasticsearch) refuse, so those travel as decimal strings, losslessly."""
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else str(value)


def read_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return int(value)


def _read_number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return float(value)


class WindowState:
    """The aggregate of one window so far, plus the labels of what it aggregates."""

    __slots__ = ("model_family", "provider", "values")

    def __init__(self, provider: str | None = None, model_family: str | None = None) -> None:
        self.values: dict[str, Any] = {f.name: _empty(f) for f in FIELDS}
        self.provider = provider
        self.model_family = model_family

    @classmethod
    def of(cls, provider: str | None = None, model_family: str | None = None, **values: Any) -> WindowState:
        """A state with the given field values (the rest empty); names must be in FIELDS."""
        state = cls(provider, model_family)
        unknown = set(values) - set(state.values)
        if unknown:
            raise TypeError(f"not window fields: {sorted(unknown)}")
        state.values.update(values)
        return state

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __getattr__(self, name: str) -> Any:
        """Fields read as attributes too (state.cost_pico); FIELDS is the list of what exists."""
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def requests(self) -> int:
        return int(self.values["requests"])

    @property
    def sketch(self) -> LatencySketch:
        sketch: LatencySketch = self.values["sketch"]
        return sketch

    def add_event(self, doc: dict[str, Any]) -> None:
        """Fold one enriched event (a dict in the EnrichedCallEvent shape) into this state."""
        values = self.values
        for field in FIELDS:
            contribution = field.of_event(doc)
            if contribution is None:
                continue
            name, merge = field.name, field.merge
            if merge == "sum":
                values[name] += contribution
            elif merge == "counts":
                values[name][contribution] = values[name].get(contribution, 0) + 1
            elif merge == "sketch":
                values[name].add(contribution)
            elif merge == "min":
                current = values[name]
                values[name] = contribution if current is None or contribution < current else current
            else:
                current = values[name]
                values[name] = contribution if current is None or contribution > current else current

    def merge(self, other: WindowState) -> None:
        values = self.values
        for field in FIELDS:
            name, merge, theirs = field.name, field.merge, other.values[field.name]
            if merge == "sum":
                values[name] += theirs
            elif merge == "counts":
                counts = values[name]
                for key, count in theirs.items():
                    counts[key] = counts.get(key, 0) + count
            elif merge == "sketch":
                values[name].merge(theirs)
            elif theirs is not None:
                mine = values[name]
                if mine is None or (theirs < mine if merge == "min" else theirs > mine):
                    values[name] = theirs
        if self.provider is None:
            self.provider = other.provider
        if self.model_family is None:
            self.model_family = other.model_family

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in FIELDS:
            value = self.values[field.name]
            if field.merge == "sum":
                out[field.wire] = wire_int(value)
            elif field.merge == "counts":
                out[field.wire] = {key: wire_int(count) for key, count in value.items()}
            elif field.merge == "sketch":
                out[field.wire] = value.to_wire()
            else:
                out[field.wire] = value
        out["p"] = self.provider
        out["f"] = self.model_family
        return out

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> WindowState:
        """The state a `to_wire` dict describes. Raises ValueError (or KeyError, TypeError) on a
        malformed one; a field missing from an older record starts empty."""
        state = cls(provider=doc.get("p"), model_family=doc.get("f"))
        values = state.values
        for field in FIELDS:
            if field.wire not in doc:
                continue
            raw = doc[field.wire]
            if field.merge == "sum":
                values[field.name] = read_int(raw)
            elif field.merge == "counts":
                values[field.name] = {str(key): read_int(count) for key, count in dict(raw).items()}
            elif field.merge == "sketch":
                values[field.name] = LatencySketch.from_wire(raw)
            else:
                values[field.name] = _read_number(raw)
        return state

    def to_aggregate(self, window: WindowKey, version: int) -> dict[str, Any]:
        """The document published for this window (the shape of streams.contract.WindowAggregate)."""
        values = self.values
        requests = values["requests"]
        doc: dict[str, Any] = {
            "doc_id": window.encode(),
            "version": version,
            "dimension": window.dimension,
            "key": window.key,
            "provider": self.provider,
            "model_family": self.model_family,
            "window_size": window.size,
            "window_start": datetime.fromtimestamp(window.start_ms / 1000, UTC),
            "window_end": datetime.fromtimestamp(window.end_ms / 1000, UTC),
        }
        for field in FIELDS:
            if field.path is None:
                continue
            target = doc
            for part in field.path[:-1]:
                target = target.setdefault(part, {})
            value = values[field.name]
            if field.merge == "sum" and value > INT64_MAX:
                value = None  # beyond what JSON numbers and Elasticsearch longs carry exactly
            target[field.path[-1]] = value
        sketch = self.sketch
        doc["error_rate"] = values["errors"] / requests if requests else 0.0
        doc["tokens"]["total"] = min(values["input_tokens"] + values["output_tokens"], INT64_MAX)
        doc["cost_usd"] = values["cost_pico"] / PICO_PER_USD
        latency = doc["latency_ms"]
        latency["mean"] = values["latency_sum_us"] / 1000 / requests if requests else None
        for q in (50, 90, 95, 99):
            latency[f"p{q}"] = sketch.quantile(q / 100)
        doc["latency_sketch"] = sketch.to_wire()
        return doc

    @classmethod
    def from_aggregate(cls, doc: dict[str, Any]) -> WindowState:
        """The mergeable state behind a published aggregate (as stored), so that windows read back
        from a store merge like the stream merges them: exactly, percentiles from the sketches."""
        state = cls(provider=doc.get("provider"), model_family=doc.get("model_family"))
        values = state.values
        for field in FIELDS:
            if field.path is None:
                continue
            value: Any = doc
            for part in field.path:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                continue
            values[field.name] = dict(value) if field.merge == "counts" else value
        if doc.get("cost_pico") is None:  # an older document, or a sum beyond 64 bits
            values["cost_pico"] = round(doc.get("cost_usd", 0) * PICO_PER_USD)
        mean = doc.get("latency_ms", {}).get("mean")
        if mean is not None:
            values["latency_sum_us"] = round(mean * values["requests"] * 1000)
        sketch = doc.get("latency_sketch")
        if sketch:
            values["sketch"] = LatencySketch.from_wire(sketch)
        return state


def event_time_ms(doc: dict[str, Any]) -> int:
    """Event time of an enriched event, whether decoded from JSON (a string) or fresh (a datetime)."""
    value = doc["event_time"]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return int(value.timestamp() * 1000)


Labels = tuple[str, str, str, str, str]  # model, provider, model_family, service, user


def labels_of(doc: dict[str, Any]) -> Labels:
    """What an enriched event is grouped by, per dimension (after any cardinality cap)."""
    return (
        doc["model"],
        doc["provider"],
        doc["model_family"],
        doc.get("service_name") or NONE_KEY,
        doc.get("user_id") or NONE_KEY,
    )


def fold_minutes(
    events: Iterable[dict[str, Any]], labels: Callable[[dict[str, Any]], Labels] = labels_of
) -> dict[tuple[Labels, int], WindowState]:
    """One pass over enriched events: a one-minute state per (labels, minute start)."""
    states: dict[tuple[Labels, int], WindowState] = {}
    minute = WINDOW_SIZES_MS["1m"]
    for doc in events:
        names = labels(doc)
        slot = (names, window_start(event_time_ms(doc), minute))
        state = states.get(slot)
        if state is None:
            state = states[slot] = WindowState(provider=names[1], model_family=names[2])
        state.add_event(doc)
    return states


def rollup(minutes: dict[tuple[Labels, int], WindowState]) -> dict[WindowKey, WindowState]:
    """Every window (per dimension and size) that the one-minute states fall into, merged."""
    out: dict[WindowKey, WindowState] = {}
    for (names, start), state in minutes.items():
        for dimension, name in zip(DIMENSIONS, names, strict=True):
            for size in DIMENSION_SIZES[dimension]:
                window = WindowKey(dimension, name, size, window_start(start, WINDOW_SIZES_MS[size]))
                target = out.get(window)
                if target is None:
                    target = out[window] = WindowState()
                target.merge(state)
    for window, target in out.items():
        if window.dimension in ("provider", "service", "user"):
            target.model_family = None  # such a window spans several families
        if window.dimension in ("service", "user"):
            target.provider = None  # ... and several providers
    return out


def expired(window: WindowKey, stream_time_ms: int, retention_ms: dict[str, int]) -> bool:
    return window.end_ms + retention_ms[window.size] < stream_time_ms
