"""infra/README.md against what the code and init_users.sh really do: the roles' privileges, the
replication factor, standbys, and one partition count for `callstream setup` and the workers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from callstream.infra import cli as infra_cli
from callstream.infra import setup as infra_setup

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "infra" / "README.md").read_text()
INIT_USERS = (ROOT / "infra" / "elasticsearch" / "init_users.sh").read_text()


def roles() -> dict[str, dict[str, Any]]:
    """Role name -> body, as init_users.sh PUTs them (the index prefix as `callstream`)."""
    found = {}
    for name, body in re.findall(r'request PUT /_security/role/(\w+) "(\{.*?\n\})"', INIT_USERS, flags=re.S):
        text = body.replace('\\"', '"').replace("${INDEX_PREFIX}", "callstream")
        found[name] = json.loads(text)
    return found


def readme_role_row(role: str) -> tuple[set[str], set[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in README.splitlines()]
    (cells,) = [r for r in rows if len(r) == 4 and r[1] == f"`{role}`"]
    names = lambda cell: set(re.findall(r"`([a-z_]+)`", cell))  # noqa: E731
    return names(cells[2]), names(cells[3])


def test_the_readme_lists_exactly_the_privileges_init_users_grants() -> None:
    granted = roles()
    assert set(granted) == {"callstream_writer", "callstream_setup"}
    for role, body in granted.items():
        cluster, indices = readme_role_row(role)
        assert cluster == set(body["cluster"]), role
        (index,) = body["indices"]
        assert index["names"] == ["callstream-*"]
        assert indices == set(index["privileges"]), role


def test_topics_take_the_clusters_replication_factor() -> None:
    assert infra_setup.BROKER_DEFAULT_REPLICATION == -1
    assert "default.replication.factor" in README
    assert "replication factor 1" not in README


def test_no_standby_is_promised() -> None:
    assert "table_standby_replicas=0" in (ROOT / "streams" / "frame.py").read_text()
    assert not re.search(r"idle standbys?", README)


def test_setup_creates_as_many_partitions_as_the_workers_expect(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[int] = []
    monkeypatch.setattr(infra_cli, "setup", lambda kafka, es, partitions: created.append(partitions))
    app = typer.Typer()
    app.command()(infra_cli.setup_command)
    runner = CliRunner()
    assert runner.invoke(app, []).exit_code == 0
    monkeypatch.setenv("CALLSTREAM_STREAM_PARTITIONS", "12")
    assert runner.invoke(app, []).exit_code == 0
    assert runner.invoke(app, ["--partitions", "3"]).exit_code == 0
    assert created == [6, 12, 3]
    # The README's production example sets the workers' count and lets setup read it.
    assert "export CALLSTREAM_STREAM_PARTITIONS=12" in README
    assert not re.search(r"callstream setup --partitions \d+\n", README)
