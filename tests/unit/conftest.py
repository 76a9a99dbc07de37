"""Unit tests see no callstream settings from the environment: the integration fixtures export the
servers' addresses (and the embedded engine's overrides) for the whole session, and a unit test's
outcome must not depend on whether an integration test ran first."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_callstream_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CALLSTREAM_"):
            monkeypatch.delenv(name)
