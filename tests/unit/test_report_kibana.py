"""The report-era Kibana panels (long range, cost per 1k tokens, top users and services) and data
views that follow the index prefix."""

from __future__ import annotations

from typing import Any

import orjson

from callstream.infra.kibana import provision, saved_objects


def objects(prefix: str = "callstream") -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in (orjson.loads(line) for line in saved_objects.ndjson(prefix).splitlines())}


def columns(lens: dict[str, Any]) -> dict[str, Any]:
    (layer,) = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
    return layer["columns"]


def test_data_views_follow_the_index_prefix() -> None:
    titles = {o["attributes"]["title"] for o in objects("acme").values() if o["type"] == "index-pattern"}
    assert titles == {
        "acme-aggregates-*",
        "acme-calls-*",
        "acme-calls-failed",
        "acme-deadletter-*",
        "acme-sink-deadletter-*",
    }
    assert provision.saved_objects_ndjson("acme") == saved_objects.ndjson("acme")
    assert provision.saved_objects_ndjson("callstream") == saved_objects.ndjson()
    # Everything but the data views' titles and names is the same for every prefix.
    default, other = objects(), objects("acme")
    assert default.keys() == other.keys()
    for object_id, obj in default.items():
        if obj["type"] != "index-pattern":
            assert obj == other[object_id]


def test_long_range_panels_read_hourly_aggregates() -> None:
    by_id = objects()
    for lens_id in ("callstream-cost-by-model-long-range", "callstream-latency-p95-long-range"):
        query = by_id[lens_id]["attributes"]["state"]["query"]["query"]
        assert query == 'dimension : "model" and window_size : "1h"'


def test_cost_per_1k_tokens_is_a_ratio_of_sums_times_1000() -> None:
    lens = objects()["callstream-cost-per-1k-tokens"]
    cols = columns(lens)
    assert cols["per1k"]["params"]["formula"] == "sum(cost_usd) / sum(tokens.total) * 1000"
    assert [(cols[f"per1kX{i}"]["operationType"], cols[f"per1kX{i}"]["sourceField"]) for i in (0, 1)] == [
        ("sum", "cost_usd"),
        ("sum", "tokens.total"),
    ]
    ast = cols["per1kX2"]["params"]["tinymathAst"]
    assert (ast["name"], ast["args"][1]) == ("multiply", 1000)
    assert (ast["args"][0]["name"], ast["args"][0]["args"]) == ("divide", ["per1kX0", "per1kX1"])
    assert "unpriced_requests : 0" in lens["attributes"]["state"]["query"]["query"]


def test_top_users_and_services_rank_calls_by_cost() -> None:
    by_id = objects()
    for lens_id, field in (("callstream-top-users", "user_id"), ("callstream-top-services", "service_name")):
        lens = by_id[lens_id]
        assert lens["references"][0]["id"] == saved_objects.CALLS.id
        cols = columns(lens)
        key = next(c for c in cols.values() if c["operationType"] == "terms")
        assert key["sourceField"] == field
        assert cols[key["params"]["orderBy"]["columnId"]]["sourceField"] == "cost_usd"
