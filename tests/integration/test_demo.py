"""`callstream demo` on the engine the tests run on: it starts its own servers (fresh, on free
ports), runs the main job end to end and stops everything it started."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from callstream.infra import local_servers
from callstream.infra.demo import INCIDENT_CALLS, run_demo
from callstream.producers import synthetic
from tests.backend import selected_engine

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_demo_indexes_every_call_and_counts_it_once(tmp_path: Path) -> None:
    engine = selected_engine().name
    data_dir = tmp_path / "demo"
    report = run_demo(
        events=3000, data_dir=data_dir, timeout_s=300, console=Console(file=None, quiet=True), engine=engine
    )
    invalid = len(synthetic.invalid_inputs())
    calls = 3000 + INCIDENT_CALLS  # the demo adds a burst of failed calls to one model
    assert (report.events, report.invalid) == (3000, invalid)
    assert report.call_docs == calls
    assert sum(row.requests for row in report.models.values()) == calls
    assert report.deadletter_docs == invalid
    assert report.aggregate_docs > 0
    assert report.engine == engine
    # Everything it started is stopped: no server of either engine still answers for its data.
    assert all("running" not in e.status(data_dir.resolve()) for e in local_servers.engines_in(data_dir))
