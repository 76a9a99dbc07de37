"""Which engine the integration tests run on (CALLSTREAM_TEST_BACKEND), and the engines' shared shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from callstream.infra import local_servers, real_engines
from callstream.infra.local_servers import LocalServers
from tests.backend import BACKEND_ENV, selected_engine


@pytest.mark.parametrize(("value", "expected"), [(None, "embedded"), ("", "embedded"), ("Real", "real")])
def test_the_backend_variable_names_the_engine(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str
) -> None:
    if value is None:
        monkeypatch.delenv(BACKEND_ENV, raising=False)
    else:
        monkeypatch.setenv(BACKEND_ENV, value)
    assert selected_engine().name == expected


def test_unknown_backend_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "noida")
    with pytest.raises(ValueError, match="embedded, real"):
        selected_engine()


def test_every_gap_is_a_known_feature_with_a_reason() -> None:
    for engine in local_servers.engines().values():
        assert set(engine.gaps) <= set(local_servers.FEATURES), engine.name
        assert all(reason for reason in engine.gaps.values())


def test_only_the_embedded_engine_needs_the_large_fetch_workaround() -> None:
    embedded = LocalServers(
        Path("/tmp/x"), "127.0.0.1", 9092, 9200, "embedded", (("receive_message_max_bytes", "1000000000"),)
    )
    real = LocalServers(Path("/tmp/x"), "127.0.0.1", 9092, 9200, "real")
    assert embedded.env()["CALLSTREAM_KAFKA_RECEIVE_MESSAGE_MAX_BYTES"] == "1000000000"
    assert embedded.kafka_settings().receive_message_max_bytes == 1_000_000_000
    assert "CALLSTREAM_KAFKA_RECEIVE_MESSAGE_MAX_BYTES" not in real.env()
    assert real.kafka_settings().receive_message_max_bytes == 100_000_000  # librdkafka's default
    assert local_servers.EmbeddedEngine.kafka_overrides == embedded.kafka_overrides


def test_up_refuses_a_data_dir_of_the_other_engine(tmp_path: Path) -> None:
    (tmp_path / real_engines.CONTROL_FILE).write_text("{}")
    assert [e.name for e in local_servers.engines_in(tmp_path)] == ["real"]
    with pytest.raises(local_servers.LocalServersError, match="real engine"):
        local_servers.up(
            tmp_path, local_servers.free_port(), local_servers.free_port(), engine_name="embedded"
        )


def test_unknown_engine_and_service_are_errors(tmp_path: Path) -> None:
    with pytest.raises(local_servers.LocalServersError, match="embedded or real"):
        local_servers.engine("docker")
    with pytest.raises(local_servers.LocalServersError, match="kafka or elasticsearch"):
        local_servers.stop_service("zookeeper", tmp_path)
    with pytest.raises(local_servers.LocalServersError, match="no local servers recorded"):
        local_servers.stop_service("kafka", tmp_path)
    assert local_servers.status(tmp_path) == f"no local servers in {tmp_path.resolve()}"
    local_servers.down(tmp_path)  # nothing recorded: nothing to do


def test_the_real_engine_says_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = real_engines.RealEngine()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert engine.unavailable() == f"JAVA_HOME={tmp_path / 'no-jdk'} has no bin/java"
    with pytest.raises(local_servers.LocalServersError, match="the real engine cannot run here: JAVA_HOME="):
        local_servers.up(
            tmp_path / "data", local_servers.free_port(), local_servers.free_port(), engine_name="real"
        )
    assert not (tmp_path / "data").exists()  # nothing started, nothing created

    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.touch()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setattr(real_engines, "resolved", lambda *args: None)
    monkeypatch.setattr(real_engines.shutil, "which", lambda name: None)
    problem = engine.unavailable()
    assert problem is not None and "Maven is not installed" in problem and "scripts/bootstrap.sh" in problem
