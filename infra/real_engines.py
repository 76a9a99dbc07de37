"""Real Apache Kafka (KRaft) and a real Elasticsearch 8 node on loopback, without Docker.

The servers are the upstream JVM programs, resolved by Maven from Maven Central into a cache
(`infra/engines/pom.xml` pins the versions):

- Kafka: `org.apache.kafka:kafka_2.13` and its runtime jars, run as `kafka.Kafka` in KRaft combined
  mode (broker + controller), after `kafka.tools.StorageTool format` (what `kafka-storage format` runs);
- Elasticsearch: `org.elasticsearch.distribution.integ-test-zip:elasticsearch`, the real server with
  only the modules transport-netty4, x-pack-core, x-pack-security (disabled here) and apm. Server
  features work (index and component templates, aliases, bulk, external versions, percentiles and
  composite aggregations, data streams); what lives in the other modules does not: `scaled_float`
  (mapper-extras), painless scripts, `_reindex`/`_update_by_query`/`_delete_by_query`, `bucket_sort`
  and the other pipeline aggregations of the aggregations module, `GET /` and `HEAD /` (rest-root:
  `Elasticsearch.info()` and `.ping()`), ILM. Maven Central has no Elasticsearch 8 build with those
  modules (codelibs' cluster runner stops at 7.10).

`RealEngine` is this module's `local_servers.Engine` (what `callstream local up --engine real`, the
demo, the tests and the benchmarks use); `up()` gives the same `LocalServers` as the embedded engine,
and `cluster_up()` starts a 3-node Kafka cluster for failover tests. Each JVM runs detached (its own
session) with a bounded heap; pids, ports and commands are kept in `real_engines.json` in the data
directory, so that `down()`, `status()`, `stop_service()` and `start_service()` work from any process.

Elasticsearch refuses to run as root: as root, it is started inside a user namespace in which it is
uid `nobody` while its files stay the caller's (`unshare --user --map-user`), or else as `nobody`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from callstream import logs
from callstream.infra.local_servers import (
    LocalServers,
    LocalServersError,
    free_port,
)

log = logs.get(__name__)

ENGINES_POM = Path(__file__).resolve().parent / "engines" / "pom.xml"
# The repository's .callstream/engines/ (git-ignored) whatever the working directory: shared by all runs.
DEFAULT_CACHE_DIR = ENGINES_POM.parent.parent.parent / ".callstream" / "engines"
CONTROL_FILE = "real_engines.json"
STAMP_FILE = "resolved.json"

KAFKA_HEAP_MB = 512
ES_HEAP_MB = 1024
CLUSTER_NODE_HEAP_MB = 384
DEFAULT_PARTITIONS = 6  # for topics created implicitly (auto.create.topics.enable stays true), as in Compose
ES_CLUSTER_NAME = "callstream"
ES_USER_WHEN_ROOT = "nobody"  # Elasticsearch will not run as root
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0

KAFKA_MAIN = "kafka.Kafka"
KAFKA_STORAGE_TOOL = "kafka.tools.StorageTool"
KAFKA_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


class RealEnginesError(LocalServersError):
    """The real engines cannot be resolved, started or stopped; the message says why."""


# --------------------------------------------------------------------------------------------------
# The JVM and the jars


def java_home() -> Path:
    """The one place that chooses the JVM: $JAVA_HOME if set, else the `java` on PATH."""
    env_home = os.environ.get("JAVA_HOME")
    if env_home:
        if not (Path(env_home) / "bin" / "java").exists():
            raise RealEnginesError(f"JAVA_HOME={env_home} has no bin/java")
        return Path(env_home)
    java = shutil.which("java")
    if java is None:
        raise RealEnginesError(
            "no Java: install a JDK 17+ (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
        )
    return Path(java).resolve().parent.parent


def java_bin() -> str:
    return str(java_home() / "bin" / "java")


@dataclass(frozen=True)
class EngineJars:
    cache_dir: Path
    kafka_version: str
    es_version: str

    @property
    def kafka_lib(self) -> Path:
        return self.cache_dir / "kafka" / "lib"

    @property
    def kafka_classpath(self) -> str:
        return os.pathsep.join(str(jar) for jar in sorted(self.kafka_lib.glob("*.jar")))

    @property
    def es_home(self) -> Path:
        return self.cache_dir / f"elasticsearch-{self.es_version}"


def pinned_versions(pom: Path = ENGINES_POM) -> tuple[str, str]:
    """(Kafka version, Elasticsearch version) as pinned in the engines pom."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(pom).getroot().find("m:properties", ns)
    if props is None:
        raise RealEnginesError(f"{pom} has no <properties>")
    versions = {child.tag.split("}")[-1]: (child.text or "").strip() for child in props}
    return versions["kafka.version"], versions["es.version"]


