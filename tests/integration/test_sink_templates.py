"""The index templates on a live server: strict mappings, the failed-calls alias, money, retention."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import BadRequestError, Elasticsearch

from callstream.infra import local_servers
from callstream.settings import ElasticsearchSettings
from callstream.sinks import index_templates
from callstream.sinks.documents import Documents, Origin
from tests.unit.test_sink_events import enriched_events

pytestmark = pytest.mark.integration


@pytest.fixture
def prefixed(servers: local_servers.LocalServers) -> Iterator[tuple[Elasticsearch, ElasticsearchSettings]]:
    settings = ElasticsearchSettings(url=servers.es_url, index_prefix=f"tp{uuid.uuid4().hex[:8]}")
    client = Elasticsearch(servers.es_url, request_timeout=30)
    index_templates.apply(client, settings)
    index_templates.apply(client, settings)  # idempotent
    yield client, settings
    client.close()


def test_calls_failed_alias_holds_exactly_the_error_events(
    prefixed: tuple[Elasticsearch, ElasticsearchSettings],
) -> None:
    client, settings = prefixed
    events = enriched_events(300, seed=71)
    documents = Documents(settings.index_prefix)
    for event in events:
        doc = documents.enriched_event(event, Origin("t", 0, 0))
        client.index(index=doc.index, id=doc.id, document=event)
    client.indices.refresh(index=f"{settings.index_prefix}-*")
    errors = sum(1 for e in events if e["request_status"] == "error")
    assert 0 < errors < len(events)
    assert client.count(index=f"{settings.index_prefix}-calls-failed")["count"] == errors
    assert client.count(index=f"{settings.index_prefix}-calls-*")["count"] == len(events)
    # Money sums as money (double): compared to the generator's own total, to the cent.
    total = client.search(
        index=f"{settings.index_prefix}-calls-*", size=0, aggs={"cost": {"sum": {"field": "cost_usd"}}}
    )["aggregations"]["cost"]["value"]
    assert total == pytest.approx(sum(e["cost_usd"] for e in events), abs=0.01)


def test_strict_mappings_refuse_unknown_fields_and_wrong_types(
    prefixed: tuple[Elasticsearch, ElasticsearchSettings],
) -> None:
    client, settings = prefixed
    event = enriched_events(1, seed=72)[0]
    index = f"{settings.index_prefix}-calls-2026.03.01"
    with pytest.raises(BadRequestError, match="strict"):
        client.index(index=index, id="u", document=event | {"unknown": 1})
    with pytest.raises(BadRequestError):
        client.index(index=index, id="w", document=event | {"input_tokens": "many"})
    # A bad client address from a caller's metadata must not cost the whole event.
    client.index(index=index, id="ip", document=event | {"client_ip": "not-an-address"})


def test_aggregate_mapping_counts_errors_by_type_and_stores_the_sketch(
    prefixed: tuple[Elasticsearch, ElasticsearchSettings],
) -> None:
    client, settings = prefixed
    index = f"{settings.index_prefix}-aggregates-1m-2026.03"
    doc = {
        "doc_id": "a",
        "version": 1,
        "errors_by_type": {"rate_limit_exceeded": 3, "timeout": 1},
        "latency_sketch": {"bins": {"12": 4}, "zero": 0},
        "cost_usd": 1.25,
    }
    client.index(index=index, id="a", document=doc, refresh=True)
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["errors_by_type"]["properties"]["timeout"]["type"] == "long"
    assert mapping["properties"]["latency_sketch"] == {"type": "object", "enabled": False}
    assert client.get(index=index, id="a")["_source"]["latency_sketch"] == doc["latency_sketch"]


@pytest.mark.needs(local_servers.UNINDEXED_OBJECTS)
def test_latency_sketch_is_not_searchable(prefixed: tuple[Elasticsearch, ElasticsearchSettings]) -> None:
    """`enabled: false`: the sketch is stored (see above) but not indexed, so no query finds it."""
    client, settings = prefixed
    index = f"{settings.index_prefix}-aggregates-1m-2026.04"
    client.index(index=index, id="a", document={"doc_id": "a", "latency_sketch": {"zero": 0}}, refresh=True)
    assert client.count(index=index)["count"] == 1
    hits = client.search(index=index, query={"term": {"latency_sketch.zero": 0}})["hits"]["hits"]
    assert hits == []
    # Retention (ILM) is checked offline (tests/unit/test_sink_templates.py): neither local
    # engine has ILM, see docs/engines.md.
