"""A mergeable latency quantile sketch (the DDSketch algorithm with a logarithmic mapping).

Values map to buckets whose bounds grow by a factor gamma, so any quantile is returned with a
relative error of at most `RELATIVE_ACCURACY`, and two sketches merge by adding bucket counts:
exact, associative and commutative, which lets batches, workers and replays combine them in any
order. Stored on aggregate documents, the percentiles need no server-side aggregation.
"""

from __future__ import annotations

import math
from typing import Any

RELATIVE_ACCURACY = 0.005  # half the 1% the dashboards promise
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
MIN_INDEXABLE_MS = 1e-3  # below one microsecond a latency is counted as zero


def bucket_of(value: float) -> int | None:
    """The bucket a latency falls into; None for the zero bucket (below a microsecond)."""
    if value < MIN_INDEXABLE_MS:
        return None
    return math.ceil(math.log(value) / _LOG_GAMMA)


class LatencySketch:
    __slots__ = ("bins", "zero_count")

    def __init__(self, bins: dict[int, int] | None = None, zero_count: int = 0) -> None:
        self.bins: dict[int, int] = bins if bins is not None else {}
        self.zero_count = zero_count

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.bins.values())

    def add(self, value: float) -> None:
        self.add_key(bucket_of(value))

    def add_key(self, key: int | None) -> None:
        """Count one value already mapped to its bucket (`bucket_of`): the same value added to
        several sketches is mapped once."""
        if key is None:
            self.zero_count += 1
            return
        bins = self.bins
        bins[key] = bins.get(key, 0) + 1

    def merge(self, other: LatencySketch) -> None:
        bins = self.bins
        for key, count in other.bins.items():
            bins[key] = bins.get(key, 0) + count
        self.zero_count += other.zero_count

    def quantile(self, q: float) -> float | None:
        """The value at rank floor(q * (n - 1)) within the relative accuracy; None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        """`quantile` of each of `qs` (ascending), in one pass over the sorted buckets: an
        aggregate asks for four at every publication."""
        for q in qs:
            if not 0 <= q <= 1:
                raise ValueError(f"quantile must be within [0, 1], got {q}")
        if list(qs) != sorted(qs):
            raise ValueError(f"quantiles must be ascending, got {qs}")
        total = self.count
        if total == 0:
            return [None] * len(qs)
        ranks = [math.floor(q * (total - 1)) for q in qs]
        out: list[float | None] = []
        seen = self.zero_count
        keys = iter(sorted(self.bins))
        key = None
        for rank in ranks:
            if rank < self.zero_count:
                out.append(0.0)
                continue
            while seen <= rank:
                key = next(keys)
                seen += self.bins[key]
            assert key is not None
            out.append(2 * _GAMMA**key / (_GAMMA + 1))
        return out

    def to_wire(self) -> dict[str, Any]:
        keys = sorted(self.bins)
        return {"k": keys, "c": [self.bins[k] for k in keys], "z": self.zero_count, "a": RELATIVE_ACCURACY}

    @classmethod
    def from_wire(cls, doc: dict[str, Any]) -> LatencySketch:
        if doc.get("a", RELATIVE_ACCURACY) != RELATIVE_ACCURACY:
            raise ValueError(f"sketch accuracy {doc.get('a')} differs from {RELATIVE_ACCURACY}")
        return cls(dict(zip(doc.get("k", []), doc.get("c", []), strict=True)), int(doc.get("z", 0)))
