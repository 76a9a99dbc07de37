"""Budgets through the whole pipeline, in Korean time, with a real webhook receiver: spend of the
Seoul day only (calls of the evening before do not count), and a burn forecast that fires when
the spend first projects past the budget, not before.

Ground truth: every call costs exactly 0.01 USD (gpt-4.1 at the gateway's 8 USD per million
tokens, input and output alike, 1,000 + 250 tokens), so each chunk's spend is known exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callstream.alerts.receiver import WebhookReceiver
from callstream.budgets import period_bounds
from callstream.infra.local_servers import LocalServers
from callstream.producers.contract import RawCallEvent
from callstream.producers.loadgen import publish
from tests.alerting import alert_env, wait_for_log, write_budgets, write_rules
from tests.pipeline import Pipeline, log_events, new_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEOUL = ZoneInfo("Asia/Seoul")
USD_PER_CALL = (1000 + 250) * 8 / 1_000_000  # 0.01
DAY_MS = 86_400_000


@pytest.fixture
def pipeline(servers: LocalServers, tmp_path: Path) -> Iterator[Pipeline]:
    p = new_pipeline(servers, tmp_path)
    yield p
    p.stop_all()


def calls(prefix: str, count: int, at_ms: int) -> list[RawCallEvent]:
    return [
        RawCallEvent(
            event_id=f"{prefix}-{i}",
            event_time=datetime.fromtimestamp((at_ms + i) / 1000, UTC),
            request_model="gpt-4.1",
            response_model="gpt-4.1",
            input_tokens=1000,
            output_tokens=250,
            duration_ms=800.0,
            status_code=200,
        )
        for i in range(count)
    ]


def budget_events(http: WebhookReceiver, rule: str) -> list[dict]:
    return [e for _, e in http.events() if e["rule"] == rule]


def test_seoul_day_spend_and_the_first_forecast_past_the_budget(pipeline: Pipeline, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    day = period_bounds("day", now_ms, SEOUL)
    if now_ms - day.start_ms < 10 * 60_000:  # just after midnight KST: leave room for "today" calls
        time.sleep((day.start_ms + 10 * 60_000 - now_ms) / 1000)
        now_ms = int(time.time() * 1000)
    elapsed_ms = now_ms - day.start_ms
    chunk1, chunk2, evening_before = 100, 150, 300
    # The forecast budget: chunk 1 alone projects to 60% of it, both chunks to 150%.
    forecast_budget = chunk1 * USD_PER_CALL * DAY_MS / elapsed_ms / 0.6
    budgets = write_budgets(
        tmp_path / "budgets.yaml",
        "Asia/Seoul",
        [
            # 62.5% of 1.60 is exactly chunk 1's 1.00: it fires once all of chunk 1 is counted.
            {"name": "seoul-day", "period": "day", "amount_usd": 1.6, "warn_at_percent": [62.5]},
            {"name": "seoul-forecast", "period": "day", "amount_usd": round(forecast_budget, 6)},
        ],
    )
    rules = write_rules(
        tmp_path / "rules.yaml",
        [
            {"name": "spend", "type": "budget", "budgets": ["seoul-day"]},
            {
                "name": "forecast",
                "type": "budget_forecast",
                "budgets": ["seoul-forecast"],
                "min_elapsed_minutes": 0,
            },
        ],
    )
    http = WebhookReceiver().start()
    try:
        env = alert_env(pipeline, rules, http, budgets=budgets)
        pipeline.start_stream_worker()
        alert = pipeline.start("alert", name="alert", **env)
        wait_for_log(pipeline, alert, "alert state loaded")

        today = day.start_ms + elapsed_ms // 2
        raw = pipeline.topic("calls.raw")
        publish(pipeline.kafka, raw, calls("evening-before", evening_before, day.start_ms - 20 * 60_000))
        publish(pipeline.kafka, raw, calls("chunk1", chunk1, today))
        assert http.wait(lambda r: budget_events(r, "spend"), 120), pipeline.logs()
        (spend,) = budget_events(http, "spend")
        # Today in Seoul only: the 300 calls of 23:40 KST the evening before are not today's.
        assert spend["value"] == pytest.approx(chunk1 * USD_PER_CALL, abs=1e-9)
        assert spend["details"]["period"] == day.label and spend["details"]["timezone"] == "Asia/Seoul"
        time.sleep(5)  # several evaluations with chunk 1 known: 60% projected is no alert
        assert budget_events(http, "forecast") == []

        published = int(time.time() * 1000)
        publish(pipeline.kafka, raw, calls("chunk2", chunk2, today + 10_000))
        assert http.wait(lambda r: budget_events(r, "forecast"), 120), pipeline.logs()
        received = int(time.time() * 1000)
        time.sleep(5)
    finally:
        http.close()
    (forecast,) = budget_events(http, "forecast")
    assert forecast["kind"] == "firing"
    # It fired on chunk 2 (all of it, or the part the stream had counted by then: the first
    # evaluation past the budget), on today's Seoul spend only, a whole number of calls.
    spent = forecast["details"]["spent_usd"]
    calls_counted = round(spent / USD_PER_CALL)
    assert spent == pytest.approx(calls_counted * USD_PER_CALL, abs=1e-9)
    assert chunk1 < calls_counted <= chunk1 + chunk2
    # Projected at the rate so far: spent x day / elapsed, for an elapsed time between the two instants.
    low, high = (spent * DAY_MS / (t - day.start_ms) for t in (received, published))
    assert low <= forecast["value"] <= high
    assert forecast["value"] > forecast_budget
    assert forecast["details"]["timezone"] == "Asia/Seoul" and forecast["details"]["period"] == day.label
    assert [e["kind"] for e in budget_events(http, "spend")] == ["firing"]  # one level, fired once

    pipeline.stop_all()
    log = alert.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
    # Its tables' changelogs existed before it joined (else a real broker may assign it none of
    # their partitions); it logged its stop; no terminal escape codes in a log file.
    assert "not found in cluster metadata" not in log
    assert log_events(alert, "alert worker stopped") and "\x1b[" not in log
