"""Embedded local Kafka + Elasticsearch (noida-db) for demos, tests and CI.

noida-db serves both protocols on loopback from one process and keeps its data in a directory;
a fresh directory per run gives a clean cluster. Production never uses this module: it points
the settings at real servers instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from callstream import logs
from callstream.errors import MissingExtraError

try:
    import httpx
except ImportError as exc:
    raise MissingExtraError("local", "httpx") from exc


log = logs.get(__name__)

DEFAULT_DATA_DIR = Path(".callstream/local")


class LocalServersError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalServers:
    data_dir: Path
    host: str
    kafka_port: int
    es_port: int

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
        }


def noida_binary() -> str:
    candidates = [Path(sys.executable).parent / "noida-db", shutil.which("noida-db")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise LocalServersError("noida-db is not installed: pip install noida-db (it is a callstream dependency)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _noida(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [noida_binary(), *args, "--data-dir", str(data_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        output = _without_glibc_warning(result.stdout + result.stderr)
        raise LocalServersError(f"{' '.join(cmd)} failed ({result.returncode}): {output.strip()}")
    return result


def _without_glibc_warning(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "GLIBC" not in line)


def up(
    data_dir: Path = DEFAULT_DATA_DIR,
    kafka_port: int = 9092,
    es_port: int = 9200,
    host: str = "127.0.0.1",
    fresh: bool = False,
    timeout_s: float = 30.0,
) -> LocalServers:
    """Start noida-db in the background and wait until both protocols answer."""
    data_dir = Path(data_dir).resolve()
    if fresh and data_dir.exists():
        down(data_dir, missing_ok=True)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    servers = LocalServers(data_dir, host, kafka_port, es_port)
    _noida(
        "up",
        "--only",
        "kafka,elasticsearch",
        "--kafka-port",
        str(kafka_port),
        "--elasticsearch-port",
        str(es_port),
        "--host",
        host,
        data_dir=data_dir,
    )
    wait_until_ready(servers, timeout_s)
    log.info(
        "local servers up",
        kafka=servers.bootstrap_servers,
        elasticsearch=servers.es_url,
        data_dir=str(data_dir),
    )
    return servers


def wait_until_ready(servers: LocalServers, timeout_s: float = 30.0) -> None:
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


def down(data_dir: Path = DEFAULT_DATA_DIR, missing_ok: bool = True) -> None:
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "noida.control.json").exists():
        if missing_ok:
            return
        raise LocalServersError(f"no local servers recorded in {data_dir}")
    try:
        _noida("down", data_dir=data_dir)
    except LocalServersError:
        if not missing_ok:
            raise


def stop_service(service: str, data_dir: Path) -> None:
    """Stop one protocol (e.g. 'elasticsearch') while the other keeps running: for failure tests."""
    _noida("stop", service, data_dir=Path(data_dir).resolve())


def start_service(service: str, data_dir: Path) -> None:
    _noida("start", service, data_dir=Path(data_dir).resolve())


def status(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    data_dir = Path(data_dir).resolve()
    if not (data_dir / "noida.control.json").exists():
        return f"no local servers in {data_dir}"
    return _without_glibc_warning(_noida("status", data_dir=data_dir).stdout)
