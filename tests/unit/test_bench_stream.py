"""`callstream bench stream`: the pure parts (event counting, the rate rule, the result object) and
the plain loop's batch work, checked against the events it was given."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bench.stream import (
    CONTENDERS,
    PlainPartials,
    QuixRows,
    RunResult,
    StreamAggregates,
    count_events,
    median_run,
    steady_rate,
    summary,
)
from bench.stream_baselines import JSON_OPTIONS
from callstream.producers.packing import split_into_arrays
from callstream.producers.synthetic import generate
from callstream.streams.catalogue import load_catalogue
from callstream.streams.enrich import enrich
from callstream.streams.partials import partials_by_partition
from callstream.streams.settings import StreamSettings
from callstream.streams.windows import DIMENSION_SIZES, WindowKey, windows_of


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    prices = load_catalogue(StreamSettings(use_genai_prices=False))
    return [enrich(e, prices) for e in generate(600, seed=3)]


def test_count_events_counts_arrays_single_objects_and_nothing(docs: list[dict[str, Any]]) -> None:
    assert count_events(orjson.dumps(docs, option=JSON_OPTIONS)) == len(docs)
    assert count_events(orjson.dumps(docs[0], option=JSON_OPTIONS)) == 1
    assert count_events(b"") == 0
    assert count_events(None) == 0


def test_count_events_ignores_the_marker_inside_string_values(docs: list[dict[str, Any]]) -> None:
    tricky = dict(docs[0], error_message='upstream said {"event_id": "x"}', session_id='"event_id":')
    assert count_events(orjson.dumps([tricky, docs[1]], option=JSON_OPTIONS)) == 2


def test_steady_rate_leaves_out_the_first_message() -> None:
    assert steady_rate(10_000, 1_000, first_at=5.0, done_at=8.0) == pytest.approx(3_000.0)
    with pytest.raises(ValueError):
        steady_rate(10_000, 10_000, first_at=5.0, done_at=5.0)


def _run(name: str, rate: float, peak: float = 100.0) -> RunResult:
    return RunResult(
        name=name,
        events=3000,
        events_per_s=rate,
        enriched_events_per_s=rate * 1.5,
        startup_s=2.0,
        timed_s=3000 / rate,
        cpu_s=3000 / rate,
        peak_rss_mb=peak,
        rss_mb_at={"1/3": 90.0, "2/3": 95.0, "end": 99.0},
        distinct_events=3000,
    )


def test_summary_has_the_required_fields_and_ratios() -> None:
    runs = {
        "stream": [_run("stream", 20_000.0)],
        "limit": [_run("limit", 30_000.0)],
        "quix": [_run("quix", 10_000.0)],
    }
    result = summary(runs, events=3000, batch_size=1000, broker="noida-db (x)", partitions=6)
    for key in (
        "events_per_s",
        "limit_events_per_s",
        "quix_events_per_s",
        "peak_rss_mb",
        "events",
        "broker",
        "ratio_to_limit",
        "ratio_to_quix",
        "rss_mb_at",
    ):
        assert key in result
    assert result["events_per_s"] == 20_000
    assert result["ratio_to_limit"] == pytest.approx(2 / 3, abs=1e-3)
    assert result["ratio_to_quix"] == pytest.approx(2.0)
    assert result["target_met"] is True
    assert result["rss_mb_at"] == {"1/3": 90.0, "2/3": 95.0, "end": 99.0}
    assert result["rss_growth_mb"] == pytest.approx(9.0)
    assert set(result["runs"]) == set(CONTENDERS)
    assert orjson.loads(orjson.dumps(result)) == result  # one JSON object, nothing unserialisable


def test_summary_takes_median_rates_and_the_highest_peak() -> None:
    runs = {
        "stream": [_run("stream", 5.0, 120.0), _run("stream", 9.0, 100.0), _run("stream", 7.0, 110.0)],
        "limit": [_run("limit", 10.0)] * 3,
        "quix": [_run("quix", 20.0)] * 3,
    }
    result = summary(runs, events=3000, batch_size=1000, broker="b", partitions=6)
    assert result["events_per_s"] == 7
    assert result["peak_rss_mb"] == 120.0
    assert result["target_met"] is False  # slower than Quix
    assert median_run([_run("s", 1.0), _run("s", 2.0)]).events_per_s == 1.0


def partials_of(docs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return partials_by_partition(windows_of(docs), 6)


def test_enriched_chunks_keep_every_event_in_order(docs: list[dict[str, Any]]) -> None:
    chunks = list(split_into_arrays([orjson.dumps(d, option=JSON_OPTIONS) for d in docs], 64 * 1024))
    assert len(chunks) > 1
    assert all(len(c) <= 64 * 1024 for c in chunks)
    ids = [e["event_id"] for c in chunks for e in orjson.loads(c)]
    assert ids == [d["event_id"] for d in docs]


def test_plain_loop_partials_hold_every_event_once_per_size_and_dimension(docs: list[dict[str, Any]]) -> None:
    by_partition = partials_of(docs)
    assert set(by_partition) <= set(range(6))
    totals: dict[tuple[str, str], int] = {}
    for states in by_partition.values():
        for key, wire in states.items():
            window = WindowKey.decode(key)
            slot = (window.dimension, window.size)
            totals[slot] = totals.get(slot, 0) + wire["n"]
    assert set(totals) == {(d, size) for d, sizes in DIMENSION_SIZES.items() for size in sizes}
    assert set(totals.values()) == {len(docs)}


def test_stream_aggregates_count_the_latest_version_of_minute_model_windows() -> None:
    def aggregate(
        doc_id: str, version: int, requests: int, dimension: str = "model", size: str = "1m"
    ) -> bytes:
        return orjson.dumps(
            {
                "doc_id": doc_id,
                "version": version,
                "requests": requests,
                "dimension": dimension,
                "window_size": size,
            }
        )

    seen = StreamAggregates()
    for value in (
        aggregate("model|a|1m|0", 1, 10),
        aggregate("model|a|1m|0", 3, 25),
        aggregate("model|a|1m|0", 2, 20),  # an older version arriving late changes nothing
        aggregate("model|b|1m|0", 1, 5),
        aggregate("provider|p|1m|0", 9, 30, dimension="provider"),
        aggregate("model|a|1h|0", 9, 30, size="1h"),
    ):
        seen.update(value)
    assert seen.total == 30


def test_plain_partials_and_quix_rows_count_aggregated_events(docs: list[dict[str, Any]]) -> None:
    partials = PlainPartials()
    for states in partials_of(docs).values():
        partials.update(orjson.dumps({"src": "raw:0", "o": 0, "w": states}))
    assert partials.total == len(docs)

    rows = QuixRows()
    for rows_so_far, late in ((20_000, 7), (30_000, 9), (10_000, 2)):
        rows.update(orjson.dumps({"rows": rows_so_far, "late": late}))
    assert (rows.total, rows.late) == (30_000, 9)
