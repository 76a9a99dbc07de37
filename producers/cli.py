"""Producer-side commands: the synthetic load generator and ingestion of existing call logs."""

from __future__ import annotations

import typer


def loadgen() -> None:
    """Publish synthetic call events (placeholder)."""
    raise typer.Exit(1)


def ingest() -> None:
    """Ingest JSON-lines call logs (placeholder, built by the producer work)."""
    raise typer.Exit(1)
