"""callstream.metrics: counters, gauges and histograms served at /metrics, health at /healthz,
over real HTTP on loopback."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from callstream.metrics import Metrics


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics("unittest")
    yield m
    m.close()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_are_served_with_the_component_prefix(metrics: Metrics) -> None:
    sent = metrics.counter("notifications_total", "Notifications delivered", ["route"])
    lag = metrics.gauge("consumer_lag_messages", "Messages behind", ["group"])
    took = metrics.histogram("delivery_seconds", "Time to deliver")
    sent.labels(route="webhook").inc(3)
    lag.labels(group="stream").set(42)
    took.observe(0.2)
    port = metrics.serve("127.0.0.1", 0)
    status, body = get(port, "/metrics")
    assert status == 200
    assert 'callstream_unittest_notifications_total{route="webhook"} 3.0' in body
    assert 'callstream_unittest_consumer_lag_messages{group="stream"} 42.0' in body
    assert "callstream_unittest_delivery_seconds_count 1.0" in body
    assert get(port, "/nothing")[0] == 404


def test_two_components_in_one_process_do_not_collide() -> None:
    a, b = Metrics("a"), Metrics("a")
    a.counter("x_total", "x").inc()
    b.counter("x_total", "x")
    assert b"callstream_a_x_total 0.0" in b.exposition()
    assert b"callstream_a_x_total 1.0" in a.exposition()


def test_health_starts_unhealthy_and_follows_the_worker(metrics: Metrics) -> None:
    port = metrics.serve("127.0.0.1", 0)
    assert get(port, "/healthz") == (503, "starting\n")
    metrics.set_healthy(True)
    assert get(port, "/healthz") == (200, "ok\n")
    metrics.set_healthy(False, "kafka unreachable")
    assert get(port, "/healthz") == (503, "kafka unreachable\n")


def test_health_with_a_ttl_lapses_unless_renewed(metrics: Metrics) -> None:
    metrics.set_healthy(True, ttl_s=0.05)
    assert metrics.health() == (True, "ok")
    time.sleep(0.1)
    assert metrics.health()[0] is False
    metrics.set_healthy(True, ttl_s=60)
    assert metrics.health() == (True, "ok")
