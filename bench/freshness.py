"""`callstream bench freshness`: how long after its publication an event is searchable in
Elasticsearch, as a call document and in its one-minute aggregate, at a steady rate.

Fresh local servers (`--engine embedded|real`), topics and index templates, one stream worker and
one sink worker (separate processes, default settings). A thread publishes synthetic events whose
event time is the wall clock, at `--rate` events/s for `--duration-s` (the load generator: packed
`--batch-size` per message on their id's partition, acks=all, idempotent) and notes when it hands
each event to the producer. Another thread asks Elasticsearch every `--poll-ms` (no refresh: what a
dashboard would see) how many calls are searchable and what the one-minute per-model aggregates
sum to (`requests`).

The k-th event counts as searchable at the first poll that shows at least k: its freshness is that
time minus the time the k-th event was handed out. It is exact when events come out in the order
they went in, and otherwise the lag of the k-th unit of work (the horizontal distance between the
two cumulative curves); the poll period bounds its resolution. Events of the first `--warmup-s`
are left out (group joins, first index creation). If the pipeline cannot keep up, the backlog and
the latencies grow for as long as the run lasts: `kept_up` says whether every event was searchable
within `--drain-s` after the publication ended, and `published_per_s` what the publisher achieved.

The latencies include the sink's index refresh interval (`CALLSTREAM_SINK_INDEX_REFRESH_INTERVAL`,
default 5 s, applied by the templates), the stream's window flush interval and the sink's linger:
the settings are reported with the figures. Last line on stdout: one JSON object.
"""

from __future__ import annotations

import bisect
import math
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console

from bench.workdir import bench_workdir
from callstream import topics
from callstream.infra.processes import stop_process
from callstream.settings import ElasticsearchSettings, KafkaSettings

REPO = Path(__file__).resolve().parent.parent
QUANTILES = (50, 95, 99)
console = Console(stderr=True)


# -- the pure part: latencies from two cumulative curves -----------------------------------------


def latencies_s(
    handed_at: Sequence[float], polls: Sequence[tuple[float, int]], first: int = 0
) -> list[float]:
    """Seconds from handing out event k (`handed_at[k]`, in order) until the first poll whose count
    reached k + 1, for k from `first` on; events no poll ever covered are left out (see `covered`).
    `polls`: (time, count searchable) in time order, counts never decreasing."""
    times = [t for t, _ in polls]
    counts = [c for _, c in polls]
    out = []
    for k in range(first, len(handed_at)):
        at = bisect.bisect_left(counts, k + 1)
        if at == len(counts):
            break
        # The first poll that saw k + 1 may come before the event was handed out only if counts
        # were wrong; clamp at 0 rather than report a negative latency.
        out.append(max(0.0, times[at] - handed_at[k]))
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    figures: dict[str, float | None] = dict.fromkeys([*(f"p{q}_s" for q in QUANTILES), "max_s"])
    if values:
        figures.update({f"p{q}_s": round(quantile(values, q / 100), 3) for q in QUANTILES})
        figures["max_s"] = round(max(values), 3)
    return figures


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    handed_at: list[float] = field(default_factory=list)
    calls: list[tuple[float, int]] = field(default_factory=list)
    aggregated: list[tuple[float, int]] = field(default_factory=list)
    publication_s: float = 0.0
    failed_messages: int = 0


def _events(rate: float, duration_s: float, seed: int) -> Iterator[Any]:
    from callstream.producers import synthetic

    start = datetime.now(UTC)
    return synthetic.iter_events(round(rate * duration_s), seed=seed, start=start, rate_per_s=rate)


def _publish(
    kafka: KafkaSettings, run: Run, rate: float, duration_s: float, batch_size: int, stop: threading.Event
) -> None:
    from callstream.producers.loadgen import publish

    def timed() -> Iterator[Any]:
        for event in _events(rate, duration_s, seed=int(time.time())):
            run.handed_at.append(time.monotonic())
            yield event

    started = time.monotonic()
    report = publish(
        kafka, kafka.topic(topics.RAW), timed(), batch_size=batch_size, rate_per_s=rate, stop=stop
    )
    run.publication_s = time.monotonic() - started
    run.failed_messages = report.failed_messages


