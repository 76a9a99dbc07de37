"""alerts.state: transitions (firing, realert, escalated, resolved), silences, the outbox, ids."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.alerts.contract import AlertEvent
from callstream.alerts.evaluate import Group, Observation
from callstream.alerts.rules import parse_rules
from callstream.alerts.series import MINUTE_MS, TOTAL, SeriesId
from callstream.alerts.state import RECORD, AlertState, step
from callstream.budgets import parse_budgets

T0 = 1_772_366_400_000
GPT = SeriesId("model", "gpt-4.1")
TARGETS = ["webhook", "slack:#llm"]


def group(**fields: Any) -> Group:
    base = {
        "name": "errors",
        "type": "threshold",
        "metric": "error_rate",
        "threshold": 0.05,
        "group_by": "model",
    }
    return Group(parse_rules({"rules": [base | fields]}).rules[0], GPT)


def fire(value: float = 0.2, level: float | None = None) -> Observation:
    return Observation(True, value, 0.05, level, message="error_rate 20% > 5%")


CLEAR = Observation(False, 0.01, 0.05)


def run(
    g: Group, steps: list[tuple[int, Observation | None, bool]]
) -> tuple[AlertState, list[dict[str, Any]]]:
    state = AlertState(g.alert_id)
    events: list[dict[str, Any]] = []
    for at, observation, silenced in steps:
        events += step(state, g, observation, at, silenced, TARGETS)
    return state, events


def test_one_firing_then_one_resolution() -> None:
    g = group(realert_minutes=60)
    state, events = run(
        g, [(T0 + i * 5000, fire(), False) for i in range(10)] + [(T0 + 60_000, CLEAR, False)] * 3
    )
    assert [e["kind"] for e in events] == ["firing", "resolved"]
    firing, resolved = events
    assert firing["event_id"] == f"errors|model|gpt-4.1#1.{T0}:firing"
    assert resolved["event_id"] == f"errors|model|gpt-4.1#1.{T0}:resolved"
    assert firing["channels"] == TARGETS and resolved["channels"] == TARGETS
    assert resolved["resolved_at"] is not None and resolved["fired_at"] == firing["fired_at"]
    for event in events:
        AlertEvent.model_validate(event)
    assert state.status == "ok" and state.episode == 1


def test_nothing_to_say_keeps_the_state() -> None:
    g = group()
    state, events = run(g, [(T0, fire(), False), (T0 + 1000, None, False)])
    assert state.status == "firing" and [e["kind"] for e in events] == ["firing"]


def test_realert_while_firing_at_the_interval() -> None:
    g = group(realert_minutes=10)
    steps = [(T0 + i * MINUTE_MS, fire(), False) for i in range(31)]
    _, events = run(g, steps)
    assert [(e["kind"], e["at"][11:16]) for e in events] == [
        ("firing", "12:00"),
        ("realert", "12:10"),
        ("realert", "12:20"),
        ("realert", "12:30"),
    ]
    assert events[2]["event_id"].endswith(":realert:2")
    _, never = run(group(realert_minutes=0), steps)
    assert [e["kind"] for e in never] == ["firing"]


def test_a_second_episode_gets_new_ids() -> None:
    g = group()
    state, events = run(
        g,
        [
            (T0, fire(), False),
            (T0 + 1000, CLEAR, False),
            (T0 + 2000, fire(), False),
            (T0 + 3000, CLEAR, False),
        ],
    )
    assert [e["event_id"].split("#")[1] for e in events] == [
        f"1.{T0}:firing",
        f"1.{T0}:resolved",
        f"2.{T0 + 2000}:firing",
        f"2.{T0 + 2000}:resolved",
    ]
    assert state.episode == 2


def test_resolve_after_waits_for_the_condition_to_stay_clear() -> None:
    g = group(resolve_after_minutes=2)
    _, events = run(
        g,
        [
            (T0, fire(), False),
            (T0 + MINUTE_MS, CLEAR, False),
            (T0 + 2 * MINUTE_MS, fire(), False),  # back: the clear spell starts again
            (T0 + 3 * MINUTE_MS, CLEAR, False),
            (T0 + 4 * MINUTE_MS, CLEAR, False),
            (T0 + 5 * MINUTE_MS, CLEAR, False),
        ],
    )
    assert [(e["kind"], e["at"][11:16]) for e in events] == [("firing", "12:00"), ("resolved", "12:05")]


def test_budget_levels_escalate() -> None:
    budget = parse_budgets({"budgets": [{"name": "d", "period": "day", "amount_usd": 100}]}).budgets[0]
    g = Group(parse_rules({"rules": [{"name": "b", "type": "budget"}]}).rules[0], TOTAL, budget)
    _, events = run(
        g,
        [
            (T0, Observation(True, 81, 80, 80), False),
            (T0 + 1000, Observation(True, 85, 80, 80), False),
            (T0 + 2000, Observation(True, 95, 90, 90), False),
            (T0 + 3000, Observation(True, 120, 100, 100), False),
            (T0 + 4000, Observation(False, 0, 80, None), False),
        ],
    )
    assert [(e["kind"], e["level"]) for e in events] == [
        ("firing", 80),
        ("escalated", 90),
        ("escalated", 100),
        ("resolved", 100),
    ]
    assert events[1]["event_id"] == f"b|all|*|d#1.{T0}:escalated:90"


def test_a_silenced_firing_is_recorded_not_sent_and_is_sent_when_the_silence_ends() -> None:
    g = group(realert_minutes=0)
    state, events = run(g, [(T0, fire(), True), (T0 + 1000, fire(), True)])
    assert len(events) == 1 and events[0]["silenced"] and events[0]["channels"] == []
    assert {d.target for d in state.outbox} == {RECORD}  # recorded only
    later = step(state, g, fire(), T0 + 2000, False, TARGETS)
    assert [e["kind"] for e in later] == ["firing"] and later[0]["event_id"] == events[0]["event_id"]
    assert {d.target for d in state.outbox} == {RECORD, *TARGETS}


def test_a_resolution_is_sent_only_when_its_firing_was() -> None:
    g = group()
    _, events = run(g, [(T0, fire(), True), (T0 + 1000, CLEAR, False)])
    assert [(e["kind"], e["notified"]) for e in events] == [("firing", False), ("resolved", False)]
    _, events = run(g, [(T0, fire(), False), (T0 + 1000, CLEAR, True)])
    assert [(e["kind"], e["notified"]) for e in events] == [("firing", True), ("resolved", True)]


def test_the_outbox_owes_each_target_until_it_took_the_event() -> None:
    g = group()
    state, (event,) = run(g, [(T0, fire(), False)])
    assert sorted((d.event_id, d.target) for d in state.outbox) == sorted(
        (event["event_id"], t) for t in [RECORD, *TARGETS]
    )
    state.delivered(event["event_id"], "webhook")
    state.delivered(event["event_id"], RECORD)
    assert event["event_id"] in state.events
    state.delivered(event["event_id"], "slack:#llm")
    assert state.outbox == [] and state.events == {}
    copy = AlertState.from_bytes(state.to_bytes())
    assert copy == state


def test_a_state_survives_its_record() -> None:
    g = group()
    state, _ = run(g, [(T0, fire(), False)])
    state.outbox[1].attempts = 2
    state.outbox[1].last_error = "HTTP 503"
    assert AlertState.from_bytes(state.to_bytes()) == state


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10 * MINUTE_MS), st.booleans(), st.booleans(), st.sampled_from([None, 80, 90, 100])
        ),
        max_size=60,
    ),
    st.integers(0, 30),
)
def test_episodes_alternate_and_ids_never_repeat(
    steps: list[tuple[int, bool, bool, int | None]], realert: int
) -> None:
    """Whatever the sequence: events alternate firing → (realert|escalated)* → resolved per episode,
    every event id is new, and a resolution is notified exactly when its episode's firing was."""
    g = group(realert_minutes=realert)
    state = AlertState(g.alert_id)
    at = T0
    events: list[dict[str, Any]] = []
    for gap, firing, silenced, level in steps:
        at += gap
        observation = Observation(firing, 1.0, 0.5, level if firing else None) if gap % 7 else None
        events += step(state, g, observation, at, silenced, TARGETS)
    seen: dict[str, dict[str, Any]] = {}
    for event in events:  # an id repeats only for a silenced firing sent once the silence is over
        first = seen.get(event["event_id"])
        if first is not None:
            assert event["kind"] == "firing" and not first["notified"] and event["notified"]
        seen[event["event_id"]] = event
    open_episode: int | None = None
    notified = False
    for event in events:
        if event["kind"] == "resolved":
            assert open_episode == event["episode"]
            assert event["notified"] == notified
            open_episode, notified = None, False
        elif event["kind"] == "firing" and open_episode is None:
            open_episode, notified = event["episode"], event["notified"]
        else:
            assert open_episode == event["episode"]
            notified = notified or event["notified"]
