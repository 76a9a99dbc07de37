"""Pipeline health, visible: counters, gauges and histograms for one worker, served over HTTP.

One small API for every worker (stream, sink, alert, ingest):

    metrics = Metrics("alert")                                   # names: callstream_alert_<name>
    sent = metrics.counter("notifications_total", "Notifications delivered", ["route", "kind"])
    sent.labels(route="oncall", kind="firing").inc()
    lag = metrics.gauge("consumer_lag_messages", "Messages behind", ["group", "topic", "partition"])
    latency = metrics.histogram("delivery_seconds", "Time to deliver", ["route"])
    port = metrics.serve("127.0.0.1", 9464)                      # 0 picks a free port; returns it
    metrics.set_healthy(True)                                    # GET /healthz: 200 "ok"
    metrics.set_healthy(False, "kafka unreachable")              # GET /healthz: 503 + reason
    metrics.set_healthy(True, ttl_s=30)                          # healthy only if renewed within 30 s
    metrics.expose(lambda: asdict(counts), "Stream counts")      # counts a worker already keeps

`expose` is how a worker's own counts (the dataclass it logs and tests read) become Prometheus
counters without a second set of counters on the hot path: they are read at scrape time.

`GET /metrics` is the Prometheus text format of this object's registry (each Metrics has its own,
so two in one process, e.g. in tests, never collide). A worker starts unhealthy ("starting") until
it says otherwise. The server is a daemon thread; `close()` stops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from callstream.errors import MissingExtraError

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import Collector
except ImportError as exc:  # a base dependency; only a broken install lacks it
    raise MissingExtraError("all", "prometheus-client") from exc

from callstream import logs

log = logs.get(__name__)

__all__ = ["Metrics"]

DEFAULT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The metrics and the health of one component (`callstream_<component>_*`)."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._healthy = False
        self._reason = "starting"
        self._healthy_until: float | None = None
        self._server: ThreadingHTTPServer | None = None

    def _name(self, name: str) -> str:
        return f"callstream_{self.component}_{name}"

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self._name(name), help, list(labels), registry=self.registry)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(self._name(name), help, list(labels), registry=self.registry)

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS_S
    ) -> Histogram:
        return Histogram(self._name(name), help, list(labels), registry=self.registry, buckets=tuple(buckets))

    def expose(
        self, read: Callable[[], Mapping[str, float]], help: str, gauges: Collection[str] = ()
    ) -> None:
        """Export counts the worker keeps anyway, read at each scrape: every key becomes
        `callstream_<component>_<key>_total` (a counter), or a gauge when listed in `gauges`."""
        self.registry.register(_Exposed(self._name, read, help, frozenset(gauges)))

    # -- health

    def set_healthy(self, healthy: bool, reason: str = "", ttl_s: float | None = None) -> None:
        """Healthy or not, and why not. With `ttl_s`, health lapses unless set again in time
        (a worker whose loop stalls turns unhealthy by itself)."""
        with self._lock:
            self._healthy = healthy
            self._reason = reason or ("ok" if healthy else "unhealthy")
            self._healthy_until = time.monotonic() + ttl_s if healthy and ttl_s is not None else None

    def health(self) -> tuple[bool, str]:
        with self._lock:
            if self._healthy and self._healthy_until is not None and time.monotonic() > self._healthy_until:
                return False, "no sign of life within the health ttl"
            return self._healthy, self._reason

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- HTTP

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve /metrics and /healthz on a daemon thread; returns the bound port."""
        if self._server is not None:
            return int(self._server.server_address[1])
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    healthy, reason = metrics.health()
                    self._reply(200 if healthy else 503, reason.encode() + b"\n", "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name=f"metrics-{self.component}", daemon=True)
        thread.start()
        self._server = server
        return int(server.server_address[1])

    def serve_or_warn(self, host: str, port: int | None) -> int | None:
        """`serve`, but a port already in use (two workers on one host) costs the metrics, not
        the worker: logged, and None returned. `port=None` turns the endpoint off."""
        if port is None:
            return None
        try:
            bound = self.serve(host, port)
        except OSError as exc:
            log.warning("metrics endpoint not served", component=self.component, port=port, error=str(exc))
            return None
        log.info("metrics and health served", component=self.component, url=f"http://{host}:{bound}/metrics")
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Exposed(Collector):
    def __init__(
        self,
        name: Callable[[str], str],
        read: Callable[[], Mapping[str, float]],
        help: str,
        gauges: frozenset[str],
    ) -> None:
        self._name, self._read, self._help, self._gauges = name, read, help, gauges

    def collect(self) -> Iterator[Metric]:
        for key, value in self._read().items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if key in self._gauges:
                yield GaugeMetricFamily(self._name(key), self._help, value=value)
            else:
                yield CounterMetricFamily(self._name(key), self._help, value=value)
