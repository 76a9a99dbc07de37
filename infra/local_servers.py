"""Kafka + Elasticsearch on loopback for demos, tests, benchmarks and CI, from one of two engines.

- `embedded` (the default): noida-db, one pip-installed binary that serves both protocols; starts in
  under a second, needs no Java. It emulates the servers, with gaps (`EmbeddedEngine.gaps`).
- `real`: Apache Kafka (KRaft) and Elasticsearch 8, the upstream JVM servers, resolved by Maven
  (`callstream.infra.real_engines`); needs Java 17+ and Maven once.

Both satisfy `Engine`. The functions of this module (`up`, `down`, `status`, `stop_service`,
`start_service`, `wait_until_ready`) are the one way callers use either: `up` takes the engine by
name, the others find it from what the data directory records. Production never uses this module:
it points the settings at real servers instead.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from callstream import logs
from callstream.errors import CallstreamError, MissingExtraError
from callstream.settings import ElasticsearchSettings, KafkaSettings

try:
    import httpx
except ImportError as exc:
    raise MissingExtraError("local", "httpx") from exc


log = logs.get(__name__)

DEFAULT_DATA_DIR = Path(".callstream/local")
DEFAULT_ENGINE = "embedded"
SERVICES = ("kafka", "elasticsearch")

# Features an engine may lack (Engine.gaps): tests declare what they need with
# @pytest.mark.needs(...), and are skipped with the engine's reason where it is missing.
GROUP_EVICTION = "group_eviction"  # a SIGKILLed consumer-group member is evicted after its session timeout
FETCH_LIMITS = "fetch_limits"  # fetch.max.bytes / fetch.wait.max.ms are honoured
PERCENTILES = "percentiles"  # Elasticsearch percentiles and composite aggregations
UNINDEXED_OBJECTS = "unindexed_objects"  # an object mapped `enabled: false` is stored, not searchable
# Not features here: ILM and ES|QL, which neither engine has (docs/engines.md says how the
# retention policies and the ES|QL rule are checked instead).
KAFKA_CLUSTER = "kafka_cluster"  # a three-broker cluster for failover tests
FEATURES = (
    GROUP_EVICTION,
    FETCH_LIMITS,
    PERCENTILES,
    UNINDEXED_OBJECTS,
    KAFKA_CLUSTER,
)


class LocalServersError(CallstreamError, RuntimeError):
    """Local servers that cannot start, stop or answer; the message says why."""


@dataclass(frozen=True)
class LocalServers:
    """A running Kafka + Elasticsearch pair on loopback, whichever engine started it."""

    data_dir: Path
    host: str
    kafka_port: int
    es_port: int
    engine: str = DEFAULT_ENGINE
    # KafkaSettings fields this engine needs set (field, value): an emulator's quirk, say.
    kafka_overrides: tuple[tuple[str, str], ...] = ()

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def es_url(self) -> str:
        return f"http://{self.host}:{self.es_port}"

    def env(self) -> dict[str, str]:
        """Environment that points every callstream component at these servers."""
        return {
            "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CALLSTREAM_ES_URL": self.es_url,
            **{f"CALLSTREAM_KAFKA_{field.upper()}": value for field, value in self.kafka_overrides},
        }

    def kafka_settings(self, **fields: Any) -> KafkaSettings:
        """KafkaSettings for these servers (with the engine's overrides), for in-process clients."""
        values: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, **dict(self.kafka_overrides)}
        return KafkaSettings(**(values | fields))

    def es_settings(self, **fields: Any) -> ElasticsearchSettings:
        return ElasticsearchSettings(url=self.es_url, **fields)


