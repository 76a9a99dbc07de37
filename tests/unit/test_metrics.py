"""One metrics style: counts a worker keeps are exported as they are, read at scrape time."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import asdict, dataclass

from callstream.metrics import Metrics


@dataclass
class Counts:
    valid: int = 0
    pending: int = 0
    name: str = "not a number"


def test_exposed_counts_are_read_at_scrape_time() -> None:
    counts = Counts()
    metrics = Metrics("t1")
    metrics.expose(lambda: asdict(counts), "test counts", gauges=["pending"])
    counts.valid, counts.pending = 7, 3
    text = metrics.exposition().decode()
    assert "callstream_t1_valid_total 7.0" in text
    assert "callstream_t1_pending 3.0" in text
    assert "callstream_t1_name" not in text  # only numbers are counts


def test_a_busy_port_costs_the_endpoint_not_the_worker() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert Metrics("t2").serve_or_warn("127.0.0.1", port) is None
    assert Metrics("t3").serve_or_warn("127.0.0.1", None) is None
    metrics = Metrics("t4")
    bound = metrics.serve_or_warn("127.0.0.1", 0)
    assert bound
    try:
        metrics.set_healthy(True)
        with urllib.request.urlopen(f"http://127.0.0.1:{bound}/healthz", timeout=5) as reply:
            assert reply.status == 200
    finally:
        metrics.close()
