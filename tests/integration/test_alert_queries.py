"""The alert rules' queries, run the way Kibana's `.es-query` rule runs them, against the test
servers, on window aggregate documents placed around the current minute.

Ground truth comes from the generated documents by the rule's definition in plain Python (e.g.
"models whose p95 exceeded 5000 ms in each of the three complete minutes before now"), never from
the query under test. The documents go to a fresh index that the sink's aggregates template
covers, so the mapping is the production one, and nothing else is in it.

The ES|QL rule (error rate) is not run here: neither local engine has ES|QL (docs/engines.md); its
query is parsed and checked against the aggregates mapping in tests/unit/test_esql_rules.py.
"""

from __future__ import annotations

import operator
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from callstream.infra.kibana.provision import rule_files
from callstream.settings import ElasticsearchSettings
from callstream.streams.contract import LatencySummary, TokenSums, WindowAggregate
from tests.backend import Servers

pytestmark = pytest.mark.integration

RULES = rule_files()
COMPARE: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge}
MINUTE = timedelta(minutes=1)


@pytest.fixture
def es(servers: Servers) -> Iterator[Any]:
    client = ElasticsearchSettings(url=servers.es_url).client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def index(es: Any) -> Iterator[str]:
    name = f"callstream-aggregates-1m-ruletest-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        es.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture
def this_minute() -> datetime:
    """Start of the current minute, with enough of it left that queries run within it."""
    now = datetime.now(UTC)
    if now.second >= 45:
        time.sleep(61 - now.second)
        now = datetime.now(UTC)
    return now.replace(second=0, microsecond=0)


def aggregate(
    key: str,
    start: datetime,
    *,
    dimension: str = "model",
    window_size: str = "1m",
    requests: int = 10,
    errors: int = 0,
    p95: float = 800.0,
    cost: float = 0.5,
    unpriced: int = 0,
) -> dict[str, Any]:
    size = {"1m": MINUTE, "1h": timedelta(hours=1), "1d": timedelta(days=1)}[window_size]
    doc = WindowAggregate(
        doc_id=f"{dimension}|{key}|{window_size}|{int(start.timestamp() * 1000)}",
        version=1,
        dimension=dimension,  # type: ignore[arg-type]
        key=key,
        provider="openai",
        model_family=key,
        window_size=window_size,  # type: ignore[arg-type]
        window_start=start,
        window_end=start + size,
        requests=requests,
        successes=requests - errors,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        errors_by_type={"provider_server_error": errors} if errors else {},
        tokens=TokenSums(input=100 * requests, output=20 * requests, total=120 * requests),
        cost_usd=cost,
        unpriced_requests=unpriced,
        latency_ms=LatencySummary(
            min=100, max=p95 * 1.2, mean=p95 / 2, p50=p95 / 2, p90=p95 * 0.9, p95=p95, p99=p95
        ),
    )
    return doc.model_dump(mode="json")


def index_docs(es: Any, index: str, docs: list[dict[str, Any]]) -> None:
    operations: list[dict[str, Any]] = []
    for doc in docs:
        operations += [{"index": {"_index": index, "_id": doc["doc_id"]}}, doc]
    result = es.bulk(operations=operations, refresh=True)
    assert not result["errors"], result


