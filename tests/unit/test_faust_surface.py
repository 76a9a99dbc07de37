"""The fence around faust's internals: checked at start, failing loudly with the version."""

from __future__ import annotations

import pytest
from faust.transport.consumer import Consumer

from callstream.streams import faust_surface


def test_this_faust_has_everything_callstream_touches() -> None:
    faust_surface.check()


def test_a_missing_internal_fails_with_the_version_and_the_tested_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Consumer, "_add_gap")
    with pytest.raises(
        faust_surface.FaustSurfaceError, match=r"faust-streaming \S+ has no .*_add_gap.*>=0\.15\.3"
    ):
        faust_surface.check()
