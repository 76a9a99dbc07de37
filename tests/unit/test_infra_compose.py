"""The Docker Compose stack, checked without Docker: structure, start order, and that every
CALLSTREAM_* variable it sets is one that a callstream settings object actually reads."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"

# Every module that defines settings read from CALLSTREAM_* variables.
SETTINGS_MODULES = [
    "callstream.settings",
    "callstream.producers.settings",
    "callstream.streams.settings",
    "callstream.sinks.settings",
    "callstream.infra.kibana.provision",
    "callstream.alerts.settings",
    "callstream.budgets",
    "callstream.logs",
]
CALLSTREAM_SERVICES = {"setup", "stream", "sink", "alert", "ingest", "loadgen", "kibana-setup"}
ONE_SHOTS = {"es-init", "setup", "kibana-setup", "loadgen"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def settings_fields() -> dict[str, set[str]]:
    """env prefix -> field names, for every BaseSettings class of SETTINGS_MODULES."""
    found: dict[str, set[str]] = {}
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseSettings) and cls is not BaseSettings and cls.__module__ == name:
                prefix = cls.model_config.get("env_prefix", "")
                found.setdefault(prefix.upper(), set()).update(cls.model_fields)
    return found


def with_defaults(value: str) -> str:
    """What compose makes of `${VAR:-default}` when VAR is unset."""
    return VARIABLE.sub(lambda m: m.group(2) or "", value)


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def upstream(services: dict[str, dict[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(dependencies(services[name]))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(dependencies(services[current]))
    return seen


def test_top_level_keys_are_compose_keys(compose: dict[str, Any]) -> None:
    allowed = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
    extensions = {key for key in compose if key.startswith("x-")}
    assert set(compose) - extensions <= allowed


def test_every_service_has_an_image_and_known_keys(services: dict[str, dict[str, Any]]) -> None:
    expected = {"kafka", "elasticsearch", "es-init", "kibana", *CALLSTREAM_SERVICES}
    assert set(services) == expected
    for name, service in services.items():
        assert "image" in service, name
        assert "container_name" not in service, f"{name}: a fixed container name prevents --scale"


def test_callstream_services_build_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    for name in CALLSTREAM_SERVICES:
        build = services[name]["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == ROOT, name
        assert (context / build["dockerfile"]).is_file(), name
        assert (context / "pyproject.toml").is_file()


def test_images_pin_versions(services: dict[str, dict[str, Any]]) -> None:
    assert with_defaults(services["kafka"]["image"]) == "apache/kafka:3.8.1"
    es_versions = {
        with_defaults(services[s]["image"]).rsplit(":", 1)[1] for s in ("elasticsearch", "es-init", "kibana")
    }
    assert es_versions == {"8.15.3"}, "Elasticsearch and Kibana must be the same version"


def test_depends_on_targets_exist_and_conditions_fit(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, condition in dependencies(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            assert condition in CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}'s health, it has no check"
                )
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", (
                    f"{target} is waited for to exit: restart must be no"
                )


def test_depends_on_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    for name in services:
        assert name not in upstream(services, name)


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    assert dependencies(services["setup"]) == {
        "kafka": "service_healthy",
        "es-init": "service_completed_successfully",
    }
    assert dependencies(services["es-init"]) == {"elasticsearch": "service_healthy"}
    assert dependencies(services["kibana"]) == {"es-init": "service_completed_successfully"}
    for worker in ("stream", "sink", "loadgen"):
        assert dependencies(services[worker]) == {"setup": "service_completed_successfully"}
    assert dependencies(services["kibana-setup"]) == {
        "kibana": "service_healthy",
        "setup": "service_completed_successfully",
    }


def test_one_shots_do_not_restart_and_workers_do(services: dict[str, dict[str, Any]]) -> None:
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no", name
    for name in ("kafka", "elasticsearch", "kibana", "stream", "sink"):
        assert services[name]["restart"] == "unless-stopped", name


def test_stream_scales(services: dict[str, dict[str, Any]]) -> None:
    stream = services["stream"]
    assert "ports" not in stream, "published ports would collide between replicas"
    assert with_defaults(str(stream["deploy"]["replicas"])) == "1"


def test_published_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"kafka", "elasticsearch", "kibana"}
    for name, ports in published.items():
        for port in ports:
            assert with_defaults(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_kafka_listeners_reach_containers_and_host(services: dict[str, dict[str, Any]]) -> None:
    env = services["kafka"]["environment"]
    advertised = dict(
        item.split("://") for item in with_defaults(env["KAFKA_ADVERTISED_LISTENERS"]).split(",")
    )
    assert advertised == {"INTERNAL": "kafka:19092", "HOST": "localhost:9092"}
    host_port = with_defaults(services["kafka"]["ports"][0]).split(":")
    assert host_port[1] == "9092" and host_port[2] == "9092"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    callstream_env = services["stream"]["environment"]
    assert callstream_env["CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == advertised["INTERNAL"]


def test_callstream_environment_is_read_by_settings(services: dict[str, dict[str, Any]]) -> None:
    fields = settings_fields()
    for name in CALLSTREAM_SERVICES:
        for variable in services[name]["environment"]:
            assert variable.startswith("CALLSTREAM_"), f"{name}: {variable} is not a callstream setting"
            matches = [
                prefix
                for prefix, names in fields.items()
                if prefix and variable.startswith(prefix) and variable[len(prefix) :].lower() in names
            ]
            assert matches, f"{name}: no settings object reads {variable}"


def required_variable(value: str) -> str:
    """The variable of a `${VAR:?message}` value: compose refuses to start while it is unset."""
    match = re.fullmatch(r"\$\{(\w+):\?[^}]+\}", value)
    assert match, f"{value!r} must be required (${{VAR:?message}}), not defaulted"
    return match.group(1)


def test_workers_connect_with_least_privilege_and_required_secrets(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["es-init"]["environment"]
    for name in ("stream", "sink", "alert", "ingest", "loadgen"):
        env = services[name]["environment"]
        assert env["CALLSTREAM_ES_URL"] == "http://elasticsearch:9200"
        assert env["CALLSTREAM_ES_USERNAME"] == "callstream", "workers use the least-privilege user"
        assert required_variable(env["CALLSTREAM_ES_PASSWORD"]) == required_variable(
            init["CALLSTREAM_USER_PASSWORD"]
        )
    setup = services["setup"]["environment"]
    assert setup["CALLSTREAM_ES_USERNAME"] == "callstream_setup", "only setup changes templates"
    assert required_variable(setup["CALLSTREAM_ES_PASSWORD"]) == required_variable(
        init["CALLSTREAM_SETUP_PASSWORD"]
    )
    kibana_env = services["kibana"]["environment"]
    assert required_variable(kibana_env["ELASTICSEARCH_PASSWORD"]) == required_variable(
        init["KIBANA_SYSTEM_PASSWORD"]
    )
    keys = {k: v for k, v in kibana_env.items() if k.endswith("ENCRYPTIONKEY")}
    assert len(keys) == 3 and {required_variable(v) for v in keys.values()} == {"KIBANA_ENCRYPTION_KEY"}
    for service in services.values():  # no password or key has a default (empty: an optional receiver)
        for key, value in (service.get("environment") or {}).items():
            if ("PASSWORD" in key or "ENCRYPTIONKEY" in key) and isinstance(value, str):
                assert not re.search(r":-[^}]", value), f"{key} has a default"


def test_writer_role_gets_only_what_it_needs() -> None:
    script = (ROOT / "infra" / "elasticsearch" / "init_users.sh").read_text()
    writer = script[script.index("role/callstream_writer") : script.index("role/callstream_setup")]
    assert '\\"all\\"' not in writer and "manage_index_templates" not in writer and "manage_ilm" not in writer
    assert "create_index" in writer and '\\"index\\"' in writer and '\\"read\\"' in writer


def test_partitions_agree(services: dict[str, dict[str, Any]]) -> None:
    setup_partitions = with_defaults(services["setup"]["command"][2])
    assert setup_partitions == with_defaults(
        services["stream"]["environment"]["CALLSTREAM_STREAM_PARTITIONS"]
    )
    assert setup_partitions == with_defaults(services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"])


def cli_options(module: str, function: str) -> set[str]:
    """The options that `callstream <command>` accepts, from the command's own typer declaration."""
    app = typer.Typer()
    app.command()(getattr(importlib.import_module(module), function))
    command = typer.main.get_command(app)
    return {opt for param in command.params for opt in param.opts}


