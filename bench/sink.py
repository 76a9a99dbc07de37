"""`callstream bench sink`: the sink's docs/s from Kafka into Elasticsearch against the raw bulk limit.

The limit is the same documents written straight into the same server (a fresh index with the
same template) with `elasticsearch.helpers` bulk, no Kafka involved: what a Python client can get
out of that server. It is measured before and after every sink run (medians reported), and every
run's indices are deleted afterwards, because noida-db slows down as it holds more documents.
The sink's rate counts from its first consumed message to the acknowledgement of the last
document (group join excluded; reported apart as `sink_startup_s`).

Prints progress on stderr and, as the last line on stdout, one JSON object with the figures.
"""

from __future__ import annotations

import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import typer
from confluent_kafka import Producer
from elasticsearch import Elasticsearch, helpers
from elasticsearch.serializer import OrjsonSerializer
from rich.console import Console

from callstream import topics
from callstream.infra import local_servers
from callstream.infra.setup import create_topics
from callstream.progress import progress as progress_display
from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.sinks import index_templates
from callstream.sinks.cli import elasticsearch_sink
from callstream.sinks.documents import Documents, Origin
from callstream.sinks.settings import SinkSettings
from callstream.streams.contract import EnrichedCallEvent

console = Console(stderr=True)

MODELS = [
    ("gpt-4.1", "openai", 8.0),
    ("claude-sonnet-4-5", "anthropic", 15.0),
    ("gemini-2.5-flash", "google", 2.5),
    ("deepseek-v3.2", "deepseek", 0.42),
]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def enriched_events(n: int, seed: int = 7, days: int = 3) -> list[dict[str, Any]]:
    """Wire dicts of valid enriched events, built without pydantic (100k in a couple of seconds)."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    events = []
    for _ in range(n):
        model, provider, price = rng.choice(MODELS)
        event_time = start + timedelta(milliseconds=rng.randrange(days * 86_400_000))
        input_tokens, output_tokens = rng.randrange(1, 4000), rng.randrange(1, 1500)
        duration_ms = round(rng.uniform(80, 9000), 3)
        ok = rng.random() > 0.05
        input_cost, output_cost = input_tokens * price / 1e6, output_tokens * price / 1e6
        events.append(
            {
                "schema_version": 1,
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "event_time": _iso(event_time),
                "operation_name": "chat",
                "request_model": model,
                "response_model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "duration_ms": duration_ms,
                "status_code": 200 if ok else 429,
                "error_type": None if ok else "rate_limit_exceeded",
                "service_name": "support-bot",
                "user_id": f"user-{rng.randrange(1000)}",
                "session_id": f"session-{rng.randrange(100_000)}",
                "metadata": {"region": "ap-northeast-2"},
                "model": model,
                "model_version": model,
                "provider": provider,
                "model_family": model,
                "total_tokens": input_tokens + output_tokens,
                "latency_category": "fast"
                if duration_ms < 500
                else "normal"
                if duration_ms < 2000
                else "slow",
                "request_status": "success" if ok else "error",
                "error_category": None if ok else "rate_limit_exceeded",
                "priced": True,
                "price_id": f"{provider}/{model}",
                "cost_usd": input_cost + output_cost,
                "input_cost_usd": input_cost,
                "output_cost_usd": output_cost,
                "cost_per_token_usd": price / 1e6,
                "cost_pico": round((input_cost + output_cost) * 1e12),
                "time_bucket": _iso(event_time.replace(second=0, microsecond=0)),
                "client_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                "late": False,
            }
        )
    for event in events[:100]:  # the generator must speak the contract, or the benchmark measures errors
        EnrichedCallEvent.model_validate(event)
    return events


@contextmanager
def _servers(use_configured: bool, engine: str) -> Iterator[tuple[KafkaSettings, ElasticsearchSettings, str]]:
    if use_configured:
        kafka, es = KafkaSettings(), ElasticsearchSettings()
        yield kafka, es, f"configured ({kafka.bootstrap_servers})"
        return
    data_dir = Path(tempfile.mkdtemp(prefix="callstream-bench-sink-"))
    try:
        with local_servers.running(engine, data_dir / engine) as srv:
            yield srv.kafka_settings(), srv.es_settings(), f"{engine} engine"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def server_version(nodes_info: dict[str, Any]) -> str:
    """The Elasticsearch version in a `GET /_nodes/_local` answer.

    Ask for `_local`, not for the metric `_none`: Elasticsearch reads `/_nodes/_none` as a node id
    that matches no node and answers with no nodes (noida-db reads it as a metric)."""
    nodes = nodes_info.get("nodes") or {}
    if not nodes:
        raise RuntimeError(f"Elasticsearch described no node: {nodes_info.get('_nodes')}")
    return str(next(iter(nodes.values()))["version"])


def produce(kafka: KafkaSettings, topic: str, events: list[dict[str, Any]], per_message: int) -> None:
    producer = Producer(
        kafka.confluent_config() | {"compression.type": "lz4", "linger.ms": 20, "acks": "all"}
    )
    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    with progress_display(rate=True, console=console) as progress:
        task = progress.add_task("produce", total=len(events), rate="")
        for i in range(0, len(events), per_message):
            chunk = events[i : i + per_message]
            while True:
                try:
                    producer.produce(topic, value=orjson.dumps(chunk), on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            progress.advance(task, len(chunk))
        if producer.flush(120) or errors:
            raise RuntimeError(f"pre-producing failed: {len(errors)} delivery errors, e.g. {errors[:1]}")


def raw_bulk_rate(
    es_settings: ElasticsearchSettings, events: list[dict[str, Any]], chunk_size: int, threads: int
) -> float:
    """docs/s of elasticsearch.helpers into a fresh index prefix with the sink's templates."""
    prefix = f"{es_settings.index_prefix}-limit{uuid.uuid4().hex[:6]}"
    settings = es_settings.model_copy(update={"index_prefix": prefix})
    client = Elasticsearch(
        **settings.client_kwargs() | {"request_timeout": 300},
        serializers={"application/json": OrjsonSerializer()},
    )
    try:
        index_templates.apply(client, settings)
        documents = Documents(prefix)
        origin = Origin("bench", 0, 0)
        # Index names as the sink computes them, prepared before the clock starts.
        actions = [
            {"_index": documents.enriched_event(e, origin).index, "_id": e["event_id"], "_source": e}
            for e in events
        ]
        with progress_display(rate=True, console=console) as progress:
            task = progress.add_task(
                f"limit (chunk {chunk_size}, {threads} thread(s))", total=len(events), rate=""
            )
            started = time.perf_counter()
            if threads > 1:
                results = helpers.parallel_bulk(
                    client, actions, chunk_size=chunk_size, thread_count=threads, max_chunk_bytes=100 << 20
                )
            else:
                results = helpers.streaming_bulk(
                    client, actions, chunk_size=chunk_size, max_chunk_bytes=100 << 20
                )
            done = 0
            for ok, info in results:
                if not ok:
                    raise RuntimeError(f"baseline bulk item failed: {info}")
                done += 1
                if done % chunk_size == 0:
                    elapsed = time.perf_counter() - started
                    progress.update(task, completed=done, rate=f"{done / elapsed:,.0f} docs/s")
            elapsed = time.perf_counter() - started
            progress.update(task, completed=done, rate=f"{done / elapsed:,.0f} docs/s")
        return len(events) / elapsed
    finally:
        drop_indices(client, prefix)
        client.close()


