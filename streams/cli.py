"""`callstream stream`: run one stream worker; start several (same settings) to scale out."""

from __future__ import annotations

import asyncio

import typer

from callstream import logs
from callstream.settings import KafkaSettings
from streams.settings import StreamSettings


def stream_command(
    partitions: int | None = typer.Option(None, help="Partitions of the raw and partials topics"),
    web_port: int | None = typer.Option(None, help="Port of faust's web server (bound to loopback)"),
    stop_when_idle_s: float | None = typer.Option(
        None, help="Exit cleanly after this many seconds without input (demos and tests)"
    ),
    replay: bool = typer.Option(False, help="Consume the replay topic instead of the raw topic"),
    generation: int | None = typer.Option(None, help="Replay generation (defaults to now, epoch seconds)"),
) -> None:
    """Validate, enrich and aggregate call events (a faust-streaming worker; stops on SIGTERM)."""
    import time

    import faust

    from streams.app import create_app

    overrides: dict[str, object] = {}
    if partitions is not None:
        overrides["partitions"] = partitions
    if web_port is not None:
        overrides["web_port"] = web_port
    if replay:
        overrides["source"] = "replay"
        overrides["generation"] = generation if generation is not None else int(time.time())
    settings = StreamSettings(**overrides)  # type: ignore[arg-type]
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # uvloop is optional (about +25% throughput)
        pass
    app, _ = create_app(settings, KafkaSettings(), stop_when_idle_s=stop_when_idle_s)
    logs.get(__name__).info("stream worker starting", app_id=app.conf.id, source=settings.source)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()
