"""Real Kafka and Elasticsearch in Docker containers for the tests, where a Docker engine exists.

The `servers` fixture (tests/conftest.py) picks its backend from CALLSTREAM_TEST_BACKEND:

- `noida` (default): noida-db on loopback, everywhere, in under a second;
- `docker`: Apache Kafka (Confluent Platform image, KRaft) and Elasticsearch 8.15.3 (security
  off) started by testcontainers; the tests that need it are skipped when no engine answers;
- `auto`: docker when an engine answers, noida otherwise.

Real servers have what noida-db lacks (percentiles, ILM, data streams, fetch limits, group
eviction of killed members); tests of those features run only on the docker backend.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BACKEND_ENV = "CALLSTREAM_TEST_BACKEND"
BACKENDS = ("noida", "docker", "auto")

KAFKA_IMAGE = os.environ.get("CALLSTREAM_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.7.1")
ES_IMAGE = os.environ.get("CALLSTREAM_TEST_ES_IMAGE", "docker.elastic.co/elasticsearch/elasticsearch:8.15.3")
STARTUP_TIMEOUT_S = 180

DEFAULT_SOCKET = Path("/var/run/docker.sock")


class Servers(Protocol):
    """What tests may rely on, whichever the backend (LocalServers and DockerServers both fit)."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def es_url(self) -> str: ...

    def env(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class DockerServers:
    """Same shape as infra.local_servers.LocalServers for what tests use: addresses and env()."""

    bootstrap_servers: str
    es_url: str
    kafka_image: str = KAFKA_IMAGE
    es_image: str = ES_IMAGE

    def env(self) -> dict[str, str]:
        """Environment that points every callstream component at these servers."""
        return {
            "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CALLSTREAM_ES_URL": self.es_url,
        }


def requested_backend() -> str:
    value = os.environ.get(BACKEND_ENV, "noida").strip().lower() or "noida"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r}: expected one of {', '.join(BACKENDS)}")
    return value


def docker_available() -> tuple[bool, str]:
    """Whether a Docker engine answers a ping, and why (not); never raises."""
    try:
        host = os.environ.get("DOCKER_HOST")
        if not host and not DEFAULT_SOCKET.exists():
            others = [p for p in _other_sockets() if p.exists()]
            if others:
                return False, (
                    f"DOCKER_HOST is unset and {DEFAULT_SOCKET} does not exist; an engine socket is at "
                    f"{others[0]}: export DOCKER_HOST=unix://{others[0]}"
                )
            return False, f"DOCKER_HOST is unset and {DEFAULT_SOCKET} does not exist"
        try:
            docker = importlib.import_module("docker")
        except ImportError as exc:
            return False, f"the docker SDK is not installed ({exc}); pip install -e '.[dev]'"
        client = docker.from_env(timeout=5)
        try:
            client.ping()
            version = client.version().get("Version", "?")
        finally:
            client.close()
        return True, f"Docker engine {version} at {host or DEFAULT_SOCKET}"
    except Exception as exc:  # any failure means: no usable engine, and the reason says which
        return (
            False,
            f"Docker engine at {os.environ.get('DOCKER_HOST') or DEFAULT_SOCKET} did not answer: {exc}",
        )


def _other_sockets() -> list[Path]:
    """Rootless Docker and Docker Desktop, which the docker SDK does not look for by itself."""
    candidates = [Path.home() / ".docker" / "run" / "docker.sock"]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        candidates.append(Path(runtime_dir) / "docker.sock")
    return candidates


def resolve_backend() -> tuple[str, str]:
    """(backend, reason): `noida` or `docker`; for `docker` requested but unreachable, ("", why)."""
    requested = requested_backend()
    if requested == "noida":
        return "noida", f"{BACKEND_ENV} is unset or noida"
    ok, why = docker_available()
    if ok:
        return "docker", why
    if requested == "auto":
        return "noida", f"auto: {why}"
    return "", why


@contextlib.contextmanager
def docker_servers() -> Iterator[DockerServers]:
    """Start Kafka (KRaft) and Elasticsearch containers; stop both on exit, also on failure."""
    kafka_cls, es_cls = _container_classes()
    with contextlib.ExitStack() as stack:
        kafka = kafka_cls(KAFKA_IMAGE).with_kraft()
        kafka.with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")
        kafka.with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        kafka.with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        kafka.start(timeout=STARTUP_TIMEOUT_S)
        stack.callback(kafka.stop)

        es = es_cls(ES_IMAGE, mem_limit="2g")
        es.with_env("discovery.type", "single-node")
        es.with_env("ES_JAVA_OPTS", "-Xms512m -Xmx512m")
        # A test machine's disk may be fuller than the default watermarks allow: never go read-only.
        es.with_env("cluster.routing.allocation.disk.threshold_enabled", "false")
        es.start()
        stack.callback(es.stop)

        es_url = f"http://{es.get_container_host_ip()}:{es.get_exposed_port(9200)}"
        yield DockerServers(bootstrap_servers=kafka.get_bootstrap_server(), es_url=es_url)


def _container_classes() -> tuple[Any, Any]:
    """testcontainers >= 4.9 keeps the modules under `community`; older releases at the top."""
    for base in ("testcontainers.community", "testcontainers"):
        try:
            kafka = importlib.import_module(f"{base}.kafka")
            elasticsearch = importlib.import_module(f"{base}.elasticsearch")
        except ImportError:
            continue
        return kafka.KafkaContainer, elasticsearch.ElasticSearchContainer
    raise ImportError(
        "testcontainers with the kafka and elasticsearch modules is needed: pip install -e '.[dev]'"
    )