def drop_indices(client: Elasticsearch, prefix: str) -> None:
    """Leave the server as it was: noida-db gets slower the more documents it holds."""
    names = list(client.indices.get(index=f"{prefix}-*", expand_wildcards="all"))
    if names:
        client.indices.delete(index=",".join(names))


@dataclass
class SinkRun:
    docs_per_s: float
    startup_s: float
    wall_s: float
    stats: dict[str, Any]


def sink_rate(kafka: KafkaSettings, es: ElasticsearchSettings, sink: SinkSettings, docs: int) -> SinkRun:
    """Run the sink in this process until `docs` documents are acknowledged."""
    worker = elasticsearch_sink(kafka, es, sink)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["stats"] = worker.run(stop_after_docs=docs)
        except BaseException as exc:  # reported on the main thread
            outcome["error"] = exc

    previous = signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    started = time.monotonic()
    thread = threading.Thread(target=run, name="sink", daemon=True)
    thread.start()
    try:
        with progress_display(rate=True, console=console) as progress:
            task = progress.add_task("sink", total=docs, rate="")
            while thread.is_alive():
                thread.join(0.5)
                stats = worker.stats
                begun = stats.first_message_at
                rate = stats.done / (time.monotonic() - begun) if begun else 0.0
                progress.update(task, completed=stats.done, rate=f"{rate:,.0f} docs/s")
    except KeyboardInterrupt:
        worker.request_stop()
        thread.join()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if "error" in outcome:
        raise outcome["error"]
    stats = outcome["stats"]
    if stats.done < docs or stats.first_message_at is None or stats.last_ack_at is None:
        raise RuntimeError(f"sink stopped after {stats.done} of {docs} documents")
    return SinkRun(
        docs_per_s=stats.done / (stats.last_ack_at - stats.first_message_at),
        startup_s=stats.first_message_at - started,
        wall_s=stats.last_ack_at - started,
        stats=stats.as_dict(),
    )