def _is_resolved(jars: EngineJars, pom_digest: str) -> bool:
    stamp = jars.cache_dir / STAMP_FILE
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return (
        recorded.get("pom_sha256") == pom_digest
        and (jars.kafka_lib / f"kafka_2.13-{jars.kafka_version}.jar").exists()
        and (jars.es_home / "bin" / "elasticsearch").exists()
    )


def resolved(cache_dir: Path = DEFAULT_CACHE_DIR, pom: Path = ENGINES_POM) -> EngineJars | None:
    """The pinned engines if `cache_dir` holds them (resolved from this very pom), else None."""
    jars = EngineJars(Path(cache_dir).resolve(), *pinned_versions(pom))
    return jars if _is_resolved(jars, hashlib.sha256(pom.read_bytes()).hexdigest()) else None


def resolve(cache_dir: Path = DEFAULT_CACHE_DIR, pom: Path = ENGINES_POM) -> EngineJars:
    """Resolve the pinned Kafka and Elasticsearch into `cache_dir` (once: later calls just check)."""
    cache_dir = Path(cache_dir).resolve()
    kafka_version, es_version = pinned_versions(pom)
    jars = EngineJars(cache_dir, kafka_version, es_version)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if _is_resolved(jars, digest):
        return jars
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        if _is_resolved(jars, digest):  # another process did it while this one waited
            return jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RealEnginesError(
                f"the Kafka and Elasticsearch jars are not in {cache_dir} and Maven, which fetches them "
                "from Maven Central, is not installed: apt-get install maven, then scripts/bootstrap.sh "
                "(or python -m callstream.infra.real_engines resolve)"
            )
        java_home()  # a clear error if there is no JVM
        # Start clean so that jars of an older pin never share the classpath with the new ones.
        for stale in [cache_dir / "kafka", cache_dir / ".markers", *cache_dir.glob("elasticsearch-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        (cache_dir / STAMP_FILE).unlink(missing_ok=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dengines.dir={cache_dir}",
            "dependency:copy-dependencies@kafka",
            "dependency:unpack-dependencies@elasticsearch",
        ]
        started = time.monotonic()
        env = {**os.environ, "JAVA_HOME": str(java_home())}
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, env=env)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise RealEnginesError(f"{' '.join(cmd)} failed ({result.returncode}):\n{output}")
        if not (jars.es_home / "bin" / "elasticsearch").exists() or not jars.kafka_classpath:
            raise RealEnginesError(f"Maven finished but {cache_dir} lacks the Kafka jars or {jars.es_home}")
        _mark_executable(jars.es_home)
        (cache_dir / STAMP_FILE).write_text(
            json.dumps({"pom_sha256": digest, "kafka": kafka_version, "elasticsearch": es_version}) + "\n"
        )
        log.info(
            "engines resolved",
            kafka=kafka_version,
            elasticsearch=es_version,
            cache_dir=str(cache_dir),
            seconds=round(time.monotonic() - started, 1),
        )
    return jars


def _mark_executable(es_home: Path) -> None:
    """The distribution's scripts must be executable whatever the unpacker kept of the zip's modes."""
    for script in (es_home / "bin").iterdir():
        if script.suffix not in {".bat", ".exe"}:
            script.chmod(0o755)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------
# Processes and the control file


@dataclass
class _Service:
    """One detached JVM: how to (re)start it, where it logs, and its pid once known."""

    cmd: list[str]
    cwd: str
    env: dict[str, str]
    log: str
    port: int
    marker: str  # a string in the JVM's command line: guards against signalling a recycled pid
    pidfile: str | None = None  # Elasticsearch's launcher exits after start; the server writes this
    pid: int | None = None
    launcher_pid: int | None = None
    pgid: int | None = None  # its own process group (session): the launcher and all it starts
    extra: dict[str, Any] = field(default_factory=dict)

    def forget(self) -> None:
        """After a stop: no pid or group of this service may be signalled any more."""
        self.pid = self.launcher_pid = self.pgid = None


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # kept so they are reaped, not left as zombies


