"""Producer-side commands: the synthetic load generator and ingestion of existing call logs."""

from __future__ import annotations

import signal
import threading
from datetime import datetime

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from callstream import logs, topics
from callstream.settings import KafkaSettings
from producers import synthetic
from producers.loadgen import publish


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
    with Progress(
        TextColumn("loadgen"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    ) as progress:
        task = progress.add_task("events", total=events)
        report = publish(
            kafka,
            kafka.topic(topics.RAW),
            generated,
            batch_size=batch_size,
            rate_per_s=rate,
            on_progress=lambda n: progress.advance(task, n),
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


def ingest() -> None:
    """Ingest JSON-lines call logs (placeholder, built by the producer work)."""
    raise typer.Exit(1)
