"""Streams: validate and enrich raw call events, and keep windowed aggregates (faust-streaming)."""