def _control_path(data_dir: Path) -> Path:
    return data_dir / CONTROL_FILE


def _read_control(data_dir: Path) -> dict[str, Any]:
    path = _control_path(data_dir)
    try:
        control: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise RealEnginesError(f"no real engines recorded in {data_dir}") from None
    return control


def _services(control: dict[str, Any]) -> dict[str, _Service]:
    return {name: _Service(**spec) for name, spec in control["services"].items()}


def _write_control(data_dir: Path, control: dict[str, Any], services: dict[str, _Service]) -> None:
    control = {**control, "services": {name: vars(svc) for name, svc in services.items()}}
    tmp = _control_path(data_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(control, indent=2) + "\n")
    tmp.replace(_control_path(data_dir))


def _launch(svc: _Service) -> None:
    env = {**os.environ, **svc.env}
    with open(svc.log, "ab") as out:
        proc = subprocess.Popen(
            svc.cmd,
            cwd=svc.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    svc.pgid = proc.pid  # start_new_session: the launcher leads a new group
    if svc.pidfile:
        Path(svc.pidfile).unlink(missing_ok=True)
        svc.launcher_pid, svc.pid = proc.pid, None
    else:
        svc.pid = proc.pid


def _alive(pid: int | None, marker: str | None = None) -> bool:
    if pid is None:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return marker is None or marker in cmdline


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _group_alive(pgid: int, marker: str) -> bool:
    """Whether a live (not zombie) process of group `pgid` runs with `marker` in its command line."""
    for child in list(_CHILDREN.values()):
        child.poll()  # reap the ones that ended
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _running(svc: _Service) -> bool:
    if _alive(svc.pid, svc.marker) or _alive(svc.launcher_pid, svc.marker):
        return True
    # Elasticsearch between launch and its pidfile: the server runs, its pid is not known yet.
    return svc.pgid is not None and svc.pid is None and _group_alive(svc.pgid, svc.marker)


def _signal(svc: _Service, sig: int) -> None:
    """Signal the service's whole process group (launcher and server), if it still runs."""
    if not _running(svc):
        return
    with contextlib.suppress(ProcessLookupError):
        if svc.pgid is not None:
            os.killpg(svc.pgid, sig)
        elif svc.pid is not None:
            os.kill(svc.pid, sig)


def _stop(services: Sequence[_Service], timeout_s: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> None:
    """Signal all at once, wait up to `timeout_s`, then SIGKILL what is left."""
    for svc in services:
        _signal(svc, sig)
    deadline = time.monotonic() + timeout_s
    resend_at = time.monotonic() + 1
    while time.monotonic() < deadline:
        if not any(_running(svc) for svc in services):
            return
        if time.monotonic() > resend_at:
            # A launcher may start its server after the first signal: signal that one too.
            for svc in services:
                if svc.pid is None:
                    _signal(svc, sig)
            resend_at = time.monotonic() + 1
        time.sleep(0.1)
    for svc in services:
        if _running(svc):
            log.info("killing a server that ignored SIGTERM", pid=svc.pid, log=svc.log)
            _signal(svc, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_running(svc) for svc in services) and time.monotonic() < deadline:
        time.sleep(0.1)


def _tail(path: str, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------
# Kafka


def _kafka_node(
    jars: EngineJars,
    node_dir: Path,
    node_id: int,
    host: str,
    port: int,
    controller_port: int,
    voters: str,
    heap_mb: int,
    settings: dict[str, str | int],
) -> _Service:
    data = node_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(data),
        "num.partitions": DEFAULT_PARTITIONS,
        "auto.create.topics.enable": "true",
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        **settings,
    }
    config = node_dir / "server.properties"
    config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
    log4j = node_dir / "log4j2.properties"
    log4j.write_text(_KAFKA_LOG4J.format(log=node_dir / "server.log"))
    cmd = [
        java_bin(),
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        *KAFKA_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={node_dir}",
        "-cp",
        jars.kafka_classpath,
        KAFKA_MAIN,
        str(config),
    ]
    return _Service(
        cmd=cmd,
        cwd=str(node_dir),
        env={},
        log=str(node_dir / "stdout.log"),
        port=port,
        marker=str(config),
        extra={"node_id": node_id, "controller_port": controller_port, "config": str(config)},
    )


_KAFKA_LOG4J = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 16MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _format_kafka(jars: EngineJars, svc: _Service, cluster_id: str) -> None:
    """`kafka-storage format`, once: an already formatted log dir keeps its data and cluster id."""
    cmd = [
        java_bin(),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={Path(svc.cwd) / 'log4j2.properties'}",
        "-cp",
        jars.kafka_classpath,
        KAFKA_STORAGE_TOOL,
        "format",
        "--ignore-formatted",
        f"--cluster-id={cluster_id}",  # one argument: an id may start with '-' (base64url)
        "-c",
        svc.extra["config"],
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RealEnginesError(
            f"kafka storage format failed: {(result.stdout + result.stderr).strip()[-2000:]}"
        )


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _kafka_brokers(bootstrap: str, timeout_s: float = 2.0) -> set[int]:
    """Ids of the brokers that the cluster metadata lists (registered and unfenced)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000), "log_level": 0}
    )
    metadata = admin.list_topics(timeout=timeout_s)
    return {int(broker_id) for broker_id in metadata.brokers}


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _kafka_ready(host: str, port: int, expect: set[int]) -> bool:
    if not _port_open(host, port):
        return False
    try:
        return expect <= _kafka_brokers(f"{host}:{port}")
    except Exception:  # KafkaException while the broker starts
        return False


# --------------------------------------------------------------------------------------------------
# Elasticsearch


def _root_prefix(es_dir: Path) -> list[str]:
    """How to start Elasticsearch when this process is root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam(ES_USER_WHEN_ROOT)
        uid, gid = user.pw_uid, user.pw_gid
    except KeyError:
        uid = gid = 65534
    unshare = shutil.which("unshare")
    if unshare:
        prefix = [unshare, "--user", f"--map-user={uid}", f"--map-group={gid}", "--"]
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return prefix  # uid `nobody` inside; files created stay root's outside
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RealEnginesError("running as root without unshare or setpriv: cannot start Elasticsearch")
    for parent in es_dir.parents:
        if parent.stat().st_mode & 0o001 == 0:
            raise RealEnginesError(
                f"Elasticsearch must run as {ES_USER_WHEN_ROOT} here (no user namespaces), "
                f"and {parent} is not traversable by others: use a data dir elsewhere"
            )
    for path in [es_dir, *es_dir.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def _es_node(
    jars: EngineJars, es_dir: Path, host: str, http_port: int, transport_port: int, heap_mb: int
) -> _Service:
    conf = es_dir / "config"
    if not conf.exists():
        shutil.copytree(jars.es_home / "config", conf)
    for sub in ("data", "logs", "tmp"):
        (es_dir / sub).mkdir(parents=True, exist_ok=True)
    settings = {
        "cluster.name": ES_CLUSTER_NAME,
        "node.name": "callstream-1",
        "network.host": host,
        "http.port": http_port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        "path.data": str(es_dir / "data"),
        "path.logs": str(es_dir / "logs"),
        "xpack.security.enabled": "false",
        # A dev node on a shared disk: never turn indices read-only because the disk is 90 % full.
        "cluster.routing.allocation.disk.threshold_enabled": "false",
    }
    (conf / "elasticsearch.yml").write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    # The distribution's GC log keeps 32 x 64 MB files in the working directory: keep 2 x 16 MB in logs/.
    jvm_options = (jars.es_home / "config" / "jvm.options").read_text()
    jvm_options = re.sub(
        r"file=gc\.log:(.*):filecount=\d+,filesize=\d+m",
        lambda m: f"file={es_dir / 'logs' / 'gc.log'}:{m.group(1)}:filecount=2,filesize=16m",
        jvm_options,
    )
    (conf / "jvm.options").write_text(jvm_options)
    (conf / "jvm.options.d").mkdir(exist_ok=True)
    # No pre-touch: the heap is committed as used, not all at start.
    heap = f"-Xms{heap_mb}m\n-Xmx{heap_mb}m\n-XX:-AlwaysPreTouch\n"
    (conf / "jvm.options.d" / "callstream.options").write_text(heap)
    pidfile = es_dir / "elasticsearch.pid"
    cmd = [
        *_root_prefix(es_dir),
        str(jars.es_home / "bin" / "elasticsearch"),
        "-d",
        "-p",
        str(pidfile),
    ]
    env = {
        "ES_PATH_CONF": str(conf),
        "ES_JAVA_HOME": str(java_home()),
        "ES_TMPDIR": str(es_dir / "tmp"),
        "ES_JAVA_OPTS": "",
    }
    return _Service(
        cmd=cmd,
        cwd=str(es_dir / "logs"),
        env=env,
        log=str(es_dir / "logs" / "launcher.log"),
        port=http_port,
        marker=f"{es_dir}{os.sep}",  # in the launcher's -Des.path.conf and the server's -Djava.io.tmpdir
        pidfile=str(pidfile),
        extra={
            "transport_port": transport_port,
            "server_log": str(es_dir / "logs" / f"{ES_CLUSTER_NAME}.log"),
        },
    )


def _es_ready(host: str, port: int) -> bool:
    """Every primary shard started, none initializing, and no cluster-state task pending: a node
    that has just restarted answers health checks before it has recovered its indices, and a
    search then fails with 503 (seen in a CI run of the sink's Elasticsearch-outage test)."""
    try:
        response = httpx.get(
            f"http://{host}:{port}/_cluster/health",
            params={
                "wait_for_status": "yellow",
                "wait_for_no_initializing_shards": "true",
                "wait_for_events": "languid",
                "timeout": "1s",
            },
            timeout=3,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _es_settle(svc: _Service) -> str | None:
    """Once the launcher exits: the server pid from its pidfile, or why it failed."""
    if svc.pid is not None or svc.launcher_pid is None:
        return None
    launcher = _CHILDREN.get(svc.launcher_pid)
    code = launcher.poll() if launcher is not None else (None if _alive(svc.launcher_pid) else 0)
    if code is None:
        return None
    pidfile = Path(svc.pidfile or "")
    if code == 0 and pidfile.exists():
        svc.pid = int(pidfile.read_text().strip())
        svc.launcher_pid = None
        return None
    return f"elasticsearch launcher exited with {code}:\n{_tail(svc.log)}\n{_tail(svc.extra['server_log'])}"


# --------------------------------------------------------------------------------------------------
# One Kafka broker + one Elasticsearch node


def _fail_if_running(data_dir: Path) -> None:
    if not _control_path(data_dir).exists():
        return
    running = [name for name, svc in _services(_read_control(data_dir)).items() if _running(svc)]
    if running:
        raise RealEnginesError(
            f"{', '.join(running)} already running from {data_dir}: down() it, or fresh=True"
        )


def _prepare(data_dir: Path | str, cache_dir: Path, fresh: bool) -> tuple[Path, EngineJars]:
    """The resolved jars and a data directory ready for new servers: emptied first with `fresh`,
    refused while servers recorded in it still run."""
    data_dir = Path(data_dir).resolve()
    jars = resolve(cache_dir)
    if fresh and data_dir.exists():
        down(data_dir)
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _fail_if_running(data_dir)
    return data_dir, jars


def up(
    data_dir: Path,
    kafka_port: int = 9092,
    es_port: int = 9200,
    host: str = "127.0.0.1",
    fresh: bool = False,
    timeout_s: float = 120.0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    kafka_heap_mb: int = KAFKA_HEAP_MB,
    es_heap_mb: int = ES_HEAP_MB,
) -> LocalServers:
    """Start one Kafka broker (KRaft, broker+controller) and one Elasticsearch node; wait for both."""
    data_dir, jars = _prepare(data_dir, cache_dir, fresh)
    previous = _read_control(data_dir) if _control_path(data_dir).exists() else {}
    cluster_id = previous.get("cluster_id") or _new_cluster_id()
    old = _services(previous) if previous else {}
    controller_port = old["kafka"].extra["controller_port"] if "kafka" in old else free_port(host)
    transport_port = (
        old["elasticsearch"].extra["transport_port"] if "elasticsearch" in old else free_port(host)
    )
    kafka = _kafka_node(
        jars,
        data_dir / "kafka",
        node_id=1,
        host=host,
        port=kafka_port,
        controller_port=controller_port,
        voters=f"1@{host}:{controller_port}",
        heap_mb=kafka_heap_mb,
        settings={
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
        },
    )
    es = _es_node(jars, data_dir / "elasticsearch", host, es_port, transport_port, es_heap_mb)
    services = {"kafka": kafka, "elasticsearch": es}
    control: dict[str, Any] = {
        "kind": "servers",
        "host": host,
        "cluster_id": cluster_id,
        "cache_dir": str(jars.cache_dir),
        "kafka_version": jars.kafka_version,
        "es_version": jars.es_version,
    }
    started = time.monotonic()
    _launch(es)  # Elasticsearch takes longest: start it first, format Kafka's storage meanwhile
    _write_control(data_dir, control, services)
    try:
        _format_kafka(jars, kafka, cluster_id)
        _launch(kafka)
        _write_control(data_dir, control, services)
        _wait(data_dir, control, services, {"kafka": {1}, "elasticsearch": set()}, host, timeout_s, started)
    except BaseException:
        _stop(list(services.values()), timeout_s=10)
        raise
    servers = LocalServers(data_dir, host, kafka_port, es_port, engine=RealEngine.name)
    log.info(
        "real servers up",
        kafka=servers.bootstrap_servers,
        elasticsearch=servers.es_url,
        data_dir=str(data_dir),
        seconds=round(time.monotonic() - started, 1),
    )
    return servers


def _wait(
    data_dir: Path,
    control: dict[str, Any],
    services: dict[str, _Service],
    expect: dict[str, set[int]],
    host: str,
    timeout_s: float,
    started: float,
) -> None:
    """Wait until each named service answers (Kafka: the expected broker ids are in the metadata)."""
    pending = dict(expect)
    deadline = started + timeout_s
    while pending:
        for name in list(pending):
            svc = services[name]
            if svc.pidfile:
                known = svc.pid
                problem = _es_settle(svc)
                if problem:
                    raise RealEnginesError(problem)
                if svc.pid is None:
                    continue
                if svc.pid != known:
                    _write_control(data_dir, control, services)
                ready = _es_ready(host, svc.port)
            else:
                if not _alive(svc.pid):
                    raise RealEnginesError(
                        f"{name} exited while starting:\n{_tail(svc.log)}\n{_server_log(svc)}"
                    )
                ready = _kafka_ready(host, svc.port, pending[name])
            if ready:
                log.info("server ready", service=name, seconds=round(time.monotonic() - started, 1))
                del pending[name]
        if pending and time.monotonic() > deadline:
            logs_ = {name: services[name].log for name in pending}
            raise RealEnginesError(f"{', '.join(pending)} not ready within {timeout_s}s; see {logs_}")
        if pending:
            time.sleep(0.2)


def _server_log(svc: _Service) -> str:
    return _tail(str(Path(svc.cwd) / "server.log"))


def wait_until_ready(servers: LocalServers, timeout_s: float = 60.0) -> None:
    """Wait until Kafka lists its broker and Elasticsearch's health is at least yellow."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _kafka_ready(servers.host, servers.kafka_port, {1}) and _es_ready(servers.host, servers.es_port):
            return
        time.sleep(0.2)
    raise RealEnginesError(f"real servers did not answer within {timeout_s}s ({servers.data_dir})")


def down(data_dir: Path, missing_ok: bool = True, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop every server recorded in `data_dir` (SIGTERM, then SIGKILL after `timeout_s`); data stays."""
    data_dir = Path(data_dir).resolve()
    if not _control_path(data_dir).exists():
        if missing_ok:
            return
        raise RealEnginesError(f"no real engines recorded in {data_dir}")
    control = _read_control(data_dir)
    services = _services(control)
    _stop(list(services.values()), timeout_s)
    for svc in services.values():
        svc.forget()
    _write_control(data_dir, control, services)
    log.info("real engines stopped", data_dir=str(data_dir))


def status(data_dir: Path) -> str:
    """One line per server: running or not, pid, port and resident memory."""
    data_dir = Path(data_dir).resolve()
    if not _control_path(data_dir).exists():
        return f"no real engines in {data_dir}"
    lines = []
    for name, svc in _services(_read_control(data_dir)).items():
        if _running(svc):
            lines.append(f"{name:<14} running  pid {svc.pid}  port {svc.port}  rss {_rss_mb(svc.pid)} MB")
        else:
            lines.append(f"{name:<14} stopped  port {svc.port}")
    return "\n".join(lines)


def stop_service(service: str, data_dir: Path, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM one server ('kafka', 'elasticsearch', or 'kafka-N' of a cluster); the others keep running."""
    data_dir = Path(data_dir).resolve()
    control = _read_control(data_dir)
    services = _services(control)
    svc = _one(services, service, data_dir)
    _stop([svc], timeout_s)
    svc.forget()
    _write_control(data_dir, control, services)


def start_service(service: str, data_dir: Path, timeout_s: float = 120.0) -> None:
    """Start a stopped server again on the same port and data, and wait until it answers."""
    data_dir = Path(data_dir).resolve()
    control = _read_control(data_dir)
    services = _services(control)
    svc = _one(services, service, data_dir)
    if _running(svc):
        return
    started = time.monotonic()
    _launch(svc)
    _write_control(data_dir, control, services)
    expect = {service: set() if svc.pidfile else {int(svc.extra["node_id"])}}
    _wait(data_dir, control, services, expect, control["host"], timeout_s, started)


def _one(services: dict[str, _Service], service: str, data_dir: Path) -> _Service:
    if service not in services:
        raise RealEnginesError(f"no {service!r} in {data_dir}: there are {sorted(services)}")
    return services[service]


class RealEngine:
    """`local_servers.Engine` for the real servers: one Kafka broker and one Elasticsearch node."""

    name = "real"
    description = "Apache Kafka and Elasticsearch (the upstream servers, resolved by Maven)"
    # Nothing a test may declare: ILM and ES|QL are missing too (the integ-test distribution lacks
    # x-pack-ilm and x-pack-esql), and no test needs a server for them (docs/engines.md).
    gaps: Mapping[str, str] = {}

    def unavailable(self) -> str | None:
        try:
            java_home()
        except RealEnginesError as exc:
            return str(exc)
        if resolved() is None and shutil.which("mvn") is None:
            return (
                f"the Kafka and Elasticsearch jars are not in {DEFAULT_CACHE_DIR} and Maven is not "
                "installed to fetch them: apt-get install maven, then scripts/bootstrap.sh"
            )
        return None

    def recorded_in(self, data_dir: Path) -> bool:
        return _control_path(data_dir).exists()

    def up(self, data_dir: Path, kafka_port: int, es_port: int, host: str, fresh: bool) -> LocalServers:
        return up(data_dir, kafka_port, es_port, host=host, fresh=fresh)

    def down(self, data_dir: Path) -> None:
        down(data_dir)

    def status(self, data_dir: Path) -> str:
        return status(data_dir)

    def stop_service(self, service: str, data_dir: Path) -> None:
        stop_service(service, data_dir)

    def start_service(self, service: str, data_dir: Path) -> None:
        start_service(service, data_dir)

    def wait_until_ready(self, servers: LocalServers, timeout_s: float) -> None:
        wait_until_ready(servers, timeout_s)


# --------------------------------------------------------------------------------------------------
# A Kafka cluster of combined broker+controller nodes


@dataclass(frozen=True)
class KafkaCluster:
    """`brokers` KRaft nodes on loopback, each broker and controller (all voters), each its own JVM."""

    data_dir: Path
    host: str
    ports: dict[int, int]  # node id -> broker port

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{port}" for port in self.ports.values())

    def env(self) -> dict[str, str]:
        return {"CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, as in a crash."""
        svc = self._service(node_id)
        _signal(svc, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _running(svc) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, node_id: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM one node (controlled shutdown: its leaderships move first)."""
        stop_service(f"kafka-{node_id}", self.data_dir, timeout_s)

    def restart(self, node_id: int, timeout_s: float = 120.0) -> None:
        """Start a killed or stopped node again (same port and data); waits until it is registered."""
        svc = self._service(node_id)
        if _running(svc):
            self.stop(node_id)
        start_service(f"kafka-{node_id}", self.data_dir, timeout_s)

    def alive(self, node_id: int) -> bool:
        return _running(self._service(node_id))

    def brokers(self) -> set[int]:
        """Ids of the brokers the cluster metadata lists now (the fenced ones drop out)."""
        return _kafka_brokers(self.bootstrap_servers)

    def leader(self, topic: str, partition: int = 0) -> int:
        """Node id of the current leader of a partition (-1 while there is none)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        metadata = admin.list_topics(topic=topic, timeout=10)
        return int(metadata.topics[topic].partitions[partition].leader)

    def down(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        down(self.data_dir, timeout_s=timeout_s)

    def _service(self, node_id: int) -> _Service:
        return _one(_services(_read_control(self.data_dir)), f"kafka-{node_id}", self.data_dir)

    @classmethod
    def load(cls, data_dir: Path) -> KafkaCluster:
        """The cluster recorded in `data_dir` (started by this or another process)."""
        data_dir = Path(data_dir).resolve()
        control = _read_control(data_dir)
        ports = {int(s.extra["node_id"]): s.port for s in _services(control).values()}
        return cls(data_dir, control["host"], dict(sorted(ports.items())))


def cluster_up(
    data_dir: Path,
    brokers: int = 3,
    host: str = "127.0.0.1",
    fresh: bool = True,
    timeout_s: float = 180.0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    heap_mb: int = CLUSTER_NODE_HEAP_MB,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
) -> KafkaCluster:
    """Start a KRaft cluster of `brokers` combined nodes (a quorum of that many voters).

    Defaults: replication factor min(3, brokers) for every topic including the internal ones,
    min.insync.replicas = replication factor - 1 (2 of 3). Brokers are fenced 3 s after their last
    heartbeat, so leaderships leave a killed node within seconds.
    """
    data_dir, jars = _prepare(data_dir, cache_dir, fresh)
    rf = replication_factor or min(3, brokers)
    min_isr = min_insync_replicas or max(1, rf - 1)
    previous = _read_control(data_dir) if _control_path(data_dir).exists() else {}
    old = _services(previous) if previous else {}
    ids = list(range(1, brokers + 1))
    ports = {i: old[f"kafka-{i}"].port if f"kafka-{i}" in old else free_port(host) for i in ids}
    cports = {
        i: old[f"kafka-{i}"].extra["controller_port"] if f"kafka-{i}" in old else free_port(host) for i in ids
    }
    voters = ",".join(f"{i}@{host}:{cports[i]}" for i in ids)
    cluster_id = previous.get("cluster_id") or _new_cluster_id()
    settings: dict[str, str | int] = {
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "broker.heartbeat.interval.ms": 500,
        "broker.session.timeout.ms": 3000,
        "unclean.leader.election.enable": "false",
    }
    services = {
        f"kafka-{i}": _kafka_node(
            jars, data_dir / f"kafka-{i}", i, host, ports[i], cports[i], voters, heap_mb, settings
        )
        for i in ids
    }
    control: dict[str, Any] = {
        "kind": "kafka-cluster",
        "host": host,
        "cluster_id": cluster_id,
        "cache_dir": str(jars.cache_dir),
        "kafka_version": jars.kafka_version,
    }
    started = time.monotonic()
    try:
        for svc in services.values():
            _format_kafka(jars, svc, cluster_id)
        for svc in services.values():
            _launch(svc)
        _write_control(data_dir, control, services)
        # Each node is ready once the metadata (asked of that node) lists every broker.
        expect = {name: set(ids) for name in services}
        _wait(data_dir, control, services, expect, host, timeout_s, started)
    except BaseException:
        _stop(list(services.values()), timeout_s=10)
        raise
    cluster = KafkaCluster(data_dir, host, ports)
    log.info(
        "kafka cluster up",
        bootstrap_servers=cluster.bootstrap_servers,
        replication_factor=rf,
        min_insync_replicas=min_isr,
        seconds=round(time.monotonic() - started, 1),
    )
    return cluster


# --------------------------------------------------------------------------------------------------
# python -m callstream.infra.real_engines resolve|cluster-up
# (one broker and one Elasticsearch node: `callstream local up --engine real`; `callstream local
# down|status --data-dir DIR` stops and shows a cluster too)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callstream.infra.real_engines",
        description="Resolve the real Kafka and Elasticsearch from Maven Central, or start a Kafka cluster.",
    )
    parser.add_argument("command", choices=["resolve", "cluster-up"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--data-dir", type=Path, default=Path(".callstream/cluster"))
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    logs.configure(logs.LogSettings(level="WARNING" if args.quiet else "INFO"))
    try:
        if args.command == "resolve":
            jars = resolve(args.cache_dir)
            if not args.quiet:
                print(f"kafka {jars.kafka_version}: {jars.kafka_lib}")
                print(f"elasticsearch {jars.es_version}: {jars.es_home}")
        else:
            cluster = cluster_up(args.data_dir, args.brokers, fresh=args.fresh, cache_dir=args.cache_dir)
            for key, value in cluster.env().items():
                print(f"export {key}={value}")
    except LocalServersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
