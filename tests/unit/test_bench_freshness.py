"""The freshness bench's arithmetic: latencies from the publication and visibility curves."""

from __future__ import annotations

import pytest

from bench.freshness import latencies_s, quantile, summary


def test_each_event_is_searchable_at_the_first_poll_that_counts_it() -> None:
    handed = [0.0, 0.1, 0.2, 0.3, 1.0]
    polls = [(0.5, 0), (0.6, 2), (1.2, 3), (1.5, 5)]
    assert latencies_s(handed, polls) == pytest.approx([0.6, 0.5, 1.0, 1.2, 0.5])
    assert latencies_s(handed, polls, first=3) == pytest.approx([1.2, 0.5])


def test_events_no_poll_covered_are_left_out() -> None:
    assert latencies_s([0.0, 1.0, 2.0], [(0.5, 1), (3.0, 2)]) == pytest.approx([0.5, 2.0])
    assert latencies_s([0.0], []) == []


def test_a_poll_before_the_handout_never_gives_a_negative_latency() -> None:
    assert latencies_s([1.0], [(0.5, 1)]) == [0.0]


def test_nearest_rank_quantiles_and_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [quantile(values, q) for q in (0.5, 0.95, 0.99, 1.0)] == [50.0, 95.0, 99.0, 100.0]
    assert quantile([3.0], 0.99) == 3.0
    assert summary(values) == {"p50_s": 50.0, "p95_s": 95.0, "p99_s": 99.0, "max_s": 100.0}
    assert summary([]) == {"p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
