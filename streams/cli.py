"""`callstream stream`: run one stream worker; start several (same settings) to scale out."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from datetime import UTC, datetime

import typer

from callstream import logs, topics
from callstream.progress import progress
from callstream.settings import KafkaSettings
from callstream.streams.settings import StreamSettings


def stream_command(
    partitions: int | None = typer.Option(None, help="Partitions of the raw and partials topics"),
    web_port: int | None = typer.Option(None, help="Port of faust's web server (bound to loopback)"),
    stop_when_idle_s: float | None = typer.Option(
        None, help="Exit cleanly after this many seconds without input (demos and tests)"
    ),
    replay: bool = typer.Option(False, help="Consume the replay topic instead of the raw topic"),
    generation: int | None = typer.Option(None, help="Replay generation (defaults to now, epoch seconds)"),
    replay_from: datetime | None = typer.Option(
        None, "--from", help="With --replay: first UTC day of the replayed range (its event-time bound)"
    ),
    replay_to: datetime | None = typer.Option(
        None, "--to", help="With --replay: UTC midnight after the replayed range"
    ),
) -> None:
    """Validate, enrich and aggregate call events (a faust-streaming worker; stops on SIGTERM)."""
    import time

    from callstream.streams import frame
    from callstream.streams.app import create_app
    from callstream.streams.replay import ReplayRangeError, check_range

    overrides: dict[str, object] = {}
    if partitions is not None:
        overrides["partitions"] = partitions
    if web_port is not None:
        overrides["web_port"] = web_port
    if replay:
        overrides["source"] = "replay"
        overrides["generation"] = generation if generation is not None else int(time.time())
        if replay_from is None or replay_to is None:
            raise typer.BadParameter("--replay needs --from and --to: the range is its event-time bound")
        try:
            start, end = check_range(replay_from, replay_to)
        except ReplayRangeError as exc:
            raise typer.BadParameter(str(exc)) from exc
        overrides["replay_from_ms"] = int(start.timestamp() * 1000)
        overrides["replay_to_ms"] = int(end.timestamp() * 1000)
    elif replay_from is not None or replay_to is not None:
        raise typer.BadParameter("--from and --to apply only with --replay")
    settings = StreamSettings(**overrides)  # type: ignore[arg-type]
    frame.use_uvloop()
    kafka = KafkaSettings()
    app, pipeline = create_app(settings, kafka, stop_when_idle_s=stop_when_idle_s)
    pipeline.metrics.serve_or_warn(settings.metrics_host, settings.metrics_port)
    try:
        frame.run(app, kafka, "stream", lambda: asdict(pipeline.counters), source=settings.source)
    finally:
        pipeline.metrics.close()


def replay_command(
    start: datetime = typer.Option(..., "--from", help="First UTC day to recompute (midnight)"),
    end: datetime = typer.Option(..., "--to", help="UTC midnight after the last day to recompute"),
    generation: int | None = typer.Option(None, help="Replay generation (default: now, epoch seconds)"),
    partitions: int = typer.Option(6, help="Partitions of the replay topics"),
    run: bool = typer.Option(True, help="Also run a replay worker until the copied range is processed"),
    idle_s: float = typer.Option(15.0, help="With --run: stop after this many idle seconds"),
) -> None:
    """Recompute a range of history (e.g. after a price correction) as a new, higher generation."""
    from callstream.infra.setup import create_topics
    from callstream.streams.replay import ReplayRangeError, check_range, copy_range, new_generation

    kafka = KafkaSettings()
    generation = generation if generation is not None else new_generation()
    try:
        start, end = check_range(start, end)
    except ReplayRangeError as exc:
        raise typer.BadParameter(str(exc)) from exc
    create_topics(kafka, partitions, specs=topics.replay_topic_specs(kafka, generation, partitions))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with progress() as bar:
        task = bar.add_task("replay copy", total=None)
        report = copy_range(
            kafka, start, end, generation, on_progress=lambda n: bar.advance(task, n), stop=stop
        )
    log = logs.get(__name__)
    log.info(
        "replay range copied",
        generation=generation,
        events=report.copied.events,
        scanned_messages=report.scanned_messages,
    )
    if stop.is_set():
        raise typer.Exit(1)
    if run:
        stream_command(
            partitions=partitions,
            web_port=None,
            stop_when_idle_s=idle_s,
            replay=True,
            generation=generation,
            replay_from=start,
            replay_to=end,
        )
    else:
        typer.echo(
            f"run: callstream stream --replay --generation {generation} "
            f"--from {start.date().isoformat()} --to {end.date().isoformat()}"
        )


prices_app = typer.Typer(
    no_args_is_help=True, help="The price catalogue the stream workers price calls with."
)


@prices_app.command("show")
def prices_show(
    model: str = typer.Argument(..., help="Model name as calls carry it (e.g. gpt-4.1-2025-04-14)"),
    at: str | None = typer.Option(None, "--at", help="Date or time (ISO 8601, UTC); default now"),
    profile: str | None = typer.Option(
        None, "--profile", help="list or gateway (default: CALLSTREAM_STREAM_PRICE_PROFILE, else list)"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of text"),
) -> None:
    """The price in force for MODEL at a time, and where it came from (override file, profile or
    genai-prices), as the stream worker with the same settings would price it."""
    import orjson

    from callstream.streams.catalogue import describe_price, load_catalogue
    from callstream.streams.enrich import normalise_model

    logs.configure(logs.LogSettings(level="WARNING"))
    try:
        moment = datetime.fromisoformat((at or datetime.now(UTC).isoformat()).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        overrides = {"price_profile": profile} if profile else {}
        settings = StreamSettings(**overrides)  # type: ignore[arg-type]
        catalogue = load_catalogue(settings)
    except ValueError as exc:
        typer.echo(f"callstream prices show: {exc}", err=True)
        raise typer.Exit(2) from None
    name = normalise_model(model)
    found = describe_price(catalogue.lookup(name, int(moment.timestamp() * 1000)), name, moment)
    found["profile"] = settings.price_profile
    found["override_files"] = [str(p) for p in settings.price_sources()]
    if as_json:
        typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    if not found["priced"]:
        typer.echo(
            f"{name} at {moment.isoformat()}: unpriced (no source knows it; profile {settings.price_profile})"
        )
        raise typer.Exit(1)
    prices = ", ".join(f"{k} ${v:g}" for k, v in found["usd_per_million_tokens"].items())
    typer.echo(f"{name} at {moment.isoformat()}: {prices} per million tokens")
    typer.echo(f"  price id {found['price_id']}, in force from {found['effective_from']}")
    typer.echo(
        f"  source {found['source']} (profile {settings.price_profile}; override files: "
        f"{', '.join(found['override_files']) or 'none'})"
    )
