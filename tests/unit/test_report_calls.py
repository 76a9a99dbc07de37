"""Attribution, errors, waste and reconciliation over call records, against hand-computed numbers."""

from __future__ import annotations

import pytest

from callstream.reports import calls
from callstream.reports.calls import CallGroup, CallSample, ModelUse, ReconcileCell
from callstream.streams.windows import WindowState

PICO = 10**12


def test_attribution_ranks_by_cost_and_keeps_the_rest_as_a_sum() -> None:
    groups = [
        CallGroup(
            "u1",
            3,
            1,
            2 * PICO,
            0,
            300,
            30,
            models={"a": ModelUse(2, 3 * PICO // 2), "b": ModelUse(1, PICO // 2)},
        ),
        CallGroup("u2", 1, 0, 5 * PICO, 0, 100, 10, models={"b": ModelUse(1, 5 * PICO)}),
        CallGroup("u3", 9, 0, PICO, 2, 900, 90),
    ]
    result = calls.attribution(
        "user", "calls index", groups, total_cost_pico=10 * PICO, distinct_keys=4, top_n=2
    )
    assert [r.key for r in result.rows] == ["u2", "u1"]
    assert result.rows[0].share_of_spend == pytest.approx(0.5)
    assert [(m.model, m.share_of_cost) for m in result.rows[1].models] == [("a", 0.75), ("b", 0.25)]
    assert result.cost_pico_outside_top == 3 * PICO  # u3 and whatever the fourth user spent
    assert result.distinct_keys == 4


def test_error_rows_rates_and_samples() -> None:
    state = WindowState.of(
        requests=200, successes=190, errors=10, errors_by_type={"timeout": 4, "rate_limit_exceeded": 6}
    )
    rows = calls.error_rows(
        {"gpt": state, "quiet": WindowState.of(requests=5, successes=5)},
        {("gpt", "timeout"): [("Request timed out", 4)]},
    )
    assert [r.model for r in rows] == ["gpt", "quiet"]
    gpt = rows[0]
    assert gpt.error_rate == pytest.approx(0.05)
    assert [(c.category, c.count, c.rate) for c in gpt.categories] == [
        ("rate_limit_exceeded", 6, 0.03),
        ("timeout", 4, 0.02),
    ]
    assert gpt.categories[1].samples[0].message == "Request timed out"
    assert rows[1].error_rate == 0 and rows[1].categories == []


def sample(event_id: str, inp: int, out: int, cost: int, session: str | None = "s1") -> CallSample:
    return CallSample(event_id, 0, "m", inp, out, cost, session, "u", "svc")


def test_waste_is_a_ratio_strictly_above_the_threshold() -> None:
    calls_in = [
        sample("exactly-10", 1000, 100, 5),  # ratio 10: not above
        sample("above", 1001, 100, 7),
        sample("far-above", 5000, 10, 11, "s2"),
        sample("no-output", 5000, 0, 13),  # failed or embedding: no ratio
        sample("ordinary", 300, 100, 17),
    ]
    result = calls.waste(calls_in, 10, scanned=5, complete=True, total_cost_pico=100, top_n=10)
    assert [c.event_id for c in result.top_calls] == ["far-above", "above"]
    assert (result.calls, result.cost_pico) == (2, 18)
    assert result.share_of_spend == pytest.approx(0.18)
    assert result.top_calls[0].ratio == 500
    assert [(s.session_id, s.calls, s.cost_pico) for s in result.top_sessions] == [
        ("s2", 1, 11),
        ("s1", 1, 7),
    ]
    stricter = calls.waste(calls_in, 10.02, scanned=5, complete=True, total_cost_pico=100, top_n=10)
    assert [c.event_id for c in stricter.top_calls] == ["far-above"]  # 1001/100 = 10.01


def test_reconciliation_drift_per_model_and_day_and_in_total() -> None:
    cells = [
        # 4 of 5 calls report $1.05 in all where callstream computed $1.00: drift +5%.
        ReconcileCell("gpt", "2026-05-04", 5, 4, 1.05, PICO, 0, 0.0),
        # 2 calls report $0.30 but had no price here: counted apart, not in the drift.
        ReconcileCell("acme", "2026-05-04", 3, 0, 0.0, 0, 2, 0.30),
        ReconcileCell("gpt", "2026-05-05", 7, 0, 0.0, 0, 0, 0.0),  # nothing reported: no row
    ]
    result = calls.reconciliation(cells)
    assert [(r.model, r.day) for r in result.rows] == [("acme", "2026-05-04"), ("gpt", "2026-05-04")]
    gpt = result.rows[1]
    assert gpt.calls_with_reported == 4
    assert gpt.drift_usd == pytest.approx(0.05)
    assert gpt.drift_ratio == pytest.approx(0.05)
    acme = result.rows[0]
    assert acme.drift_ratio is None and acme.reported_unpriced_calls == 2
    assert acme.reported_unpriced_usd == pytest.approx(0.30)
    total = result.total
    assert total is not None
    assert (total.calls, total.calls_with_reported, total.computed_pico) == (8, 6, PICO)
    assert total.drift_ratio == pytest.approx(0.05)
    assert calls.reconciliation([]).total is None