class Engine(Protocol):
    """What starts, stops and describes local servers; `EmbeddedEngine` and `real_engines.RealEngine`."""

    name: str
    description: str
    # Feature (one of FEATURES) -> why this engine lacks it.
    gaps: Mapping[str, str]

    def unavailable(self) -> str | None:
        """Why this engine cannot start on this machine (None: it can). Never raises."""
        ...

    def recorded_in(self, data_dir: Path) -> bool:
        """Whether `data_dir` holds servers of this engine (running or stopped)."""
        ...

    def up(self, data_dir: Path, kafka_port: int, es_port: int, host: str, fresh: bool) -> LocalServers:
        """Start both servers and wait until both answer."""
        ...

    def down(self, data_dir: Path) -> None: ...

    def status(self, data_dir: Path) -> str: ...

    def stop_service(self, service: str, data_dir: Path) -> None:
        """Stop 'kafka' or 'elasticsearch'; the other keeps running (data stays)."""
        ...

    def start_service(self, service: str, data_dir: Path) -> None:
        """Start a stopped service again on its port and data."""
        ...

    def wait_until_ready(self, servers: LocalServers, timeout_s: float) -> None: ...


# --------------------------------------------------------------------------------------------------
# The functions callers use, whatever the engine


def engines() -> dict[str, Engine]:
    """Every engine by name (the real one is imported here: it imports this module)."""
    from callstream.infra.real_engines import RealEngine

    return {"embedded": EmbeddedEngine(), "real": RealEngine()}


def engine(name: str) -> Engine:
    known = engines()
    if name not in known:
        raise LocalServersError(f"unknown engine {name!r}: {' or '.join(known)}")
    return known[name]


