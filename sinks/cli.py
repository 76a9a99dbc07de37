"""`callstream sink`: run the Elasticsearch sink until SIGTERM/SIGINT (or idle, for tests and the demo)."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer

from callstream import logs
from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.sinks.elasticsearch import ElasticsearchDestination
from callstream.sinks.settings import SinkSettings
from callstream.sinks.worker import SinkStats, SinkWorker

log = logs.get(__name__)


@contextmanager
def stop_on_signals(worker: SinkWorker) -> Iterator[None]:
    """SIGTERM/SIGINT ask the worker to stop at a safe point; a second one aborts retries."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", signal=signal.Signals(signum).name)
        worker.request_stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def elasticsearch_sink(
    kafka: KafkaSettings | None = None,
    es: ElasticsearchSettings | None = None,
    sink: SinkSettings | None = None,
) -> SinkWorker:
    """A sink worker writing to Elasticsearch (settings from the environment unless given)."""
    sink = sink or SinkSettings()
    destination = functools.partial(ElasticsearchDestination, es or ElasticsearchSettings(), sink)
    return SinkWorker(kafka or KafkaSettings(), sink, destination)


def run_sink(
    kafka: KafkaSettings | None = None,
    es: ElasticsearchSettings | None = None,
    sink: SinkSettings | None = None,
    stop_when_idle_s: float | None = None,
    stop_after_docs: int | None = None,
) -> SinkStats:
    """Run the sink in this process (settings from the environment unless given); returns its counts."""
    worker = elasticsearch_sink(kafka, es, sink)
    worker.metrics.serve_or_warn(worker.sink.metrics_host, worker.sink.metrics_port)
    try:
        with stop_on_signals(worker):
            return worker.run(stop_when_idle_s=stop_when_idle_s, stop_after_docs=stop_after_docs)
    finally:
        worker.metrics.close()


def sink_command(
    stop_when_idle_s: float | None = typer.Option(
        None, "--stop-when-idle-s", help="Exit after this many seconds with nothing to consume or write"
    ),
    group_id: str | None = typer.Option(None, help="Consumer group (default: CALLSTREAM_SINK_GROUP_ID)"),
    group_instance_id: str | None = typer.Option(None, help="Static group membership id, one per process"),
    max_in_flight_requests: int | None = typer.Option(None, help="Parallel bulk requests"),
    stats_interval_s: float | None = typer.Option(None, help="Seconds between progress log lines"),
) -> None:
    """Write enriched events, window aggregates and dead letters from Kafka to Elasticsearch.

    Offsets are committed only once every document of a message is stored or dead-lettered.
    Several processes with the same group share the partitions.
    """
    overrides = {
        "group_id": group_id,
        "group_instance_id": group_instance_id,
        "max_in_flight_requests": max_in_flight_requests,
        "stats_interval_s": stats_interval_s,
    }
    sink = SinkSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    run_sink(sink=sink, stop_when_idle_s=stop_when_idle_s)