def command(
    docs: int = typer.Option(100_000, help="Enriched events to write"),
    events_per_message: int = typer.Option(
        500, help="Events per Kafka message (the stream publishes arrays)"
    ),
    partitions: int = typer.Option(6, help="Partitions of the fresh enriched topic"),
    chunk_size: int = typer.Option(2000, help="Bulk chunk size of the raw helpers baseline"),
    baseline_threads: int = typer.Option(
        4, help="1: streaming_bulk; more: parallel_bulk with that many threads"
    ),
    batch_max_docs: int | None = typer.Option(
        None, help="Sink batch size (default: CALLSTREAM_SINK_* settings)"
    ),
    max_in_flight_requests: int | None = typer.Option(None, help="Sink parallel bulks (default: settings)"),
    http_compress: bool | None = typer.Option(None, help="Sink request compression (default: settings)"),
    rounds: int = typer.Option(
        1, min=1, help="Sink runs, each followed by another limit run; medians reported"
    ),
    use_configured: bool = typer.Option(
        False, "--use-configured", help="Use the CALLSTREAM_* servers instead of fresh local ones"
    ),
    engine: str = typer.Option(
        "embedded",
        help="Local servers to start: embedded (noida-db) or real (Kafka and Elasticsearch; Java)",
    ),
) -> None:
    """Sink docs/s from Kafka into Elasticsearch vs the raw elasticsearch.helpers bulk rate."""
    overrides = {
        "batch_max_docs": batch_max_docs,
        "max_in_flight_requests": max_in_flight_requests,
        "http_compress": http_compress,
    }
    console.print(f"generating {docs:,} enriched events")
    events = enriched_events(docs)
    with _servers(use_configured, engine) as (kafka_base, es_base, broker):
        run_id = f"bench{uuid.uuid4().hex[:6]}"
        kafka = kafka_base.model_copy(update={"topic_prefix": run_id})
        es = es_base.model_copy(update={"index_prefix": run_id})
        sink = SinkSettings(
            group_id=f"{run_id}-sink",
            stats_interval_s=30,
            **{k: v for k, v in overrides.items() if v is not None},  # type: ignore[arg-type]
        )
        create_topics(kafka, partitions=partitions)
        with es.client() as client:
            index_templates.apply(client, es, sink)
            # nodes.info, not info(): the real engine's node has no `GET /` (docs/engines.md)
            es_version = server_version(client.nodes.info(node_id="_local").body)
        produce(kafka, kafka.topic(topics.ENRICHED), events, events_per_message)

        # limit, sink, limit, sink, ..., limit: each sink run between two limit runs on the same server.
        limits = [raw_bulk_rate(es, events, chunk_size, baseline_threads)]
        runs: list[SinkRun] = []
        for round_no in range(rounds):
            group = sink.model_copy(update={"group_id": f"{run_id}-sink-{round_no}"})
            runs.append(sink_rate(kafka, es, group, docs))
            with es.client() as client:
                drop_indices(client, run_id)
            limits.append(raw_bulk_rate(es, events, chunk_size, baseline_threads))
    limit = statistics.median(limits)
    run = sorted(runs, key=lambda r: r.docs_per_s)[(len(runs) - 1) // 2]  # the lower median: no flattery
    console.print(
        f"sink {run.docs_per_s:,.0f} docs/s vs raw bulk {limit:,.0f} docs/s ({run.docs_per_s / limit:.0%}); "
        f"limit runs: {', '.join(f'{x:,.0f}' for x in limits)}; sink runs: "
        + ", ".join(f"{r.docs_per_s:,.0f}" for r in runs)
    )
    result = {
        "docs": docs,
        "docs_per_s": round(run.docs_per_s),
        "limit_docs_per_s": round(limit),
        "ratio": round(run.docs_per_s / limit, 3),
        "broker": broker,
        "elasticsearch": es_version,
        "limit_runs_docs_per_s": [round(x) for x in limits],
        "sink_runs_docs_per_s": [round(r.docs_per_s) for r in runs],
        "limit_method": f"{'parallel_bulk' if baseline_threads > 1 else 'streaming_bulk'} chunk {chunk_size}"
        + (f" x{baseline_threads} threads" if baseline_threads > 1 else ""),
        "sink_startup_s": round(run.startup_s, 2),
        "sink_wall_s": round(run.wall_s, 2),
        "sink_settings": {
            "batch_max_docs": sink.batch_max_docs,
            "batch_max_bytes": sink.batch_max_bytes,
            "max_in_flight_requests": sink.max_in_flight_requests,
            "http_compress": sink.http_compress,
        },
        "sink_stats": run.stats,
        "events_per_message": events_per_message,
        "partitions": partitions,
    }
    typer.echo(orjson.dumps(result).decode())
