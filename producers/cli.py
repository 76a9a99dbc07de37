"""Producer-side commands: the synthetic load generator and ingestion of existing call logs."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path

import typer

from callstream import logs, topics
from callstream.metrics import Metrics
from callstream.producers import synthetic
from callstream.producers.loadgen import publish
from callstream.progress import progress
from callstream.settings import KafkaSettings


def loadgen(
    events: int = typer.Option(10_000, help="How many calls to generate"),
    rate: float = typer.Option(0.0, help="Events per second of wall time; 0 = as fast as possible"),
    event_rate: float = typer.Option(200.0, help="Events per second of event time (spreads the timestamps)"),
    batch_size: int = typer.Option(500, help="Events packed into one Kafka message"),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same events"),
    start: datetime | None = typer.Option(
        None, help="Event time of the first call (UTC); default: just before now"
    ),
    late_share: float = typer.Option(0.0, help="Share of calls that arrive after their window closed"),
    invalid: bool = typer.Option(False, help="Also send a few invalid inputs (they must be dead-lettered)"),
) -> None:
    """Publish realistic synthetic LLM-call traffic to the raw topic."""
    kafka = KafkaSettings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    generated = synthetic.iter_events(
        events, seed=seed, start=start, rate_per_s=event_rate, late_share=late_share
    )
    with progress() as bar:
        task = bar.add_task("loadgen", total=events)
        report = publish(
            kafka,
            kafka.topic(topics.RAW),
            generated,
            batch_size=batch_size,
            rate_per_s=rate,
            on_progress=lambda n: bar.advance(task, n),
            stop=stop,
        )
        if invalid:
            publish(
                kafka, kafka.topic(topics.RAW), [bad for bad, _ in synthetic.invalid_inputs()], batch_size=100
            )
    logs.get(__name__).info(
        "loadgen done", events=report.events, messages=report.messages, failed_messages=report.failed_messages
    )
    if report.failed_messages:
        raise typer.Exit(1)


def ingest(
    paths: list[Path] = typer.Argument(
        ..., help="JSON-lines call logs (an LLM gateway client's log, or callstream's own events)"
    ),
    checkpoint: Path | None = typer.Option(
        None,
        help="Where read positions are kept (resume with no gap); default: a file per set of paths "
        "under the state directory (CALLSTREAM_STATE_DIR, else ~/.local/state/callstream)/ingest",
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep following growing (and rotated) files"),
    line_format: str = typer.Option(
        "auto", "--format", help="auto | gateway | callstream  ('seed' is a deprecated name of gateway)"
    ),
    naive_timezone: str = typer.Option("UTC", help="Zone of timestamps without one: UTC, Asia/Seoul, +09:00"),
    gateway_timestamp: str = typer.Option(
        "end",
        "--gateway-timestamp",
        "--seed-timestamp",
        help="A gateway log's `timestamp` marks the call's end (default) or start",
    ),
    batch_max_events: int = typer.Option(
        2_000, help="Lines packed into one unit of Kafka messages (also capped by bytes)"
    ),
    finish_timeout_s: float = typer.Option(
        60.0, help="How long to wait for Kafka's acknowledgements at the end"
    ),
) -> None:
    """Ingest JSON-lines call logs into the raw topic; bad lines go to the dead-letter topic."""
    from callstream.producers.gateway_log import parse_zone
    from callstream.producers.ingest import Ingestor

    log = logs.get(__name__)
    if line_format == "seed":
        log.warning("--format seed is deprecated: use --format gateway")
        line_format = "gateway"
    if line_format not in ("auto", "gateway", "callstream") or gateway_timestamp not in ("end", "start"):
        raise typer.BadParameter("--format must be auto|gateway|callstream and --gateway-timestamp end|start")
    if line_format == "gateway":
        # The stream workers price the calls, not ingest: say which price sheet these logs expect.
        log.info(
            "gateway logs: price them with the gateway profile",
            hint="run the stream workers with CALLSTREAM_STREAM_PRICE_PROFILE=gateway (docs/pricing.md)",
        )
    missing = [str(p) for p in paths if not p.exists() and not follow]
    if missing:
        raise typer.BadParameter(f"no such file: {', '.join(missing)}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ingestor = Ingestor(
        paths,
        checkpoint,
        line_format=line_format,  # type: ignore[arg-type]
        naive_zone=parse_zone(naive_timezone),
        gateway_timestamp=gateway_timestamp,  # type: ignore[arg-type]
        follow=follow,
        batch_max_events=batch_max_events,
    )
    metrics = Metrics("ingest")
    metrics.expose(lambda: vars(ingestor.stats), "Ingest counts since start", gauges=["unacknowledged"])
    metrics.serve_or_warn(ingestor.settings.metrics_host, ingestor.settings.metrics_port)
    metrics.set_healthy(True)  # a quiet followed file is no sign of trouble: no renewal needed
    try:
        with progress(unit="bytes") as bar:
            task = bar.add_task("ingest", total=None if follow else ingestor.bytes_remaining())
            stats = ingestor.run(
                stop, on_progress=lambda n: bar.advance(task, n), finish_timeout_s=finish_timeout_s
            )
    finally:
        metrics.close()
    log.info("ingest done", checkpoint=str(ingestor.checkpoint_path), **vars(stats))
    if stats.unacknowledged:
        raise typer.Exit(1)


def otlp(
    host: str | None = typer.Option(
        None, help="Address to listen on (CALLSTREAM_OTLP_HOST; default 127.0.0.1)"
    ),
    http_port: int | None = typer.Option(
        None, help="OTLP/HTTP port (CALLSTREAM_OTLP_HTTP_PORT; default 4318)"
    ),
    grpc_port: int | None = typer.Option(
        None, help="OTLP/gRPC port (CALLSTREAM_OTLP_GRPC_PORT; default 4317)"
    ),
    no_grpc: bool = typer.Option(False, "--no-grpc", help="Serve OTLP/HTTP only"),
    from_kafka: str | None = typer.Option(
        None,
        "--from-kafka",
        metavar="TOPIC",
        help="Read an OpenTelemetry Collector's kafka exporter topic (otlp_proto or otlp_json) instead "
        "of listening; the topic name is used as it is, without the callstream prefix",
    ),
    group_id: str = typer.Option("callstream-otlp", help="Consumer group of --from-kafka"),
) -> None:
    """Receive OpenTelemetry GenAI spans (OTLP/HTTP and OTLP/gRPC) and publish them as call events."""
    from callstream.producers.otlp_receiver import PUBLISHER_GAUGES, OtlpReceiver, exposed_counts, start
    from callstream.producers.publisher import KafkaPublisher
    from callstream.producers.settings import OtlpSettings, ProducerSettings

    log = logs.get(__name__)
    overrides = {
        key: value
        for key, value in (("host", host), ("http_port", http_port), ("grpc_port", grpc_port))
        if value is not None
    }
    settings = OtlpSettings().model_copy(update=overrides | ({"grpc_port": None} if no_grpc else {}))
    producer = ProducerSettings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    kafka = KafkaSettings()
    receiver = OtlpReceiver(KafkaPublisher(producer, kafka), settings, producer)
    metrics = Metrics("otlp")
    metrics.expose(exposed_counts(receiver), "OTLP receiver counts since start", gauges=PUBLISHER_GAUGES)
    if from_kafka is not None:
        from callstream.producers.otlp_kafka import KafkaSource

        source = KafkaSource(receiver, kafka, from_kafka, group_id)
        metrics.expose(lambda: vars(source.stats), "OTLP messages read from Kafka")
        metrics.serve_or_warn(settings.metrics_host, settings.metrics_port)
        metrics.set_healthy(True)
        try:
            source.run(stop)
        finally:
            receiver.publisher.close()
            metrics.close()
        log.info("otlp done", **receiver.stats.snapshot(), **vars(source.stats))
        return
    running = start(receiver)
    metrics.serve_or_warn(settings.metrics_host, settings.metrics_port)
    try:
        with progress() as bar:
            task = bar.add_task("otlp spans accepted", total=None)
            while not stop.wait(1.0):
                throttled = receiver.refusal()
                metrics.set_healthy(throttled is None, throttled.reason if throttled else "", ttl_s=10)
                bar.update(task, completed=receiver.stats.spans_accepted)
        log.info("stop requested: finishing the requests being handled, then publishing what is queued")
        running.stop()
    finally:
        metrics.close()
    publisher = receiver.publisher.stats()
    log.info(
        "otlp done", **receiver.stats.snapshot(), published=publisher.published, spooled=publisher.spooled
    )
    if publisher.dropped:
        raise typer.Exit(1)
