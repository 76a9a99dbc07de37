"""Backend selection for the `servers` fixture and the Docker engine probe (no engine needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from callstream.infra.local_servers import LocalServers, free_port
from tests import containers


def test_probe_never_raises_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    ok, why = containers.docker_available()
    assert ok is False
    assert "did not answer" in why and "tcp://127.0.0.1" in why


def test_probe_with_a_nonsense_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "nonsense://nowhere")
    ok, why = containers.docker_available()
    assert ok is False and why


def test_probe_without_any_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(containers, "DEFAULT_SOCKET", tmp_path / "docker.sock")
    monkeypatch.setattr(containers, "_other_sockets", lambda: [tmp_path / "rootless.sock"])
    assert containers.docker_available() == (
        False,
        f"DOCKER_HOST is unset and {tmp_path / 'docker.sock'} does not exist",
    )
    (tmp_path / "rootless.sock").touch()
    ok, why = containers.docker_available()
    assert not ok and f"export DOCKER_HOST=unix://{tmp_path / 'rootless.sock'}" in why


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "noida"), ("", "noida"), ("Docker", "docker"), ("auto", "auto")]
)
def test_requested_backend(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str) -> None:
    if value is None:
        monkeypatch.delenv(containers.BACKEND_ENV, raising=False)
    else:
        monkeypatch.setenv(containers.BACKEND_ENV, value)
    assert containers.requested_backend() == expected


def test_unknown_backend_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(containers.BACKEND_ENV, "kubernetes")
    with pytest.raises(ValueError, match="noida, docker, auto"):
        containers.requested_backend()


@pytest.mark.parametrize(
    ("requested", "engine", "expected"),
    [
        ("noida", (True, "up"), "noida"),
        ("docker", (True, "up"), "docker"),
        ("docker", (False, "no socket"), ""),
        ("auto", (True, "up"), "docker"),
        ("auto", (False, "no socket"), "noida"),
    ],
)
def test_resolve_backend(
    monkeypatch: pytest.MonkeyPatch, requested: str, engine: tuple[bool, str], expected: str
) -> None:
    monkeypatch.setenv(containers.BACKEND_ENV, requested)
    monkeypatch.setattr(containers, "docker_available", lambda: engine)
    backend, why = containers.resolve_backend()
    assert backend == expected
    if requested != "noida":
        assert engine[1] in why


def test_docker_servers_have_the_shape_tests_use() -> None:
    docker = containers.DockerServers(bootstrap_servers="127.0.0.1:32768", es_url="http://127.0.0.1:32769")
    local = LocalServers(Path("/tmp/x"), "127.0.0.1", 9092, 9200)
    assert docker.env().keys() == local.env().keys()
    assert docker.env()["CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == docker.bootstrap_servers
    assert docker.env()["CALLSTREAM_ES_URL"] == docker.es_url
    assert dataclasses.is_dataclass(docker)
    for srv in (docker, local):
        assert isinstance(srv.bootstrap_servers, str) and isinstance(srv.es_url, str)


def test_container_images_are_the_production_versions() -> None:
    assert containers.ES_IMAGE.endswith(":8.15.3")
    assert containers.KAFKA_IMAGE.startswith(("confluentinc/cp-kafka:7.7.", "apache/kafka:"))
