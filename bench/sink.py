"""`callstream bench sink` (placeholder)."""

from __future__ import annotations


def command() -> None:
    """Benchmark the sink."""
    raise NotImplementedError
