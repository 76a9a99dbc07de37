"""Fixtures shared by all tests: real servers, started once per test run.

`servers` is noida-db by default; with CALLSTREAM_TEST_BACKEND=docker (or auto, when a Docker
engine answers) it is real Kafka and Elasticsearch in containers (tests/containers.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callstream.infra import local_servers
from callstream.infra.setup import setup
from callstream.settings import ElasticsearchSettings, KafkaSettings
from tests import containers


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[containers.Servers]:
    """Kafka and Elasticsearch with topics and templates in place, on the selected backend.

    Environment variables are set so that subprocess workers find the same servers.
    """
    backend, why = containers.resolve_backend()
    if not backend:
        pytest.skip(f"no Docker engine reachable: {why}")
    if backend == "docker":
        with containers.docker_servers() as docker_srv, _environment(docker_srv.env()):
            setup(KafkaSettings(), ElasticsearchSettings())
            yield docker_srv
        return
    data_dir: Path = tmp_path_factory.mktemp("noida")
    srv = local_servers.up(
        data_dir=data_dir, kafka_port=local_servers.free_port(), es_port=local_servers.free_port(), fresh=True
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
def kafka_settings(servers: containers.Servers) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=servers.bootstrap_servers)


@pytest.fixture
def es_settings(servers: containers.Servers) -> ElasticsearchSettings:
    return ElasticsearchSettings(url=servers.es_url)


@dataclass(frozen=True)
class ServersControl:
    """Stops and restarts one protocol of the running servers, for failure tests (noida-db only)."""

    servers: local_servers.LocalServers

    def stop(self, service: str) -> None:
        """`service`: 'kafka' or 'elasticsearch'; the other one keeps running."""
        local_servers.stop_service(service, self.servers.data_dir)

    def start(self, service: str) -> None:
        local_servers.start_service(service, self.servers.data_dir)


@pytest.fixture
def servers_control(servers: containers.Servers) -> ServersControl:
    """Skips the test on the docker backend: a restarted container comes back on new host ports."""
    if not isinstance(servers, local_servers.LocalServers):
        pytest.skip(
            "stopping and restarting one server needs the noida-db backend (CALLSTREAM_TEST_BACKEND=noida): "
            "a restarted container is published on new host ports"
        )
    return ServersControl(servers)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