def engines_in(data_dir: Path) -> list[Engine]:
    """The engines whose servers `data_dir` records."""
    data_dir = Path(data_dir).resolve()
    return [candidate for candidate in engines().values() if candidate.recorded_in(data_dir)]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def up(
    data_dir: Path = DEFAULT_DATA_DIR,
    kafka_port: int = 9092,
    es_port: int = 9200,
    host: str = "127.0.0.1",
    fresh: bool = False,
    engine_name: str = DEFAULT_ENGINE,
) -> LocalServers:
    """Start Kafka and Elasticsearch of the named engine in the background; wait until both answer."""
    chosen = engine(engine_name)
    problem = chosen.unavailable()
    if problem:
        raise LocalServersError(f"the {chosen.name} engine cannot run here: {problem}")
    data_dir = Path(data_dir).resolve()
    if fresh and data_dir.exists():
        down(data_dir)
        shutil.rmtree(data_dir)
    others = [e.name for e in engines_in(data_dir) if e.name != chosen.name]
    if others:
        raise LocalServersError(
            f"{data_dir} holds servers of the {', '.join(others)} engine: use --fresh or another data dir"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    servers = chosen.up(data_dir, kafka_port, es_port, host, fresh)
    log.info(
        "local servers up",
        engine=chosen.name,
        kafka=servers.bootstrap_servers,
        elasticsearch=servers.es_url,
        data_dir=str(data_dir),
    )
    return servers


@contextlib.contextmanager
def running(engine_name: str, data_dir: Path) -> Iterator[LocalServers]:
    """Fresh servers of the named engine on free loopback ports for the length of a block (a
    benchmark, say); stopped and their data deleted afterwards."""
    servers = up(data_dir, free_port(), free_port(), fresh=True, engine_name=engine_name)
    try:
        yield servers
    finally:
        down(servers.data_dir)
        shutil.rmtree(servers.data_dir, ignore_errors=True)


def down(data_dir: Path = DEFAULT_DATA_DIR) -> None:
    """Stop whatever servers `data_dir` records (their data stays); nothing recorded is fine."""
    for recorded in engines_in(data_dir):
        recorded.down(Path(data_dir).resolve())


def status(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    data_dir = Path(data_dir).resolve()
    found = engines_in(data_dir)
    if not found:
        return f"no local servers in {data_dir}"
    return "\n".join(f"[{e.name}: {e.description}]\n{e.status(data_dir)}" for e in found)


def _recorded_engine(data_dir: Path) -> Engine:
    found = engines_in(data_dir)
    if not found:
        raise LocalServersError(f"no local servers recorded in {Path(data_dir).resolve()}")
    return found[0]


def stop_service(service: str, data_dir: Path) -> None:
    """Stop one service ('kafka' or 'elasticsearch') while the other keeps running: for failure tests."""
    if service not in SERVICES:
        raise LocalServersError(f"unknown service {service!r}: {' or '.join(SERVICES)}")
    _recorded_engine(data_dir).stop_service(service, Path(data_dir).resolve())


def start_service(service: str, data_dir: Path) -> None:
    if service not in SERVICES:
        raise LocalServersError(f"unknown service {service!r}: {' or '.join(SERVICES)}")
    _recorded_engine(data_dir).start_service(service, Path(data_dir).resolve())


def wait_until_ready(servers: LocalServers, timeout_s: float = 60.0) -> None:
    engine(servers.engine).wait_until_ready(servers, timeout_s)


# --------------------------------------------------------------------------------------------------
# The embedded engine: noida-db


NOIDA_CONTROL_FILE = "noida.control.json"


def noida_binary() -> str:
    candidates = [Path(sys.executable).parent / "noida-db", shutil.which("noida-db")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise LocalServersError(
        "noida-db is not installed: pip install 'callstream[local]' (it brings the embedded engine)"
    )


def _noida(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [noida_binary(), *args, "--data-dir", str(data_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        output = _without_glibc_warning(result.stdout + result.stderr)
        raise LocalServersError(f"{' '.join(cmd)} failed ({result.returncode}): {output.strip()}")
    return result


def _without_glibc_warning(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "GLIBC" not in line)


class EmbeddedEngine:
    """noida-db: both protocols from one process; a fresh data directory is a clean cluster."""

    name = "embedded"
    description = "noida-db (Kafka and Elasticsearch protocols, emulated)"
    gaps: Mapping[str, str] = {
        GROUP_EVICTION: "noida-db never evicts a SIGKILLed group member: its partitions stay orphaned",
        FETCH_LIMITS: "noida-db ignores fetch size and wait limits (a fetch may return a whole partition)",
        PERCENTILES: "noida-db has no percentiles or composite aggregations",
        UNINDEXED_OBJECTS: "noida-db indexes fields under `enabled: false` anyway",
        KAFKA_CLUSTER: "noida-db is one broker: a three-broker cluster needs the real engine",
    }
    # noida-db answers a fetch with up to a whole partition, whatever the fetch limits: librdkafka
    # must accept responses that large (its default is 100 MB). Only this engine needs it.
    kafka_overrides = (("receive_message_max_bytes", "1000000000"),)

    def unavailable(self) -> str | None:
        try:
            noida_binary()
        except LocalServersError as exc:
            return str(exc)
        return None

    def recorded_in(self, data_dir: Path) -> bool:
        return (data_dir / NOIDA_CONTROL_FILE).exists()

    def up(self, data_dir: Path, kafka_port: int, es_port: int, host: str, fresh: bool) -> LocalServers:
        servers = LocalServers(data_dir, host, kafka_port, es_port, self.name, self.kafka_overrides)
        _noida(
            "up",
            "--only",
            ",".join(SERVICES),
            "--kafka-port",
            str(kafka_port),
            "--elasticsearch-port",
            str(es_port),
            "--host",
            host,
            data_dir=data_dir,
        )
        self.wait_until_ready(servers, 30.0)
        return servers

    def down(self, data_dir: Path) -> None:
        _noida("down", data_dir=data_dir)

    def status(self, data_dir: Path) -> str:
        return _without_glibc_warning(_noida("status", data_dir=data_dir).stdout)

    def stop_service(self, service: str, data_dir: Path) -> None:
        _noida("stop", service, data_dir=data_dir)

    def start_service(self, service: str, data_dir: Path) -> None:
        _noida("start", service, data_dir=data_dir)

    def wait_until_ready(self, servers: LocalServers, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((servers.host, servers.kafka_port), timeout=1):
                    pass
                response = httpx.get(servers.es_url, timeout=2)
                if response.status_code == 200:
                    return
                last_error = f"elasticsearch answered {response.status_code}"
            except (OSError, httpx.HTTPError) as exc:
                last_error = str(exc)
            time.sleep(0.1)
        raise LocalServersError(f"local servers did not answer within {timeout_s}s: {last_error}")
