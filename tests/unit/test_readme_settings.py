"""Every CALLSTREAM_* variable README.md names is one a callstream settings object reads (or one
the Compose file or the test fixtures define): a renamed setting cannot linger in the README."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_infra_compose import COMPOSE_FILE, VARIABLE, settings_fields

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"\bCALLSTREAM_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*<])")
OTHERS = {"CALLSTREAM_TEST_BACKEND"}  # tests/backend.py: which engines the tests run on


def known_variables() -> set[str]:
    known = {f"{prefix}{field}".upper() for prefix, fields in settings_fields().items() for field in fields}
    return known | {m.group(1) for m in VARIABLE.finditer(COMPOSE_FILE.read_text())} | OTHERS


def test_readme_names_only_variables_that_exist() -> None:
    named = set(NAMED.findall((ROOT / "README.md").read_text()))
    assert "CALLSTREAM_PRODUCER_METRICS_PORT" in named
    unknown = sorted(named - known_variables())
    assert not unknown, f"README.md names variables nothing reads: {unknown}"
