"""Sink commands (placeholder, built by the sink work)."""

from __future__ import annotations


def sink_command() -> None:
    """Run the Elasticsearch sink worker."""
    raise NotImplementedError
