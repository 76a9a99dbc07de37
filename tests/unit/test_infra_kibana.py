"""The Kibana saved objects: the committed ndjson parses, its references resolve, and every field
it reads exists in the document contracts (WindowAggregate, EnrichedCallEvent, DeadLetter)."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from callstream.infra.kibana import saved_objects
from callstream.sinks.documents import SinkDeadLetter
from callstream.streams.contract import DeadLetter, Dimension, EnrichedCallEvent, WindowAggregate, WindowSize

NDJSON = Path(__file__).resolve().parents[2] / "infra" / "kibana" / "callstream.ndjson"


def model_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted field paths of a document; a dict field allows any sub-field (`name.*`)."""
    fields: set[str] = set()
    for name, info in model.model_fields.items():
        path = prefix + name
        annotation = info.annotation
        nested = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)]
        models = [a for a in nested if issubclass(a, BaseModel)]
        if models:
            fields |= model_fields(models[0], path + ".")
        elif typing.get_origin(annotation) is dict or annotation is dict:
            fields |= {path, path + ".*"}
        else:
            fields.add(path)
    return fields


CONTRACT_FIELDS = {
    "aggregate": model_fields(WindowAggregate),
    "call": model_fields(EnrichedCallEvent),
    "deadletter": model_fields(DeadLetter),
    "sink_deadletter": model_fields(SinkDeadLetter),
}


def field_exists(field: str, contract: str) -> bool:
    fields = CONTRACT_FIELDS[contract]
    if field in fields:
        return True
    return any(f.endswith(".*") and field.startswith(f[:-1]) for f in fields)


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in NDJSON.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for obj in objects}


def lenses(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["type"] == "lens"]


def layers(lens: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]


def data_view_of(lens: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> saved_objects.DataView:
    (reference,) = lens["references"]
    return next(v for v in saved_objects.DATA_VIEWS if v.id == reference["id"])


def test_committed_ndjson_is_what_the_module_generates() -> None:
    assert NDJSON.read_bytes() == saved_objects.ndjson(), (
        "infra/kibana/callstream.ndjson is stale: regenerate it with "
        "python -m callstream.infra.kibana.saved_objects > infra/kibana/callstream.ndjson"
    )


def test_ids_are_unique_and_types_known(objects: list[dict[str, Any]]) -> None:
    ids = [obj["id"] for obj in objects]
    assert len(ids) == len(set(ids))
    assert {obj["type"] for obj in objects} == {"index-pattern", "lens", "dashboard"}
    for obj in objects:
        assert obj["typeMigrationVersion"] == saved_objects.TYPE_MIGRATION_VERSION[obj["type"]]


def test_every_reference_resolves(objects: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]) -> None:
    for obj in objects:
        for reference in obj["references"]:
            target = by_id.get(reference["id"])
            assert target is not None, f"{obj['id']} refers to missing {reference['id']}"
            assert target["type"] == reference["type"], f"{obj['id']} -> {reference['id']}"


def test_data_views(by_id: dict[str, dict[str, Any]]) -> None:
    expected = {
        "callstream-aggregates-*": "window_start",
        "callstream-calls-*": "event_time",
        "callstream-calls-failed": "event_time",
        "callstream-deadletter-*": "detected_at",
        "callstream-sink-deadletter-*": "detected_at",
    }
    views = {
        o["attributes"]["title"]: o["attributes"]["timeFieldName"]
        for o in by_id.values()
        if o["type"] == "index-pattern"
    }
    assert views == expected
    for view in saved_objects.DATA_VIEWS:
        assert field_exists(view.time_field, view.contract), view.title


def test_lens_layers_reference_their_data_view(objects: list[dict[str, Any]]) -> None:
    for lens in lenses(objects):
        names = {reference["name"] for reference in lens["references"]}
        assert names == {f"indexpattern-datasource-layer-{layer}" for layer in layers(lens)}, lens["id"]


def formula_fields(formula: str) -> list[tuple[str, str]]:
    return re.findall(r"(\w+)\(([\w.]+)\)", formula)


