"""bench/alert.py's arithmetic: nearest-rank percentiles of the measured latencies."""

from __future__ import annotations

from bench.alert import percentile, summary


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.50) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile(values, 1.0) == 20.0
    assert percentile([3.0], 0.95) == 3.0
    assert summary([2.0, 1.0, 4.0, 3.0]) == {"p50_s": 2.0, "p95_s": 4.0, "max_s": 4.0, "mean_s": 2.5}
    assert summary([]) == {}
