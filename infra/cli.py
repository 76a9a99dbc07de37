"""Commands to run callstream: local servers, setup of any cluster, and the end-to-end demo."""

from __future__ import annotations

from pathlib import Path

import typer

from callstream.infra import local_servers
from callstream.infra.demo import DEMO_DATA_DIR, render, run_demo
from callstream.infra.setup import setup
from callstream.literal import data_console
from callstream.producers.settings import ProducerSettings
from callstream.settings import ElasticsearchSettings, KafkaSettings

local_app = typer.Typer(
    no_args_is_help=True,
    help="Local Kafka + Elasticsearch on loopback: embedded (noida-db, the default) or real (Java).",
)

ENGINE_HELP = (
    "embedded: noida-db, pure pip, starts in a second, emulates both servers (docs/engines.md lists its "
    "gaps). real: Apache Kafka 4.1 (KRaft, 512 MB heap) and Elasticsearch 8.19 (1 GB heap), needs "
    "Java 17+ and Maven once"
)


def _fail(exc: local_servers.LocalServersError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@local_app.command("up")
def local_up(
    engine: str = typer.Option(local_servers.DEFAULT_ENGINE, help=ENGINE_HELP),
    data_dir: Path = typer.Option(local_servers.DEFAULT_DATA_DIR, help="Where the servers keep their data"),
    kafka_port: int = typer.Option(9092, help="Kafka port on loopback"),
    es_port: int = typer.Option(9200, help="Elasticsearch port on loopback"),
    fresh: bool = typer.Option(False, help="Delete existing data first"),
    partitions: int = typer.Option(6, help="Partitions per topic"),
) -> None:
    """Start the local servers, wait until both answer, create topics and index templates."""
    try:
        srv = local_servers.up(data_dir, kafka_port, es_port, fresh=fresh, engine_name=engine)
    except local_servers.LocalServersError as exc:
        raise _fail(exc) from None
    setup(srv.kafka_settings(), srv.es_settings(), partitions)
    typer.echo(f"Kafka         {srv.bootstrap_servers}\nElasticsearch {srv.es_url}\n({srv.engine} engine)")
    typer.echo("Point callstream at them with:")
    for key, value in srv.env().items():
        typer.echo(f"  export {key}={value}")


@local_app.command("down")
def local_down(data_dir: Path = typer.Option(local_servers.DEFAULT_DATA_DIR)) -> None:
    """Stop the local servers of DATA_DIR, whichever engine runs them (their data stays)."""
    try:
        local_servers.down(data_dir)
    except local_servers.LocalServersError as exc:
        raise _fail(exc) from None
    typer.echo("local servers stopped")


@local_app.command("status")
def local_status(data_dir: Path = typer.Option(local_servers.DEFAULT_DATA_DIR)) -> None:
    """Show whether the local servers of DATA_DIR run, and where."""
    typer.echo(local_servers.status(data_dir))


def setup_command(
    partitions: int | None = typer.Option(
        None,
        min=1,
        help="Partitions per topic; default CALLSTREAM_STREAM_PARTITIONS (6), the count the stream "
        "workers are configured with: the two must agree",
    ),
) -> None:
    """Create topics and index templates on the configured (possibly external) Kafka and Elasticsearch."""
    from callstream.streams.settings import StreamSettings

    count = partitions if partitions is not None else StreamSettings().partitions
    setup(KafkaSettings(), ElasticsearchSettings(), count)
    typer.echo(f"topics ({count} partitions) and index templates are in place")
    typer.echo("what producers configured like this shell keep (see docs/producer.md, Privacy):")
    for line in ProducerSettings().privacy_summary():
        typer.echo(f"  {line}")


def demo(
    events: int = typer.Option(50_000, help="How many synthetic calls to send through the pipeline"),
    engine: str = typer.Option(local_servers.DEFAULT_ENGINE, help=ENGINE_HELP),
    keep_servers: bool = typer.Option(False, help="Leave the local servers running afterwards"),
    data_dir: Path = typer.Option(DEMO_DATA_DIR, help="Where the demo's local servers keep their data"),
) -> None:
    """The main job end to end: local servers, load generator, stream and sink workers, per-model table."""
    console = data_console()
    if not console.is_terminal:
        console = data_console(width=120)  # the table is wider than a pipe's default 80 columns
    try:
        report = run_demo(
            events=events, keep_servers=keep_servers, data_dir=data_dir, console=console, engine=engine
        )
    except local_servers.LocalServersError as exc:
        raise _fail(exc) from None
    render(report, console)
