"""Fixtures shared by all tests: local servers, started once per test run.

`servers` runs on the engine CALLSTREAM_TEST_BACKEND names (tests/backend.py): embedded
(noida-db, the default) or real (Apache Kafka and Elasticsearch). A test marked
`@pytest.mark.needs(feature, ...)` is skipped, with the engine's reason, where the engine lacks a
feature (`local_servers.FEATURES`); `@pytest.mark.smoke` tests run on both engines in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callstream.infra import local_servers
from callstream.infra.local_servers import LocalServers
from callstream.infra.setup import setup
from callstream.settings import ElasticsearchSettings, KafkaSettings
from tests.backend import BACKEND_ENV, selected_engine


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*features): skipped on an engine that lacks one of these features "
        f"({', '.join(local_servers.FEATURES)})",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    engine = selected_engine()
    for marker in item.iter_markers("needs"):
        for feature in marker.args:
            if feature not in local_servers.FEATURES:
                raise ValueError(f"{item.nodeid}: unknown feature {feature!r} in @pytest.mark.needs")
            if feature in engine.gaps:
                pytest.skip(f"needs {feature}, which the {engine.name} engine lacks: {engine.gaps[feature]}")


# Markers say what a test needs: `integration` exactly for the tests that start the Kafka and
# Elasticsearch servers: the shared `servers` fixture (directly or through another fixture), a
# fixture that starts a test's own (`own_servers`), or the demo, which starts its own servers.
SERVER_FIXTURES = {"servers", "own_servers"}
STARTS_ITS_OWN_SERVERS = {"tests/integration/test_demo.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        marked = item.get_closest_marker("integration") is not None
        uses = bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))) or (
            item.nodeid.split("::")[0] in STARTS_ITS_OWN_SERVERS
        )
        if marked and not uses:
            wrong.append(f"{item.nodeid}: marked integration, but starts no servers")
        elif uses and not marked:
            wrong.append(f"{item.nodeid}: starts the servers, but is not marked integration")
    if wrong:
        raise pytest.UsageError("markers that do not say what a test needs:\n" + "\n".join(wrong[:20]))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    """Kafka and Elasticsearch with topics and templates in place, on the selected engine.

    Environment variables are set so that subprocess workers find the same servers.
    """
    engine = selected_engine()
    problem = engine.unavailable()
    if problem:
        raise RuntimeError(f"{BACKEND_ENV}={engine.name}, but that engine cannot run here: {problem}")
    data_dir: Path = tmp_path_factory.mktemp(engine.name)
    srv = local_servers.up(
        data_dir,
        kafka_port=local_servers.free_port(),
        es_port=local_servers.free_port(),
        fresh=True,
        engine_name=engine.name,
    )
    saved = {k: os.environ.get(k) for k in srv.env()}
    os.environ.update(srv.env())
    try:
        setup(KafkaSettings(), ElasticsearchSettings())
        yield srv
    finally:
        local_servers.down(srv.data_dir)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def kafka_settings(servers: LocalServers) -> KafkaSettings:
    return servers.kafka_settings()


@pytest.fixture
def es_settings(servers: LocalServers) -> ElasticsearchSettings:
    return servers.es_settings()


@dataclass(frozen=True)
class ServersControl:
    """Stops and restarts one service of the session's servers, for failure tests (both engines)."""

    servers: LocalServers

    def stop(self, service: str) -> None:
        """`service`: 'kafka' or 'elasticsearch'; the other one keeps running."""
        local_servers.stop_service(service, self.servers.data_dir)

    def start(self, service: str) -> None:
        """Start it again on the same port and data, and wait until both answer."""
        local_servers.start_service(service, self.servers.data_dir)
        local_servers.wait_until_ready(self.servers)


@pytest.fixture
def servers_control(servers: LocalServers) -> ServersControl:
    return ServersControl(servers)
