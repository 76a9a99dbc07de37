"""Stream worker command (placeholder)."""

from __future__ import annotations


def stream_command() -> None:
    """Run a stream worker."""
    raise NotImplementedError
