"""`callstream bench otlp`'s bodies are what the receiver maps: distinct GenAI calls, none ignored."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.proto")

from bench.otlp import build_bodies
from callstream.producers.otlp_decode import decode_request
from callstream.producers.otlp_mapping import span_to_item


def test_bodies_are_distinct_genai_calls() -> None:
    bodies = build_bodies(3, 4, "run-1")
    items = [
        span_to_item(span) for body in bodies for span in decode_request(body, "application/x-protobuf").spans
    ]
    assert all(isinstance(item, dict) for item in items)
    ids = {item["event_id"] for item in items if isinstance(item, dict)}
    assert len(ids) == 12
    again = build_bodies(3, 4, "run-2")
    assert again[0] != bodies[0]
