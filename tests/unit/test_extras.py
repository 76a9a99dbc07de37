"""Each extra the README names for a command brings what that command imports (pyproject.toml),
and `callstream bench` outside a checkout says it needs one."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from callstream import cli
from tests.unit.test_lock import requirements_of

# What each command imports beyond the base install, by distribution (the command -> extra pairs
# are README.md's Install table).
NEEDS = {
    # demo: the stream, sink and alert workers (faust, yaml rules), then the report (plotly, prices)
    "local": {"noida-db", "faust-streaming", "elasticsearch", "pyyaml", "plotly", "genai-prices", "httpx"},
    # alert: the worker (faust, yaml, httpx deliveries) and `alert list` (the alert records index)
    "alert": {"faust-streaming", "pyyaml", "httpx", "elasticsearch"},
    "report": {"elasticsearch", "plotly", "pyyaml", "genai-prices"},
    "stream": {"faust-streaming", "genai-prices", "numpy"},
    "sink": {"elasticsearch"},
    "image": {"faust-streaming", "elasticsearch", "pyyaml", "plotly", "genai-prices", "httpx", "openai"},
}


@pytest.mark.parametrize("extra", sorted(NEEDS))
def test_the_extra_brings_what_its_commands_import(extra: str) -> None:
    brought = {canonicalize_name(r.name) for r in requirements_of(extra)}
    assert NEEDS[extra] <= brought, f"callstream[{extra}] lacks {sorted(NEEDS[extra] - brought)}"


def test_the_image_extra_is_everything_but_local() -> None:
    brought = {canonicalize_name(r.name) for r in requirements_of("image")}
    assert "noida-db" not in brought


def test_bench_outside_a_checkout_says_it_needs_one(tmp_path: Path) -> None:
    assert cli.bench_missing(cli.SOURCE_CHECKOUT) is None  # this checkout has bench/
    reason = cli.bench_missing(tmp_path)
    assert reason is not None and "source checkout" in reason and "scripts/bootstrap.sh dev" in reason
