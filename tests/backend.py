"""Which local servers the integration tests run on: `CALLSTREAM_TEST_BACKEND`.

- `embedded` (default): noida-db, pure pip, everywhere; tests that need what it lacks are skipped
  with its reason (`@pytest.mark.needs(...)`, `local_servers.EmbeddedEngine.gaps`);
- `real`: Apache Kafka and Elasticsearch from infra/real_engines.py (Java 17+, Maven once); CI runs
  the suite on these, and the `smoke` set a second time on the embedded engine.
"""

from __future__ import annotations

import os
from typing import Protocol

from callstream.infra import local_servers
from callstream.infra.local_servers import Engine

BACKEND_ENV = "CALLSTREAM_TEST_BACKEND"


class Servers(Protocol):
    """What tests and tests.pipeline use of a Kafka + Elasticsearch pair (LocalServers, say)."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def es_url(self) -> str: ...

    def env(self) -> dict[str, str]: ...


def selected_engine() -> Engine:
    """The engine CALLSTREAM_TEST_BACKEND names (embedded when unset)."""
    name = os.environ.get(BACKEND_ENV, "").strip().lower() or local_servers.DEFAULT_ENGINE
    known = local_servers.engines()
    if name not in known:
        raise ValueError(f"{BACKEND_ENV}={name!r}: expected one of {', '.join(known)}")
    return known[name]