def command_line(service: dict[str, Any]) -> list[str]:
    """argv after `callstream`, for the image's entrypoint or a `sh -c 'exec callstream ...'`."""
    if "entrypoint" in service and service["entrypoint"][:2] == ["sh", "-c"]:
        argv = shlex.split(service["entrypoint"][2].replace("$$(date +%s)", "1"))
        assert argv[:2] == ["exec", "callstream"]
        return argv[2:]
    return [str(part) for part in service["command"]]


@pytest.mark.parametrize(
    ("service", "module", "function"),
    [
        ("setup", "callstream.infra.cli", "setup_command"),
        ("stream", "callstream.streams.cli", "stream_command"),
        ("sink", "callstream.sinks.cli", "sink_command"),
        ("loadgen", "callstream.producers.cli", "loadgen"),
    ],
)
def test_commands_exist_with_their_options(
    services: dict[str, dict[str, Any]], service: str, module: str, function: str
) -> None:
    from callstream.cli import COMMANDS

    argv = command_line(services[service])
    assert (module, function, argv[0]) in COMMANDS
    options = cli_options(module, function)
    for word in argv[1:]:
        if word.startswith("--"):
            assert word in options, f"`callstream {argv[0]}` has no option {word}"


def test_kibana_setup_runs_the_provisioner(services: dict[str, dict[str, Any]]) -> None:
    entrypoint = services["kibana-setup"]["entrypoint"]
    assert entrypoint == ["python", "-m", "callstream.infra.kibana.provision"]
    assert importlib.util.find_spec("callstream.infra.kibana.provision") is not None
    assert services["kibana-setup"]["environment"]["CALLSTREAM_KIBANA_URL"] == "http://kibana:5601"


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_FILE.parent / source).is_file(), f"{name}: {source}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {
        v.split(":")[0]
        for s in compose["services"].values()
        for v in s.get("volumes", [])
        if not v.startswith((".", "/"))
    }
    assert used == set(compose["volumes"])


def test_dockerfile_runs_callstream_as_non_root() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    instructions = [
        line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))
    ]
    assert instructions.count("FROM") == 2
    assert "FROM ${PYTHON_IMAGE}" in dockerfile and "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert 'ENTRYPOINT ["callstream"]' in dockerfile
    user_lines = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user_lines == ["USER callstream"]
    assert "pip wheel --no-deps --wheel-dir /wheels ." in dockerfile, (
        "callstream itself; its dependencies from the lock"
    )
