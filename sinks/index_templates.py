"""Elasticsearch index templates for what the sink writes (placeholder, completed by the sink work)."""

from __future__ import annotations

from typing import Any

from callstream.settings import ElasticsearchSettings


def apply(client: Any, settings: ElasticsearchSettings) -> None:
    """Put the composable index templates (idempotent)."""
