"""`callstream bench stream` (placeholder)."""

from __future__ import annotations


def command() -> None:
    """Benchmark the stream."""
    raise NotImplementedError
