"""Partial aggregates: what one raw message contributes to its windows, and their exactly-once merge.

`process_calls` folds each raw message into per-window partial states and sends them to the
partials topic, placed by window key, so that one owner merges each window. A partial carries its
source (the raw "topic:partition") and that input's offset. A window entry remembers the last
offset it merged per source and skips partials at or below it: a partial re-sent after a crash, or
recomputed from the same input, is never counted twice. Pure: no Kafka, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from callstream.errors import CallstreamError
from callstream.producers.contract import partition_for_key
from callstream.producers.prepare import contract_fields
from callstream.streams.windows import WindowKey, WindowState


class PartialError(CallstreamError, ValueError):
    """A partials message that is not one (never written by callstream, or corrupted)."""


PARTIAL_FIELDS = contract_fields(("src", "o", "st"), objects=("w",))
"""A partials message's fields: all its dead letter keeps of one."""


@dataclass(frozen=True, slots=True)
class Partial:
    source: str  # "topic:partition" of the raw input
    offset: int  # the raw input's offset
    stream_time_ms: int  # the source partition's stream time after that input
    windows: dict[str, dict[str, Any]]  # window key -> WindowState wire dict


def window_partition(window_key: str, partitions: int) -> int:
    """Partition of a window in the partials topic and in the window table's changelog."""
    return partition_for_key(window_key, partitions)


def partials_by_partition(
    windows: Mapping[WindowKey, WindowState], partitions: int
) -> dict[int, dict[str, dict[str, Any]]]:
    """A message's windows, grouped by the partials partition that owns each (in partition order)."""
    out: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for window, state in windows.items():
        key = window.encode()
        out[window_partition(key, partitions)][key] = state.to_wire()
    return dict(sorted(out.items()))


def encode_partial(partial: Partial) -> bytes:
    return orjson.dumps(
        {"src": partial.source, "o": partial.offset, "st": partial.stream_time_ms, "w": partial.windows}
    )


def decode_partial(value: bytes | None) -> Partial:
    try:
        body = orjson.loads(value or b"")
        windows = body["w"]
        if not isinstance(windows, dict) or not all(isinstance(w, dict) for w in windows.values()):
            raise PartialError("'w' must map window keys to states")
        source, offset, stream_time = body["src"], body["o"], body["st"]
        if not isinstance(source, str) or not isinstance(offset, int) or not isinstance(stream_time, int):
            raise PartialError("'src' must be a string, 'o' and 'st' integers")
        return Partial(source, offset, stream_time, windows)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PartialError(f"not a partial aggregate: {type(exc).__name__}: {exc}") from None


@dataclass
class WindowEntry:
    """A window's merged state, its published version, and what it has merged so far."""

    state: WindowState
    version: int = 0
    applied: dict[str, int] = field(default_factory=dict)  # source -> last offset merged

    @classmethod
    def new(cls, first: WindowState) -> WindowEntry:
        """An empty window labelled like its first partial."""
        return cls(WindowState(provider=first.provider, model_family=first.model_family))

    def apply(self, partial: WindowState, source: str, offset: int) -> bool:
        """Merge `partial` unless this source's offset was merged already; True if it was merged."""
        if self.applied.get(source, -1) >= offset:
            return False
        self.state.merge(partial)
        self.applied[source] = offset
        self.version += 1
        return True

    def to_bytes(self) -> bytes:
        return orjson.dumps({"s": self.state.to_wire(), "v": self.version, "a": self.applied})

    @classmethod
    def from_bytes(cls, raw: bytes) -> WindowEntry:
        doc = orjson.loads(raw)
        return cls(
            WindowState.from_wire(doc["s"]), int(doc["v"]), {str(k): int(v) for k, v in doc["a"].items()}
        )