def test_every_field_a_panel_reads_exists(
    objects: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    for lens in lenses(objects):
        view = data_view_of(lens, by_id)
        for layer in layers(lens).values():
            for column_id, column in layer["columns"].items():
                field = column.get("sourceField")
                if field and field != "___records___":
                    assert field_exists(field, view.contract), f"{lens['id']}.{column_id}: {field}"
                if column["operationType"] == "formula":
                    for _, field in formula_fields(column["params"]["formula"]):
                        assert field_exists(field, view.contract), f"{lens['id']}: formula field {field}"


def test_kql_filters_name_real_fields_and_values(
    objects: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    literals = {"dimension": set(typing.get_args(Dimension)), "window_size": set(typing.get_args(WindowSize))}
    literals["request_status"] = {"success", "error"}
    for lens in lenses(objects):
        view = data_view_of(lens, by_id)
        query = lens["attributes"]["state"]["query"]["query"]
        for field, value in re.findall(r'([\w.]+)\s*:\s*"([^"]*)"', query):
            assert field_exists(field, view.contract), f"{lens['id']}: {field}"
            if field in literals:
                assert value in literals[field], f"{lens['id']}: {field} is never {value!r}"


def test_aggregate_panels_count_each_call_once(
    objects: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> None:
    """Each call is in one document per dimension and window size: a panel must pick one of each."""
    for lens in lenses(objects):
        if data_view_of(lens, by_id) is saved_objects.AGGREGATES:
            query = lens["attributes"]["state"]["query"]["query"]
            assert re.search(r'dimension : "\w+"', query), lens["id"]
            assert len(re.findall(r'window_size : "(?:1m|1h|1d)"', query)) == 1, lens["id"]


def test_columns_and_accessors_are_consistent(objects: list[dict[str, Any]]) -> None:
    for lens in lenses(objects):
        (layer,) = layers(lens).values()
        columns = layer["columns"]
        assert sorted(layer["columnOrder"]) == sorted(columns), lens["id"]
        for column_id, column in columns.items():
            for reference in column.get("references", []):
                assert reference in columns, f"{lens['id']}.{column_id} -> {reference}"
            order = column.get("params", {}).get("orderBy", {})
            if order.get("type") == "column":
                assert order["columnId"] in columns, f"{lens['id']}.{column_id} orders by a missing column"
        visualization = lens["attributes"]["state"]["visualization"]
        accessors = [visualization.get("metricAccessor")]
        for xy_layer in visualization.get("layers", []):
            accessors += [xy_layer.get("xAccessor"), xy_layer.get("splitAccessor"), *xy_layer["accessors"]]
        accessors += [c["columnId"] for c in visualization.get("columns", [])]
        for accessor in filter(None, accessors):
            assert accessor in columns, f"{lens['id']}: accessor {accessor}"


def test_error_rate_is_a_ratio_of_sums(objects: list[dict[str, Any]]) -> None:
    found = 0
    for lens in lenses(objects):
        for layer in layers(lens).values():
            for column_id, column in layer["columns"].items():
                assert column.get("sourceField") != "status_code", "status codes are categories, not measures"
                if column["operationType"] == "formula" and "rror" in column["label"]:
                    found += 1
                    assert formula_fields(column["params"]["formula"]) == [
                        ("sum", "errors"),
                        ("sum", "requests"),
                    ]
                    parts = [layer["columns"][f"{column_id}X{i}"] for i in range(3)]
                    assert [(p["operationType"], p.get("sourceField")) for p in parts[:2]] == [
                        ("sum", "errors"),
                        ("sum", "requests"),
                    ]
                    ast = parts[2]["params"]["tinymathAst"]
                    assert (ast["name"], ast["args"]) == ("divide", [f"{column_id}X0", f"{column_id}X1"])
    assert found == 3, "error rate: the metric, the per-model trend and the model table"


def test_latency_panels_use_precomputed_percentiles(objects: list[dict[str, Any]]) -> None:
    for lens in lenses(objects):
        for layer in layers(lens).values():
            for column in layer["columns"].values():
                assert column["operationType"] != "percentile", "percentiles come from the stream's sketches"
                if column.get("sourceField", "").startswith("latency_ms.p"):
                    assert column["operationType"] in {"max", "average"}


def test_dashboard_panels(by_id: dict[str, dict[str, Any]]) -> None:
    dashboard = by_id[saved_objects.DASHBOARD_ID]
    panels = orjson.loads(dashboard["attributes"]["panelsJSON"])
    references = {r["name"]: r for r in dashboard["references"]}
    cells: set[tuple[int, int]] = set()
    shown = set()
    for panel in panels:
        reference = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert reference["type"] == panel["type"] == "lens"
        shown.add(reference["id"])
        grid = panel["gridData"]
        assert grid["i"] == panel["panelIndex"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 48
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {panel['panelIndex']} overlaps another"
        cells |= area
    assert shown == {obj["id"] for obj in by_id.values() if obj["type"] == "lens"}
    required = {
        "callstream-latency-p95-by-model",
        "callstream-tokens-by-model",
        "callstream-total-cost",
        "callstream-error-rate",
        "callstream-cost-by-family",
        "callstream-top-error-types",
    }
    assert required <= shown
