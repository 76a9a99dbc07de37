"""What only a real Elasticsearch has, and production relies on: ILM and external versioning.

Runs on the docker backend only (CALLSTREAM_TEST_BACKEND=docker or auto with a Docker engine);
noida-db has no ILM, so on the default backend these tests are skipped with that reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import ConflictError

from callstream.settings import ElasticsearchSettings
from tests import containers

pytestmark = pytest.mark.integration


@pytest.fixture
def real_es(request: pytest.FixtureRequest) -> Iterator[Any]:
    backend, why = containers.resolve_backend()
    if not backend:
        pytest.skip(f"no Docker engine reachable: {why}")
    if backend != "docker":
        pytest.skip(
            "needs a real Elasticsearch (ILM, external versioning), which noida-db lacks: run with "
            f"CALLSTREAM_TEST_BACKEND=docker where a Docker engine is reachable ({why})"
        )
    servers = request.getfixturevalue("servers")
    client = ElasticsearchSettings(url=servers.es_url).client()
    try:
        yield client
    finally:
        client.close()


def test_ilm_policy_put_get_and_attached(real_es: Any) -> None:
    name = f"callstream-test-{uuid.uuid4().hex[:8]}"
    index = f"{name}-000001"
    policy = {"phases": {"hot": {"actions": {}}, "delete": {"min_age": "3d", "actions": {"delete": {}}}}}
    real_es.ilm.put_lifecycle(name=name, policy=policy)
    try:
        stored = real_es.ilm.get_lifecycle(name=name)[name]["policy"]["phases"]
        assert stored["delete"]["min_age"] == "3d"
        assert "delete" in stored["delete"]["actions"]
        real_es.indices.create(index=index, settings={"index.lifecycle.name": name})
        explained = real_es.ilm.explain_lifecycle(index=index)["indices"][index]
        assert explained["managed"] is True and explained["policy"] == name
    finally:
        real_es.indices.delete(index=index, ignore_unavailable=True)
        real_es.ilm.delete_lifecycle(name=name)


def test_sink_templates_attach_retention_where_ilm_exists(real_es: Any) -> None:
    """`callstream setup` ran against this server: a new daily calls index is ILM-managed."""
    index = f"callstream-calls-2099.01.{uuid.uuid4().int % 28 + 1:02d}"
    real_es.indices.create(index=index)
    try:
        explained = real_es.ilm.explain_lifecycle(index=index)["indices"][index]
        assert explained["managed"] is True, "the calls template sets no lifecycle policy"
        assert explained["policy"] == "callstream-calls"
    finally:
        real_es.indices.delete(index=index, ignore_unavailable=True)


def test_external_versions_keep_the_newest_document(real_es: Any) -> None:
    """The sink writes window aggregates with version_type=external: older re-deliveries lose."""
    index = f"callstream-test-versions-{uuid.uuid4().hex[:8]}"
    try:
        real_es.index(index=index, id="w", document={"v": 5}, version=5, version_type="external")
        with pytest.raises(ConflictError):
            real_es.index(index=index, id="w", document={"v": 3}, version=3, version_type="external")
        with pytest.raises(ConflictError):
            real_es.index(index=index, id="w", document={"v": 5}, version=5, version_type="external")
        result = real_es.index(index=index, id="w", document={"v": 6}, version=6, version_type="external")
        assert result["_version"] == 6
        stored = real_es.get(index=index, id="w")
        assert (stored["_version"], stored["_source"]) == (6, {"v": 6})
    finally:
        real_es.indices.delete(index=index, ignore_unavailable=True)
