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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from callstream.producers.contract import LATEST_EVENT_TIME_MS
from callstream.streams.contract import WINDOW_SIZES_MS
from callstream.streams.pricing import PICO_PER_USD
from callstream.streams.sketch import LatencySketch, bucket_of

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

    `of_event` is one enriched event's contribution, a Python expression over the event `doc`
    (for "counts", the key to count, None for none); `merge` says how two states combine; `wire` is
    the compact key in partials and the changelog; `path` is where the value goes in the published
    aggregate (None: used only to derive other values). The table compiles into the two functions
    on the hot path (`_add_event`, `_merge`), so declaring a field costs nothing per event."""

    name: str
    wire: str
    merge: Merge
    of_event: str
    path: tuple[str, ...] | None


FIELDS: tuple[Field, ...] = (
    Field("requests", "n", "sum", "1", ("requests",)),
    Field("successes", "ok", "sum", 'doc["error_category"] is None', ("successes",)),
    Field("errors", "err", "sum", 'doc["error_category"] is not None', ("errors",)),
    Field(
        "errors_by_type",
        "et",
        "counts",
        'doc["error_category"]',
        ("errors_by_type",),
    ),
    Field("input_tokens", "ti", "sum", 'doc["input_tokens"]', ("tokens", "input")),
    Field("output_tokens", "to", "sum", 'doc["output_tokens"]', ("tokens", "output")),
    Field(
        "cache_read_input_tokens",
        "tcr",
        "sum",
        'doc["cache_read_input_tokens"]',
        ("tokens", "cache_read_input"),
    ),
    Field(
        "cache_creation_input_tokens",
        "tcc",
        "sum",
        'doc["cache_creation_input_tokens"]',
        ("tokens", "cache_creation_input"),
    ),
    Field(
        "reasoning_output_tokens",
        "tr",
        "sum",
        'doc["reasoning_output_tokens"]',
        ("tokens", "reasoning_output"),
    ),
    Field("cost_pico", "c", "sum", 'doc["cost_pico"] if doc["priced"] else 0', ("cost_pico",)),
    Field("unpriced_requests", "up", "sum", 'not doc["priced"]', ("unpriced_requests",)),
    Field(
        "usage_missing_requests",
        "um",
        "sum",
        'doc.get("usage") == "missing"',
        ("usage_missing_requests",),
    ),
    Field("latency_min_ms", "lmin", "min", 'doc["duration_ms"]', ("latency_ms", "min")),
    Field("latency_max_ms", "lmax", "max", 'doc["duration_ms"]', ("latency_ms", "max")),
    Field("latency_sum_us", "lsum", "sum", 'round(doc["duration_ms"] * 1000)', None),
    Field("late_events", "late", "sum", 'bool(doc.get("late"))', ("late_events",)),
    Field("sketch", "sk", "sketch", 'doc["duration_ms"]', None),
)


def _compile(
    fields: tuple[Field, ...],
) -> tuple[Callable[..., Any], Callable[..., None], Callable[..., None]]:
    """Three plain functions from the table, so that declaring a field costs nothing per event:
    `contribution(doc)`, one event's part in every field (computed once per event), `apply(values,
    contribution)` (an event folded into one of the several windows it belongs to), and
    `merge(values, other)`."""
    parts = ", ".join(
        f"bucket_of({spec.of_event})" if spec.merge == "sketch" else f"({spec.of_event})" for spec in fields
    )
    contribution = ["def contribution(doc):", f"    return ({parts},)"]
    apply, merge = ["def apply(values, c):"], ["def merge(values, other):"]
    for i, spec in enumerate(fields):
        name, mine, theirs = str(i), f"c[{i}]", f"o{i}"
        merge.append(f"    {theirs} = other[{name}]")
        if spec.merge == "sum":
            apply.append(f"    values[{name}] += {mine}")
            merge.append(f"    values[{name}] += {theirs}")
        elif spec.merge == "counts":
            apply += [
                f"    if {mine} is not None:",
                f"        k = values[{name}]; k[{mine}] = k.get({mine}, 0) + 1",
            ]
            merge += [
                f"    k = values[{name}]",
                f"    for key, n in {theirs}.items(): k[key] = k.get(key, 0) + n",
            ]
        elif spec.merge == "sketch":
            apply.append(f"    values[{name}].add_key({mine})")
            merge.append(f"    values[{name}].merge({theirs})")
        else:
            better = "<" if spec.merge == "min" else ">"
            for lines, value in ((apply, mine), (merge, theirs)):
                lines += [
                    f"    if {value} is not None:",
                    f"        current = values[{name}]",
                    f"        if current is None or {value} {better} current: values[{name}] = {value}",
                ]
    namespace: dict[str, Any] = {"bucket_of": bucket_of}
    source = "\n".join(contribution) + "\n\n" + "\n".join(apply) + "\n\n" + "\n".join(merge)
    exec(source, namespace)
    return namespace["contribution"], namespace["apply"], namespace["merge"]


_contribution, _apply, _merge = _compile(FIELDS)
INDEX = {spec.name: i for i, spec in enumerate(FIELDS)}  # a field's place in WindowState.values


def _compile_empty(fields: tuple[Field, ...]) -> Callable[[], list[Any]]:
    """`empty()`: a new state's values, as one list display (a state is made per window per
    message, tens of thousands of times a second)."""
    items = ", ".join(
        {"sum": "0", "counts": "{}", "sketch": "LatencySketch()"}.get(spec.merge, "None") for spec in fields
    )
    namespace: dict[str, Any] = {"LatencySketch": LatencySketch}
    exec(f"def empty():\n    return [{items}]", namespace)
    empty: Callable[[], list[Any]] = namespace["empty"]
    return empty


_empty_values = _compile_empty(FIELDS)


def _compile_wire(
    fields: tuple[Field, ...],
) -> tuple[Callable[[list[Any]], dict[str, Any]], Callable[[dict[str, Any], list[Any]], None]]:
    """`to_wire(values)` and `read_wire(doc, values)` from the table: every partial is encoded once
    and decoded once, per window, so these run as often as `_apply` does."""
    encode, decode = ["def to_wire(values):", "    out = {}"], ["def read_wire(doc, values):"]
    for i, spec in enumerate(fields):
        wire = repr(spec.wire)
        encode.append(f"    v = values[{i}]")
        decode.append(f"    if {wire} in doc:")
        decode.append(f"        v = doc[{wire}]")
        if spec.merge == "sum":
            encode.append(f"    if v: out[{wire}] = v if -{INT64_MAX + 1} <= v <= {INT64_MAX} else str(v)")
            decode.append(f"        values[{i}] = v if type(v) is int else read_int(v)")
        elif spec.merge == "counts":
            encode.append(f"    if v: out[{wire}] = {{key: wire_int(n) for key, n in v.items()}}")
            decode.append(f"        values[{i}] = {{str(key): read_int(n) for key, n in dict(v).items()}}")
        elif spec.merge == "sketch":
            encode.append(f"    if v.count: out[{wire}] = v.to_wire()")
            decode.append(f"        values[{i}] = LatencySketch.from_wire(v)")
        else:  # min, max: a value of 0 is a value
            encode.append(f"    if v is not None: out[{wire}] = v")
            decode.append(f"        values[{i}] = _read_number(v)")
    encode.append("    return out")
    decode.append("    return None")
    namespace: dict[str, Any] = {
        "wire_int": wire_int,
        "read_int": read_int,
        "_read_number": _read_number,
        "LatencySketch": LatencySketch,
    }
    exec("\n".join(encode) + "\n\n" + "\n".join(decode), namespace)
    return namespace["to_wire"], namespace["read_wire"]


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


_to_wire, _read_wire = _compile_wire(FIELDS)


class WindowState:
    """The aggregate of one window so far, plus the labels of what it aggregates."""

    __slots__ = ("model_family", "provider", "values")

    def __init__(self, provider: str | None = None, model_family: str | None = None) -> None:
        self.values: list[Any] = _empty_values()  # in FIELDS order (INDEX)
        self.provider = provider
        self.model_family = model_family

    @classmethod
    def of(cls, provider: str | None = None, model_family: str | None = None, **values: Any) -> WindowState:
        """A state with the given field values (the rest empty); names must be in FIELDS."""
        state = cls(provider, model_family)
        unknown = set(values) - set(INDEX)
        if unknown:
            raise TypeError(f"not window fields: {sorted(unknown)}")
        for name, value in values.items():
            state[name] = value
        return state

    def __getitem__(self, name: str) -> Any:
        return self.values[INDEX[name]]

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[INDEX[name]] = value

    def __getattr__(self, name: str) -> Any:
        """Fields read as attributes too (state.cost_pico); FIELDS is the list of what exists."""
        try:
            return self.values[INDEX[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def requests(self) -> int:
        return int(self["requests"])

    @property
    def sketch(self) -> LatencySketch:
        sketch: LatencySketch = self["sketch"]
        return sketch

    def add_event(self, doc: dict[str, Any]) -> None:
        """Fold one enriched event (a dict in the EnrichedCallEvent shape) into this state."""
        _apply(self.values, _contribution(doc))

    def merge(self, other: WindowState) -> None:
        _merge(self.values, other.values)
        if self.provider is None:
            self.provider = other.provider
        if self.model_family is None:
            self.model_family = other.model_family

    def to_wire(self) -> dict[str, Any]:
        """The state as a JSON-ready dict. Empty fields are left out (`from_wire` starts a missing
        field empty): most partial states hold one or two calls of one user, so most of their
        fields are zero, and every partial is encoded, sent, decoded and merged."""
        out = _to_wire(self.values)
        out["p"] = self.provider
        out["f"] = self.model_family
        return out

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> WindowState:
        """The state a `to_wire` dict describes. Raises ValueError (or KeyError, TypeError) on a
        malformed one; a field missing from an older record starts empty."""
        state = cls(provider=doc.get("p"), model_family=doc.get("f"))
        _read_wire(doc, state.values)
        return state

    def to_aggregate(self, window: WindowKey, version: int) -> dict[str, Any]:
        """The document published for this window (the shape of streams.contract.WindowAggregate)."""
        requests = self["requests"]
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
        for spec, value in zip(FIELDS, self.values, strict=True):
            if spec.path is None:
                continue
            target = doc
            for part in spec.path[:-1]:
                target = target.setdefault(part, {})
            if spec.merge == "sum" and value > INT64_MAX:
                value = None  # beyond what JSON numbers and Elasticsearch longs carry exactly
            target[spec.path[-1]] = value
        sketch = self.sketch
        doc["error_rate"] = self["errors"] / requests if requests else 0.0
        doc["tokens"]["total"] = min(self["input_tokens"] + self["output_tokens"], INT64_MAX)
        doc["cost_usd"] = self["cost_pico"] / PICO_PER_USD
        latency = doc["latency_ms"]
        latency["mean"] = self["latency_sum_us"] / 1000 / requests if requests else None
        for q, value in zip((50, 90, 95, 99), sketch.quantiles((0.50, 0.90, 0.95, 0.99)), strict=True):
            latency[f"p{q}"] = value
        doc["latency_sketch"] = sketch.to_wire()
        return doc

    @classmethod
    def from_aggregate(cls, doc: dict[str, Any]) -> WindowState:
        """The mergeable state behind a published aggregate (as stored), so that windows read back
        from a store merge like the stream merges them: exactly, percentiles from the sketches."""
        state = cls(provider=doc.get("provider"), model_family=doc.get("model_family"))
        for i, spec in enumerate(FIELDS):
            if spec.path is None:
                continue
            value: Any = doc
            for part in spec.path:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                continue
            state.values[i] = dict(value) if spec.merge == "counts" else value
        if doc.get("cost_pico") is None:  # an older document, or a sum beyond 64 bits
            state["cost_pico"] = round(doc.get("cost_usd", 0) * PICO_PER_USD)
        mean = doc.get("latency_ms", {}).get("mean")
        if mean is not None:
            state["latency_sum_us"] = round(mean * state["requests"] * 1000)
        sketch = doc.get("latency_sketch")
        if sketch:
            state["sketch"] = LatencySketch.from_wire(sketch)
        return state


def event_time_ms(doc: dict[str, Any]) -> int:
    """Event time of an enriched event, whether decoded from JSON (a string) or fresh (a datetime)."""
    value = doc["event_time"]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return int(value.timestamp() * 1000)


Labels = tuple[str, str, str, str, str]  # model, provider, model_family, service, user
MODEL_DIMENSIONS = ("model", "provider", "model_family")
LONG_RANGE_DIMENSIONS = ("service", "user")  # 1h and 1d windows only


def labels_of(doc: dict[str, Any]) -> Labels:
    """What an enriched event is grouped by, per dimension (before any cardinality cap)."""
    return (
        doc["model"],
        doc["provider"],
        doc["model_family"],
        doc.get("service_name") or NONE_KEY,
        doc.get("user_id") or NONE_KEY,
    )


@dataclass
class Folded:
    """One pass over events: a one-minute state per (model, provider, model family) and minute,
    merged into every model-dimension window by `rollup`; and the service and user windows (1h and
    1d), folded directly, because those names are many and their states rarely share a minute."""

    minutes: dict[tuple[tuple[str, str, str], int], WindowState] = field(default_factory=dict)
    long_range: dict[tuple[str, str, str, int], WindowState] = field(default_factory=dict)  # WindowKey fields

    def states(self) -> list[WindowState]:
        return [*self.minutes.values(), *self.long_range.values()]


def fold(events: Iterable[dict[str, Any]], labels: Callable[[dict[str, Any]], Labels] = labels_of) -> Folded:
    """Fold enriched events once: into their minute state and their service and user windows."""
    folded = Folded()
    minutes, long_range = folded.minutes, folded.long_range
    minute_ms, hour_ms, day_ms = WINDOW_SIZES_MS["1m"], WINDOW_SIZES_MS["1h"], WINDOW_SIZES_MS["1d"]
    for doc in events:
        model, provider, family, service, user = labels(doc)
        at = event_time_ms(doc)
        slot = ((model, provider, family), at - at % minute_ms)
        state = minutes.get(slot)
        if state is None:
            state = minutes[slot] = WindowState(provider=provider, model_family=family)
        contribution = _contribution(doc)
        _apply(state.values, contribution)
        hour, day = at - at % hour_ms, at - at % day_ms
        for key in (
            ("service", service, "1h", hour),
            ("service", service, "1d", day),
            ("user", user, "1h", hour),
            ("user", user, "1d", day),
        ):
            state = long_range.get(key)
            if state is None:
                state = long_range[key] = WindowState()
            _apply(state.values, contribution)
    return folded


def rollup(folded: Folded) -> dict[WindowKey, WindowState]:
    """Every window (per dimension and size) that the folded states fall into, merged."""
    out = {WindowKey(*key): state for key, state in folded.long_range.items()}
    for (names, start), state in folded.minutes.items():
        for dimension, name in zip(MODEL_DIMENSIONS, names, strict=True):
            for size in DIMENSION_SIZES[dimension]:
                window = WindowKey(dimension, name, size, window_start(start, WINDOW_SIZES_MS[size]))
                target = out.get(window)
                if target is None:
                    target = out[window] = WindowState()
                target.merge(state)
    for window, target in out.items():
        if window.dimension == "provider":
            target.model_family = None  # a provider's window spans several families
    return out


def windows_of(
    events: Iterable[dict[str, Any]], labels: Callable[[dict[str, Any]], Labels] = labels_of
) -> dict[WindowKey, WindowState]:
    """Every window the events fall into, with their aggregate: `rollup(fold(events))`."""
    return rollup(fold(events, labels))


def expired(window: WindowKey, stream_time_ms: int, retention_ms: dict[str, int]) -> bool:
    return window.end_ms + retention_ms[window.size] < stream_time_ms