def _poll(es_settings: ElasticsearchSettings, run: Run, poll_s: float, stop: threading.Event) -> None:
    prefix = es_settings.index_prefix
    model_1m = {"bool": {"filter": [{"term": {"dimension": "model"}}, {"term": {"window_size": "1m"}}]}}
    with es_settings.client() as es:
        while not stop.is_set():
            at = time.monotonic()
            try:
                calls = int(es.count(index=f"{prefix}-calls-*", allow_no_indices=True)["count"])
                body = es.search(
                    index=f"{prefix}-aggregates-1m-*",
                    size=0,
                    query=model_1m,
                    aggs={"requests": {"sum": {"field": "requests"}}},
                    allow_no_indices=True,
                )
                aggregated = int((body.get("aggregations") or {}).get("requests", {}).get("value") or 0)
            except Exception:  # an index not created yet, a slow answer: the next poll will tell
                time.sleep(poll_s)
                continue
            # The curves must not go down: a count read from an index that moved on is still valid.
            run.calls.append((at, max(calls, run.calls[-1][1] if run.calls else 0)))
            run.aggregated.append((at, max(aggregated, run.aggregated[-1][1] if run.aggregated else 0)))
            time.sleep(max(0.0, poll_s - (time.monotonic() - at)))


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callstream.cli", *args],
        env=env,
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@contextmanager
def _servers(
    engine: str, external: bool, workdir: Path
) -> Iterator[tuple[KafkaSettings, ElasticsearchSettings, str]]:
    if external:
        kafka, es = KafkaSettings(), ElasticsearchSettings()
        yield kafka, es, f"external ({kafka.bootstrap_servers}, {es.url})"
        return
    from callstream.infra import local_servers

    with local_servers.running(engine, workdir / engine) as srv:
        yield srv.kafka_settings(), srv.es_settings(), f"{engine} engine"


def measure(
    kafka_base: KafkaSettings,
    es_base: ElasticsearchSettings,
    workdir: Path,
    rate: float,
    duration_s: float,
    warmup_s: float,
    batch_size: int,
    poll_ms: int,
    drain_s: float,
    partitions: int,
) -> dict[str, Any]:
    from callstream.infra.local_servers import free_port
    from callstream.infra.setup import setup
    from callstream.sinks.settings import SinkSettings
    from callstream.streams.settings import StreamSettings

    run_id = f"fresh{uuid.uuid4().hex[:6]}"
    kafka = kafka_base.model_copy(update={"topic_prefix": run_id})
    es = es_base.model_copy(update={"index_prefix": run_id})
    setup(kafka, es, partitions)
    env = dict(os.environ) | {
        "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CALLSTREAM_KAFKA_TOPIC_PREFIX": run_id,
        "CALLSTREAM_KAFKA_RECEIVE_MESSAGE_MAX_BYTES": str(kafka.receive_message_max_bytes),
        "CALLSTREAM_ES_URL": es.url,
        "CALLSTREAM_ES_INDEX_PREFIX": run_id,
        "CALLSTREAM_STREAM_APP_ID": f"{run_id}-stream",
        "CALLSTREAM_STREAM_PARTITIONS": str(partitions),
        "CALLSTREAM_STREAM_DATA_DIR": str(workdir / "stream-data"),
        "CALLSTREAM_SINK_GROUP_ID": f"{run_id}-sink",
        "PYTHONUNBUFFERED": "1",
    }
    workers = [
        _start(["stream", "--web-port", str(free_port())], env, workdir / "stream.log"),
        _start(["sink"], env, workdir / "sink.log"),
    ]
    run = Run()
    stop_polling, stop_publishing = threading.Event(), threading.Event()
    poller = threading.Thread(target=_poll, args=(es, run, poll_ms / 1000, stop_polling), daemon=True)
    try:
        poller.start()
        console.print(
            f"publishing {rate:,.0f} events/s for {duration_s:.0f} s (first {warmup_s:.0f} s: warm-up)"
        )
        _publish(kafka, run, rate, duration_s, batch_size, stop_publishing)
        total = len(run.handed_at)
        console.print(
            f"published {total:,} events in {run.publication_s:.1f} s; waiting for them in Elasticsearch"
        )
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            if run.calls and run.aggregated and min(run.calls[-1][1], run.aggregated[-1][1]) >= total:
                break
            for worker in workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker exited (rc={worker.returncode}); logs in {workdir}")
            time.sleep(0.5)
    finally:
        stop_publishing.set()
        stop_polling.set()
        poller.join(10)
        for worker in workers:
            stop_process(worker)
    t0 = run.handed_at[0] if run.handed_at else 0.0
    first = bisect.bisect_left(run.handed_at, t0 + warmup_s)
    calls = latencies_s(run.handed_at, run.calls, first)
    aggregated = latencies_s(run.handed_at, run.aggregated, first)
    measured = len(run.handed_at) - first
    sink, stream = SinkSettings(), StreamSettings()
    return {
        "rate_per_s": rate,
        "published": len(run.handed_at),
        "published_per_s": round(len(run.handed_at) / run.publication_s) if run.publication_s else None,
        "failed_messages": run.failed_messages,
        "measured_events": measured,
        "kept_up": len(calls) == measured and len(aggregated) == measured,
        "call_searchable": summary(calls),
        "aggregate_searchable": summary(aggregated),
        "settings": {
            "batch_size": batch_size,
            "poll_ms": poll_ms,
            "warmup_s": warmup_s,
            "partitions": partitions,
            "sink_index_refresh_interval": sink.index_refresh_interval,
            "sink_flush_interval_ms": sink.flush_interval_ms,
            "stream_flush_interval_ms": stream.flush_interval_ms,
        },
    }


