"""The `callstream` command: one entry point, one sub-command group per stage of the flow."""

from __future__ import annotations

import importlib

import typer

from callstream import logs

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks, each against a baseline measured in the same run."
)

# (module, attribute, command name): each stage owns its commands; imported lazily so that
# `callstream --help` stays fast and one stage's missing optional dependency breaks only its own command.
COMMANDS = [
    ("infra.cli", "setup_command", "setup"),
    ("infra.cli", "demo", "demo"),
    ("producers.cli", "loadgen", "loadgen"),
    ("producers.cli", "ingest", "ingest"),
    ("streams.cli", "stream_command", "stream"),
    ("streams.cli", "replay_command", "replay"),
    ("sinks.cli", "sink_command", "sink"),
]
GROUPS = [("infra.cli", "local_app", "local")]
BENCHMARKS = [
    ("bench.producer", "command", "producer"),
    ("bench.stream", "command", "stream"),
    ("bench.sink", "command", "sink"),
]


def _register() -> None:
    for module, attr, name in COMMANDS:
        app.command(name)(getattr(importlib.import_module(module), attr))
    for module, attr, name in GROUPS:
        app.add_typer(getattr(importlib.import_module(module), attr), name=name)
    for module, attr, name in BENCHMARKS:
        bench_app.command(name)(getattr(importlib.import_module(module), attr))
    app.add_typer(bench_app, name="bench")


def main() -> None:
    logs.configure()
    _register()
    app()


if __name__ == "__main__":
    main()
