"""Fixtures shared by all tests: real servers, started once per test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from callstream.settings import ElasticsearchSettings, KafkaSettings
from infra import local_servers
from infra.setup import setup


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local_servers.LocalServers]:
    """noida-db on free loopback ports with topics and templates in place.

    Environment variables are set so that subprocess workers find the same servers.
    """
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
def kafka_settings(servers: local_servers.LocalServers) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=servers.bootstrap_servers)


@pytest.fixture
def es_settings(servers: local_servers.LocalServers) -> ElasticsearchSettings:
    return ElasticsearchSettings(url=servers.es_url)
