"""The latency sketch: quantiles within 1% of the exact ones, exact merges, wire form."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import orjson
import pytest

from callstream.streams.sketch import RELATIVE_ACCURACY, LatencySketch

QUANTILES = (0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def exact(values: list[float], q: float) -> float:
    """Nearest rank, lower: sorted[floor(q * (n - 1))]."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def sketch_of(values: list[float]) -> LatencySketch:
    sketch = LatencySketch()
    for v in values:
        sketch.add(v)
    return sketch


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "uniform": lambda r: r.uniform(1, 30_000),
    "lognormal": lambda r: r.lognormvariate(math.log(900), 0.5),
    "lognormal-heavy": lambda r: r.lognormvariate(math.log(300), 2.0),
    "pareto": lambda r: 50 * r.paretovariate(1.1),
    "exponential": lambda r: r.expovariate(1 / 700),
    "bimodal": lambda r: r.gauss(120, 10) if r.random() < 0.7 else r.gauss(4000, 800),
    "sub-ms": lambda r: r.uniform(0.001, 2),
    "few-values": lambda r: r.choice([5.0, 50.0, 500.0, 5000.0]),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantiles_within_one_percent(name: str) -> None:
    rng = random.Random(name)
    values = [max(0.001, DISTRIBUTIONS[name](rng)) for _ in range(20_000)]
    sketch = sketch_of(values)
    assert sketch.count == len(values)
    for q in QUANTILES:
        want = exact(values, q)
        got = sketch.quantile(q)
        assert got is not None
        assert abs(got - want) <= 0.01 * want, (q, want, got)
        assert abs(got - want) <= RELATIVE_ACCURACY * want * (1 + 1e-9), (q, want, got)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_small_counts(n: int) -> None:
    values = [float(10 * (i + 1)) for i in range(n)]
    sketch = sketch_of(values)
    for q in QUANTILES:
        want = exact(values, q)
        got = sketch.quantile(q)
        assert got is not None and abs(got - want) <= 0.01 * want


def test_values_below_a_microsecond_count_as_zero() -> None:
    sketch = sketch_of([0.0, 0.0005, 10.0, 20.0])
    assert sketch.zero_count == 2 and sketch.count == 4
    assert sketch.quantile(0.0) == 0.0
    assert sketch.quantile(1 / 3) == 0.0  # rank floor(1/3 * 3) = 1: the second zero
    got = sketch.quantile(1.0)
    assert got is not None and abs(got - 20.0) <= 0.01 * 20.0


def test_merge_equals_the_sketch_of_the_union() -> None:
    rng = random.Random(7)
    a = [rng.lognormvariate(6, 1.5) for _ in range(3000)] + [0.0] * 5
    b = [rng.uniform(0, 100) for _ in range(2000)]
    c: list[float] = []
    merged = sketch_of(a)
    merged.merge(sketch_of(b))
    merged.merge(sketch_of(c))
    union = sketch_of(a + b + c)
    assert merged.bins == union.bins and merged.zero_count == union.zero_count
    other_order = sketch_of(c)
    other_order.merge(sketch_of(b))
    other_order.merge(sketch_of(a))
    assert other_order.bins == union.bins
    for q in QUANTILES:
        want = exact(a + b, q)
        got = merged.quantile(q)
        assert got is not None and abs(got - want) <= 0.01 * want


def test_empty_sketch() -> None:
    sketch = LatencySketch()
    assert sketch.count == 0
    for q in QUANTILES:
        assert sketch.quantile(q) is None
    assert sketch.to_wire() == {"k": [], "c": [], "z": 0, "a": RELATIVE_ACCURACY}
    filled = sketch_of([1.0, 2.0])
    filled.merge(LatencySketch())
    assert filled.bins == sketch_of([1.0, 2.0]).bins


@pytest.mark.parametrize("q", [-0.01, 1.01])
def test_quantile_outside_zero_one_is_an_error(q: float) -> None:
    with pytest.raises(ValueError, match="quantile must be within"):
        sketch_of([1.0]).quantile(q)


def test_wire_roundtrip() -> None:
    rng = random.Random(3)
    sketch = sketch_of([rng.lognormvariate(5, 2) for _ in range(5000)] + [0.0, 0.0])
    wire = orjson.loads(orjson.dumps(sketch.to_wire()))
    back = LatencySketch.from_wire(wire)
    assert back.bins == sketch.bins and back.zero_count == sketch.zero_count == 2
    assert wire["k"] == sorted(wire["k"])
    for q in QUANTILES:
        assert back.quantile(q) == sketch.quantile(q)


def test_wire_from_another_accuracy_is_refused() -> None:
    with pytest.raises(ValueError, match=r"sketch accuracy 0\.01 differs"):
        LatencySketch.from_wire({"k": [1], "c": [1], "z": 0, "a": 0.01})
    with pytest.raises(ValueError):
        LatencySketch.from_wire({"k": [1, 2], "c": [1], "z": 0, "a": RELATIVE_ACCURACY})


def test_one_microsecond_is_the_smallest_latency_with_a_bucket() -> None:
    sketch = sketch_of([0.001, 0.000999])
    assert sketch.zero_count == 1 and sum(sketch.bins.values()) == 1
    got = sketch.quantile(1.0)
    assert got is not None and abs(got - 0.001) <= RELATIVE_ACCURACY * 0.001


def test_sparse_wire_forms_read_as_empty_parts() -> None:
    """Only what a wire dict holds is read: a missing part is empty, a missing accuracy the default."""
    assert LatencySketch.from_wire({}).count == 0
    only_zeros = LatencySketch.from_wire({"z": 3})
    assert (only_zeros.bins, only_zeros.zero_count) == ({}, 3)
    no_zeros = LatencySketch.from_wire({"k": [5, 9], "c": [2, 1]})
    assert (no_zeros.bins, no_zeros.zero_count, no_zeros.count) == ({5: 2, 9: 1}, 0, 3)


@pytest.mark.parametrize("seed", range(20))
def test_quantiles_in_one_pass_equal_each_quantile_alone(seed: int) -> None:
    """With values under a microsecond too (the zero bucket), and for an empty sketch."""
    import random

    rng = random.Random(seed)
    values = [rng.choice([0.0, 0.0005, rng.lognormvariate(6, 1.5)]) for _ in range(rng.randrange(1, 300))]
    qs = (0.0, 0.01, 0.5, 0.5, 0.9, 0.95, 0.99, 1.0)
    sketch = sketch_of(values)
    assert sketch.quantiles(qs) == [sketch.quantile(q) for q in qs]
    assert LatencySketch().quantiles(qs) == [None] * len(qs)
    with pytest.raises(ValueError, match="ascending"):
        sketch.quantiles((0.9, 0.5))
