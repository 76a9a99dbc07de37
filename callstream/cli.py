"""The `callstream` command: one entry point, one sub-command group per stage of the flow."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import typer

from callstream import logs

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks, each against a baseline measured in the same run."
)

# (module, attribute, command name): each stage owns its commands; imported lazily so that
# `callstream --help` stays fast and one stage's missing optional dependency breaks only its own command.
COMMANDS = [
    ("callstream.infra.cli", "setup_command", "setup"),
    ("callstream.infra.cli", "demo", "demo"),
    ("callstream.producers.cli", "loadgen", "loadgen"),
    ("callstream.producers.cli", "ingest", "ingest"),
    ("callstream.producers.cli", "otlp", "otlp"),
    ("callstream.streams.cli", "stream_command", "stream"),
    ("callstream.streams.cli", "replay_command", "replay"),
    ("callstream.sinks.cli", "sink_command", "sink"),
    ("callstream.topic_reader", "read_command", "read"),
]
GROUPS = [
    ("callstream.infra.cli", "local_app", "local"),
    ("callstream.reports.cli", "report_app", "report"),
    ("callstream.alerts.cli", "alert_app", "alert"),
    ("callstream.reports.bill.cli", "bill_app", "bill"),
    ("callstream.reports.bill.cli", "export_app", "export"),
    ("callstream.streams.cli", "prices_app", "prices"),
]
BENCHMARKS = [
    ("bench.producer", "command", "producer"),
    ("bench.stream", "command", "stream"),
    ("bench.sink", "command", "sink"),
    ("bench.freshness", "command", "freshness"),
    ("bench.alert", "command", "alert"),
    ("bench.otlp", "command", "otlp"),
]


SOURCE_CHECKOUT = Path(__file__).resolve().parent.parent
"""The repository this package was installed from (editable install): benchmarks live there, not
in what is installed."""


def _bench_path() -> None:
    """Benchmarks are a developer tool, not installed: they run from a source checkout."""
    if bench_missing(SOURCE_CHECKOUT) is None and str(SOURCE_CHECKOUT) not in sys.path:
        sys.path.append(str(SOURCE_CHECKOUT))


def bench_missing(checkout: Path) -> str | None:
    """Why `callstream bench` cannot run from this install, or None where it can."""
    if (checkout / "bench" / "__init__.py").exists():
        return None
    return (
        "benchmarks are not part of the installed package: they run from a source checkout of "
        "callstream (`scripts/bootstrap.sh dev`, then `.venv/bin/callstream bench NAME`)"
    )


def _unavailable(name: str, error: str) -> Any:
    def unavailable() -> None:
        typer.echo(f"callstream {name} is unavailable: {error}", err=True)
        raise typer.Exit(2)

    unavailable.__doc__ = f"(unavailable: {error})"
    return unavailable


def _load(module: str, attr: str, name: str) -> Any:
    """The command's function; if its module cannot load (a missing optional dependency, say), a
    stand-in that explains why, so one stage's problem never takes the other commands down."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        return _unavailable(name, f"{type(exc).__name__}: {exc}")


def _register() -> None:
    for module, attr, name in COMMANDS:
        app.command(name)(_load(module, attr, name))
    for module, attr, name in GROUPS:
        app.add_typer(getattr(importlib.import_module(module), attr), name=name)
    _bench_path()
    missing = bench_missing(SOURCE_CHECKOUT)
    for module, attr, name in BENCHMARKS:
        command = _unavailable(f"bench {name}", missing) if missing else _load(module, attr, f"bench {name}")
        bench_app.command(name)(command)
    app.add_typer(bench_app, name="bench")


def main() -> None:
    logs.configure()
    _register()
    app()


if __name__ == "__main__":
    main()
