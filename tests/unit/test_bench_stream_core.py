"""`callstream bench stream --core` runs the processor's own stages and accounts for every event."""

from __future__ import annotations

from bench.stream_core import STAGES, measure


def test_the_core_bench_times_every_stage_of_every_message() -> None:
    result = measure(events=2_000, batch_size=500)
    assert result["events"] == 2_000
    assert set(result["us_per_event"]) == set(STAGES)
    assert all(value > 0 for value in result["us_per_event"].values())
    assert result["partials"] == 4  # one partial per raw message on one partials partition
    assert result["core_us_per_event"] == round(sum(result["us_per_event"].values()), 2)
