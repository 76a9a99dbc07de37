"""Tumbling event-time windows and their mergeable aggregate state.

A `WindowState` is a value that merges (associative, commutative, exact: integer tokens,
pico-dollars and microseconds), so per-batch partials, several workers and replays combine to the
same result in any order. Events are folded once into one-minute states per model; hour and day
windows and the provider / model-family rollups are merges of those, never a second pass over
events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callstream.streams.contract import WINDOW_SIZES_MS
from callstream.streams.pricing import PICO_PER_USD
from callstream.streams.sketch import LatencySketch

DIMENSIONS = ("model", "provider", "model_family")
KEY_SEPARATOR = "|"


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
        return cls(dimension, key, size, int(start))


@dataclass(slots=True)
class WindowState:
    requests: int = 0
    successes: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_output_tokens: int = 0
    cost_pico: int = 0
    unpriced_requests: int = 0
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    latency_sum_us: int = 0
    late_events: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    provider: str | None = None
    model_family: str | None = None

    def add_event(self, doc: dict[str, Any]) -> None:
        """Fold one enriched event (a dict in the EnrichedCallEvent shape) into this state."""
        self.requests += 1
        category = doc["error_category"]
        if category is None:
            self.successes += 1
        else:
            self.errors += 1
            self.errors_by_type[category] = self.errors_by_type.get(category, 0) + 1
        self.input_tokens += doc["input_tokens"]
        self.output_tokens += doc["output_tokens"]
        self.cache_read_input_tokens += doc["cache_read_input_tokens"]
        self.cache_creation_input_tokens += doc["cache_creation_input_tokens"]
        self.reasoning_output_tokens += doc["reasoning_output_tokens"]
        if doc["priced"]:
            self.cost_pico += doc["cost_pico"]
        else:
            self.unpriced_requests += 1
        latency = doc["duration_ms"]
        if self.latency_min_ms is None or latency < self.latency_min_ms:
            self.latency_min_ms = latency
        if self.latency_max_ms is None or latency > self.latency_max_ms:
            self.latency_max_ms = latency
        self.latency_sum_us += round(latency * 1000)
        self.sketch.add(latency)
        if doc.get("late"):
            self.late_events += 1

    def merge(self, other: WindowState) -> None:
        self.requests += other.requests
        self.successes += other.successes
        self.errors += other.errors
        for category, count in other.errors_by_type.items():
            self.errors_by_type[category] = self.errors_by_type.get(category, 0) + count
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.reasoning_output_tokens += other.reasoning_output_tokens
        self.cost_pico += other.cost_pico
        self.unpriced_requests += other.unpriced_requests
        if other.latency_min_ms is not None and (
            self.latency_min_ms is None or other.latency_min_ms < self.latency_min_ms
        ):
            self.latency_min_ms = other.latency_min_ms
        if other.latency_max_ms is not None and (
            self.latency_max_ms is None or other.latency_max_ms > self.latency_max_ms
        ):
            self.latency_max_ms = other.latency_max_ms
        self.latency_sum_us += other.latency_sum_us
        self.late_events += other.late_events
        self.sketch.merge(other.sketch)
        if self.provider is None:
            self.provider = other.provider
        if self.model_family is None:
            self.model_family = other.model_family

    def to_wire(self) -> dict[str, Any]:
        return {
            "n": self.requests,
            "ok": self.successes,
            "err": self.errors,
            "et": self.errors_by_type,
            "ti": self.input_tokens,
            "to": self.output_tokens,
            "tcr": self.cache_read_input_tokens,
            "tcc": self.cache_creation_input_tokens,
            "tr": self.reasoning_output_tokens,
            "c": self.cost_pico,
            "up": self.unpriced_requests,
            "lmin": self.latency_min_ms,
            "lmax": self.latency_max_ms,
            "lsum": self.latency_sum_us,
            "late": self.late_events,
            "sk": self.sketch.to_wire(),
            "p": self.provider,
            "f": self.model_family,
        }

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> WindowState:
        return cls(
            requests=doc["n"],
            successes=doc["ok"],
            errors=doc["err"],
            errors_by_type=dict(doc["et"]),
            input_tokens=doc["ti"],
            output_tokens=doc["to"],
            cache_read_input_tokens=doc["tcr"],
            cache_creation_input_tokens=doc["tcc"],
            reasoning_output_tokens=doc["tr"],
            cost_pico=doc["c"],
            unpriced_requests=doc["up"],
            latency_min_ms=doc["lmin"],
            latency_max_ms=doc["lmax"],
            latency_sum_us=doc["lsum"],
            late_events=doc["late"],
            sketch=LatencySketch.from_wire(doc["sk"]),
            provider=doc.get("p"),
            model_family=doc.get("f"),
        )

    def to_aggregate(self, window: WindowKey, version: int) -> dict[str, Any]:
        """The document published for this window (the shape of streams.contract.WindowAggregate)."""
        sketch = self.sketch
        return {
            "doc_id": window.encode(),
            "version": version,
            "dimension": window.dimension,
            "key": window.key,
            "provider": self.provider,
            "model_family": self.model_family,
            "window_size": window.size,
            "window_start": datetime.fromtimestamp(window.start_ms / 1000, UTC),
            "window_end": datetime.fromtimestamp(window.end_ms / 1000, UTC),
            "requests": self.requests,
            "successes": self.successes,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "errors_by_type": self.errors_by_type,
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cache_read_input": self.cache_read_input_tokens,
                "cache_creation_input": self.cache_creation_input_tokens,
                "reasoning_output": self.reasoning_output_tokens,
                "total": self.input_tokens + self.output_tokens,
            },
            "cost_usd": self.cost_pico / PICO_PER_USD,
            "unpriced_requests": self.unpriced_requests,
            "latency_ms": {
                "min": self.latency_min_ms,
                "max": self.latency_max_ms,
                "mean": self.latency_sum_us / 1000 / self.requests if self.requests else None,
                "p50": sketch.quantile(0.50),
                "p90": sketch.quantile(0.90),
                "p95": sketch.quantile(0.95),
                "p99": sketch.quantile(0.99),
            },
            "late_events": self.late_events,
            "latency_sketch": sketch.to_wire(),
        }


def event_time_ms(doc: dict[str, Any]) -> int:
    """Event time of an enriched event, whether decoded from JSON (a string) or fresh (a datetime)."""
    value = doc["event_time"]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return int(value.timestamp() * 1000)


def fold_minutes(events: Iterable[dict[str, Any]]) -> dict[tuple[str, int], WindowState]:
    """One pass over enriched events: a one-minute state per (model, minute start)."""
    states: dict[tuple[str, int], WindowState] = {}
    minute = WINDOW_SIZES_MS["1m"]
    for doc in events:
        start = window_start(event_time_ms(doc), minute)
        slot = (doc["model"], start)
        state = states.get(slot)
        if state is None:
            state = states[slot] = WindowState(provider=doc["provider"], model_family=doc["model_family"])
        state.add_event(doc)
    return states


def rollup(
    minutes: dict[tuple[str, int], WindowState], sizes: Iterable[str] = tuple(WINDOW_SIZES_MS)
) -> dict[WindowKey, WindowState]:
    """Every window (per dimension and size) that the one-minute states fall into, merged."""
    out: dict[WindowKey, WindowState] = {}
    sizes = tuple(sizes)
    for (model, start), state in minutes.items():
        names = {
            "model": model,
            "provider": state.provider or "other",
            "model_family": state.model_family or model,
        }
        for size in sizes:
            size_start = window_start(start, WINDOW_SIZES_MS[size])
            for dimension in DIMENSIONS:
                window = WindowKey(dimension, names[dimension], size, size_start)
                target = out.get(window)
                if target is None:
                    target = out[window] = WindowState()
                target.merge(state)
    for window, target in out.items():
        if window.dimension == "provider":
            target.model_family = None  # a provider's window spans several families
    return out


def expired(window: WindowKey, stream_time_ms: int, retention_ms: dict[str, int]) -> bool:
    return window.end_ms + retention_ms[window.size] < stream_time_ms
