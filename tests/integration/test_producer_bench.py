"""The producer benchmark runs and reports its figures (timing itself is never asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.producer import measure
from callstream.settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_measure_reports_added_time_and_delivers_everything(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    result = measure(kafka_settings, tmp_path / "spool", calls=300, rate_per_s=0, warmup=20)
    assert {"median_us", "p99_us", "baseline_median_us"} <= result.keys()
    assert result["published"] == 320 and result["all_delivered"] and result["dropped"] == 0
