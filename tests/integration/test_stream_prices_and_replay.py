"""Dated prices on a real broker: a price change mid-stream, and a replay with corrected prices."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest

from callstream import topics
from callstream.infra.local_servers import LocalServers
from callstream.producers import synthetic
from callstream.producers.loadgen import publish
from tests.ground_truth import SEED_PRICES, compare, expected_windows
from tests.pipeline import latest_aggregates, new_pipeline

pytestmark = pytest.mark.integration

DAY = datetime(2026, 4, 2, tzinfo=UTC)
CHANGE = DAY + timedelta(hours=12, minutes=30)


def _price_file(path: Path, gpt_prices: list[tuple[datetime, str]]) -> Path:
    """The ELK tutorial gateway's prices, with gpt-4.1's timeline replaced by `gpt_prices`."""
    entries = [
        {
            "id": f"test:gpt-4.1@{start:%Y%m%dT%H%M}",
            "provider": "openai",
            "match": "gpt-4\\.1(-\\d{4}-\\d{2}-\\d{2})?",  # and its dated name
            "effective_from": start.isoformat(),
            "input": price,
            "output": price,
        }
        for start, price in gpt_prices
    ]
    for model, usd in SEED_PRICES.items():
        if model != "gpt-4.1":
            entries.append(
                {
                    "id": f"test:{model}",
                    "provider": "x",
                    "match": model.replace(".", "\\.") + "(-\\d{4}-\\d{2}-\\d{2}|-\\d{8})?",
                    "effective_from": "2025-01-01T00:00:00Z",
                    "input": str(usd.numerator / usd.denominator),
                    "output": str(usd.numerator / usd.denominator),
                }
            )
    path.write_text(json.dumps({"prices": entries}))
    return path


def test_price_change_mid_stream_and_replay_with_corrected_prices(
    servers: LocalServers, tmp_path: Path
) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    events = synthetic.generate(6_000, seed=5, start=CHANGE - timedelta(minutes=25), rate_per_s=2)
    assert events[0].event_time < CHANGE < events[-1].event_time
    # Live: gpt-4.1 costs $8/Mtok until CHANGE, $10/Mtok from then on.
    live_prices = _price_file(tmp_path / "live.json", [(DAY - timedelta(days=30), "8"), (CHANGE, "10")])

    def live_price(model: str, at: datetime) -> Fraction | None:
        if model == "gpt-4.1":
            return Fraction(10) if at >= CHANGE else Fraction(8)
        return SEED_PRICES.get(model)

    price_env = {
        "CALLSTREAM_STREAM_PRICE_FILES": json.dumps([str(live_prices)]),
        "CALLSTREAM_STREAM_USE_GENAI_PRICES": "false",
    }
    try:
        pipeline.start_stream_worker(**price_env)
        assert publish(pipeline.kafka, pipeline.topic(topics.RAW), events).failed_messages == 0
        pipeline.wait_for_aggregates(expected_windows(events, price=live_price))
        pipeline.stop_all()

        # The $10 was a mistake: the corrected catalogue keeps $8 until a later change at 18:00.
        corrected = _price_file(
            tmp_path / "corrected.json", [(DAY - timedelta(days=30), "8"), (DAY + timedelta(hours=18), "10")]
        )
        replay = pipeline.start(
            "replay",
            "--from",
            DAY.date().isoformat(),
            "--to",
            (DAY + timedelta(days=1)).date().isoformat(),
            "--generation",
            "7",
            "--idle-s",
            "8",
            name="replay",
            CALLSTREAM_STREAM_PRICE_FILES=json.dumps([str(corrected)]),
            CALLSTREAM_STREAM_USE_GENAI_PRICES="false",
        )
        assert replay.wait(300) == 0, pipeline.logs()
        latest = latest_aggregates(pipeline.kafka)
        assert compare(expected_windows(events, price=lambda m, at: SEED_PRICES.get(m)), latest) == []
        assert all(doc["version"] > 7 << 32 for doc in latest.values())
    finally:
        pipeline.stop_all()


def test_replay_range_must_be_whole_days(servers: LocalServers, tmp_path: Path) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    process = pipeline.start("replay", "--from", "2026-04-02T06:00:00", "--to", "2026-04-03", name="replay")
    assert process.wait(60) != 0
    assert "not a UTC midnight" in process.log_path.read_text()  # type: ignore[attr-defined]
