"""`callstream bench producer` (placeholder)."""

from __future__ import annotations


def command() -> None:
    """Benchmark the producer."""
    raise NotImplementedError
