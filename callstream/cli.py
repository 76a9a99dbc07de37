"""The `callstream` command: one entry point, one sub-command group per stage of the flow."""

from __future__ import annotations

import typer

from callstream import logs

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _register() -> None:
    # Imported here so `callstream --help` stays fast and each stage owns its own commands.
    from infra.cli import demo, local_app, setup_command
    from producers.cli import app as producers_app
    from sinks.cli import sink_command
    from streams.cli import stream_command

    app.add_typer(local_app, name="local")
    app.command("setup")(setup_command)
    app.command("demo")(demo)
    app.command("stream")(stream_command)
    app.command("sink")(sink_command)
    app.registered_commands.extend(producers_app.registered_commands)
    app.add_typer(bench_app, name="bench")


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks, each against a baseline measured in the same run.")


def main() -> None:
    logs.configure()
    _register()
    app()