def run_dsl_rule(es: Any, rule: dict[str, Any], index: str) -> dict[str, float]:
    """What Kibana's es-query executor does: the rule's query within its time window, grouped and
    aggregated as the parameters say; returns the groups whose value passes the threshold."""
    params = rule["params"]
    window = f"now-{params['timeWindowSize']}{params['timeWindowUnit']}"
    query = {
        "bool": {
            "filter": [
                orjson.loads(params["esQuery"])["query"],
                {"range": {params["timeField"]: {"gt": window, "lte": "now"}}},
            ]
        }
    }
    metric = {params["aggType"]: {"field": params["aggField"]}} if params["aggType"] != "count" else None
    if params["groupBy"] == "top":
        aggs: dict[str, Any] = {
            "groups": {"terms": {"field": params["termField"], "size": params["termSize"]}}
        }
        if metric:
            aggs["groups"]["aggs"] = {"value": metric}
    else:
        aggs = {"value": metric} if metric else {}
    response = es.search(index=index, query=query, aggs=aggs or None, size=0, track_total_hits=True)
    if params["groupBy"] == "top":
        values = {
            bucket["key"]: bucket["value"]["value"] if metric else bucket["doc_count"]
            for bucket in response["aggregations"]["groups"]["buckets"]
        }
    else:
        value = response["aggregations"]["value"]["value"] if metric else response["hits"]["total"]["value"]
        values = {"all documents": value}
    passes = COMPARE[params["thresholdComparator"]]
    return {group: value for group, value in values.items() if passes(value, params["threshold"][0])}


def test_slow_rule_needs_three_complete_slow_minutes(es: Any, index: str, this_minute: datetime) -> None:
    slow, fast = 6000.0, 900.0
    # minute offsets 0 (current, still filling), -1, -2, -3, -4 -> p95 per model
    plan = {
        "slow-3": {0: fast, -1: slow, -2: slow, -3: slow, -4: fast},
        "slow-2": {-1: slow, -2: slow, -3: fast},
        "gap": {-1: slow, -3: slow, -4: slow},
        "slow-now": {0: slow, -1: slow, -2: slow, -3: fast},
        "slow-old": {-2: slow, -3: slow, -4: slow},
        "at-threshold": {-1: 5000.0, -2: slow, -3: slow},
    }
    docs = [
        aggregate(m, this_minute + k * MINUTE, p95=p95)
        for m, minutes in plan.items()
        for k, p95 in minutes.items()
    ]
    # The same minutes in other dimensions and sizes must not count.
    docs += [
        aggregate("openai", this_minute + k * MINUTE, dimension="provider", p95=slow) for k in (-1, -2, -3)
    ]
    index_docs(es, index, docs)

    expected = {m for m, minutes in plan.items() if all(minutes.get(k, 0) > 5000 for k in (-1, -2, -3))}
    assert expected == {"slow-3"}
    assert set(run_dsl_rule(es, RULES["callstream-slow-p95"], index)) == expected


def test_daily_cost_sums_today_once(es: Any, index: str, this_minute: datetime) -> None:
    today = this_minute.replace(hour=0, minute=0)
    docs = [
        aggregate("gpt-4.1", today, cost=60.25),
        aggregate("claude-sonnet-4-5", today, cost=50.5),
        aggregate("deepseek-v3.2", this_minute, cost=0.125),
        # Not today: yesterday's last minute is inside the 24 h window, outside the UTC day.
        aggregate("gpt-4.1", today - MINUTE, cost=500.0),
        # The same calls again, per provider and per hour: counting them would triple the cost.
        aggregate("openai", today, dimension="provider", cost=110.875),
        aggregate("gpt-4.1", today, window_size="1h", cost=60.25),
    ]
    index_docs(es, index, docs)

    expected = sum(
        d["cost_usd"]
        for d in docs
        if d["dimension"] == "model"
        and d["window_size"] == "1m"
        and d["window_start"] >= today.isoformat()[:10]
    )
    assert expected == pytest.approx(110.875)
    fired = run_dsl_rule(es, RULES["callstream-daily-cost"], index)
    assert fired == {"all documents": pytest.approx(expected)}


def test_unpriced_models_are_reported_per_model(es: Any, index: str, this_minute: datetime) -> None:
    docs = [
        aggregate("mystery-model", this_minute - 2 * MINUTE, unpriced=3),
        aggregate("mystery-model", this_minute - 5 * MINUTE, unpriced=4),
        aggregate("gpt-4.1", this_minute - 2 * MINUTE, unpriced=0),
        aggregate("ancient-model", this_minute - 30 * MINUTE, unpriced=9),
    ]
    index_docs(es, index, docs)
    assert run_dsl_rule(es, RULES["callstream-unpriced-models"], index) == {"mystery-model": 7}