def command(
    rate: float = typer.Option(5000.0, min=1, help="Events per second to publish"),
    duration_s: float = typer.Option(60.0, min=5, help="How long to publish"),
    warmup_s: float = typer.Option(10.0, min=0, help="Leave out the events of the first seconds"),
    batch_size: int = typer.Option(100, min=1, help="Events per raw Kafka message (per partition)"),
    poll_ms: int = typer.Option(100, min=10, help="How often Elasticsearch is asked"),
    drain_s: float = typer.Option(120.0, min=1, help="How long to wait for the backlog after publishing"),
    partitions: int = typer.Option(6, min=1, help="Partitions of the topics"),
    engine: str = typer.Option(
        "embedded", help="Local servers to start: embedded (noida-db) or real (Kafka and Elasticsearch; Java)"
    ),
    external: bool = typer.Option(False, help="Use the servers of CALLSTREAM_KAFKA_* and CALLSTREAM_ES_*"),
    keep_logs: bool = typer.Option(False, help="Keep the workers' logs (their path is printed)"),
) -> None:
    """Seconds from an event's publication until it is searchable (call and aggregate): p50/p95/p99."""
    with bench_workdir("freshness", keep_logs, console) as workdir:
        with _servers(engine, external, workdir) as (kafka, es, servers):
            console.print(f"servers: {servers}; work directory {workdir}")
            result = measure(
                kafka, es, workdir, rate, duration_s, warmup_s, batch_size, poll_ms, drain_s, partitions
            )
        result["servers"] = servers
        result["python"] = platform.python_version()
        result["cpus"] = os.cpu_count()
    for name in ("call_searchable", "aggregate_searchable"):
        figures = result[name]
        console.print(
            f"{name.replace('_', ' ')}: p50 {figures['p50_s']} s, p95 {figures['p95_s']} s, "
            f"p99 {figures['p99_s']} s, max {figures['max_s']} s"
        )
    console.print(
        f"published {result['published_per_s']} events/s of {rate:g} asked; kept up: {result['kept_up']}"
    )
    typer.echo(orjson.dumps(result).decode())
