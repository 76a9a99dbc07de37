"""The index mappings must accept every field the contracts publish, with a fitting type."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel

from callstream.settings import ElasticsearchSettings
from callstream.sinks import index_templates as it
from callstream.sinks.documents import SinkDeadLetter
from callstream.sinks.settings import SinkSettings
from callstream.streams.contract import (
    DeadLetter,
    EnrichedCallEvent,
    LatencySummary,
    TokenSums,
    WindowAggregate,
)


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize(
    ("model", "properties"),
    [
        (EnrichedCallEvent, it.CALLS_PROPERTIES),
        (WindowAggregate, it.AGGREGATES_PROPERTIES),
        (DeadLetter, it.DEADLETTER_PROPERTIES),
        (SinkDeadLetter, it.SINK_DEADLETTER_PROPERTIES),
    ],
)
def test_every_contract_field_is_mapped(model: type[BaseModel], properties: dict[str, Any]) -> None:
    missing = _fields(model) - set(properties)
    assert not missing, (
        f"{model.__name__} fields without a mapping (strict mappings would refuse them): {missing}"
    )


def test_nested_aggregate_objects_are_mapped() -> None:
    assert set(it.AGGREGATES_PROPERTIES["tokens"]["properties"]) == _fields(TokenSums)
    assert set(it.AGGREGATES_PROPERTIES["latency_ms"]["properties"]) == _fields(LatencySummary)


def test_types_fit_the_contract() -> None:
    hints = typing.get_type_hints(EnrichedCallEvent)
    integer_types = {"short", "integer", "long"}
    for name, mapping in it.CALLS_PROPERTIES.items():
        hint = hints[name]
        base = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
        if base == {int}:
            assert mapping["type"] in integer_types, name
        elif base == {float}:
            assert mapping["type"] in {"float", "double", "scaled_float"}, name
        elif base == {bool}:
            assert mapping["type"] == "boolean", name
    for money in ("cost_usd", "input_cost_usd", "output_cost_usd", "reported_cost_usd"):
        assert it.CALLS_PROPERTIES[money] == {"type": "double"}
    assert it.AGGREGATES_PROPERTIES["cost_usd"]["type"] == "double"
    assert it.CALLS_PROPERTIES["cost_pico"]["type"] == "long"  # exact sums
    assert it.AGGREGATES_PROPERTIES["latency_sketch"] == {"type": "object", "enabled": False}
    assert it.CALLS_PROPERTIES["event_time"]["type"] == "date"


def test_templates_cover_every_index_family_with_strict_mappings() -> None:
    templates = it.templates(ElasticsearchSettings(index_prefix="cs"), SinkSettings())
    patterns = {p for body in templates.values() for p in body["index_patterns"]}
    assert patterns == {
        "cs-calls-*",
        "cs-aggregates-*",
        "cs-deadletter-*",
        "cs-sink-deadletter-*",
        "cs-alerts-*",
        "cs-bill-*",
    }
    for name, body in templates.items():
        dynamic = body["template"]["mappings"]["dynamic"]
        assert dynamic == ("strict" if name != "cs-alerts" else False)
    calls = templates["cs-calls"]["template"]
    assert calls["aliases"] == {"cs-calls-failed": {"filter": {"term": {"request_status": "error"}}}}


def test_retention_has_a_policy_per_template() -> None:
    es = ElasticsearchSettings(index_prefix="cs")
    sink = SinkSettings(calls_retention_days=7)
    days = it.retention_days(es, sink)
    assert set(it.templates(es, sink)) <= set(days)
    assert days["cs-calls"] == 7
    assert it.ilm_policy(7)["phases"]["delete"]["min_age"] == "7d"
    assert "rollover" not in str(it.ilm_policy(7))


class RecordingClient:
    """What `index_templates.apply` sends, recorded: the calls an Elasticsearch client would make.
    Neither local engine has ILM (docs/engines.md), so retention is checked here, offline."""

    def __init__(self, ilm: bool) -> None:
        self.has_ilm = ilm
        self.policies: dict[str, dict[str, Any]] = {}
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.ilm, self.cluster, self.indices = self, self, self

    def get_status(self) -> dict[str, str]:
        if not self.has_ilm:
            raise RuntimeError("no handler found for uri [/_ilm/status]")
        return {"operation_mode": "RUNNING"}

    def put_lifecycle(self, name: str, policy: dict[str, Any]) -> None:
        self.policies[name] = policy

    def put_component_template(self, name: str, template: dict[str, Any]) -> None:
        pass

    def put_index_template(self, name: str, **body: Any) -> None:
        self.index_templates[name] = body


def test_retention_is_attached_to_every_index_family_where_ilm_exists() -> None:
    es, sink = ElasticsearchSettings(index_prefix="cs"), SinkSettings(calls_retention_days=30)
    client = RecordingClient(ilm=True)
    it.apply(client, es, sink)
    days = it.retention_days(es, sink)
    assert set(client.policies) == set(days)
    for name, policy in client.policies.items():
        assert policy == it.ilm_policy(days[name])
    assert client.policies["cs-calls"]["phases"]["delete"]["min_age"] == "30d"
    for name, body in client.index_templates.items():
        settings = body["template"]["settings"]
        assert settings["index.lifecycle.name"] in client.policies, name
    daily = {"cs-calls", "cs-deadletter", "cs-sink-deadletter"}
    for name in daily:
        assert client.index_templates[name]["template"]["settings"]["index.lifecycle.parse_origination_date"]
    one_minute = client.index_templates["cs-aggregates-1m"]
    assert one_minute["index_patterns"] == ["cs-aggregates-1m-*"]
    assert one_minute["priority"] > client.index_templates["cs-aggregates"]["priority"]
    assert one_minute["template"]["settings"] == {"index.lifecycle.name": "cs-aggregates-1m"}


def test_without_ilm_the_templates_carry_no_lifecycle() -> None:
    client = RecordingClient(ilm=False)
    it.apply(client, ElasticsearchSettings(index_prefix="cs"), SinkSettings())
    assert client.policies == {}
    assert set(client.index_templates) == set(
        it.templates(ElasticsearchSettings(index_prefix="cs"), SinkSettings())
    )
    assert all("settings" not in body["template"] for body in client.index_templates.values())
