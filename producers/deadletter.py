"""Dead letters: inputs that could not be accepted, kept with a reason a person can act on.

One shape for every stage (producer, ingest, stream, sink, alert), defined here, upstream of all
of them (`DeadLetter`). Whatever the input was (bytes that are not UTF-8, JSON nested too deep to
encode again, integers beyond 64 bits, a megabyte of text), a dead letter is built from it without
raising, is bounded in size (the original cut to `MAX_ORIGINAL_CHARS`, the reason to
`MAX_REASON_CHARS`), carries no secret (both pass through `redaction.scrub`), and always encodes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from callstream.producers.redaction import scrub

MAX_REASON_CHARS = 1_000
MAX_ORIGINAL_CHARS = 16_384
TRUNCATED = "…[truncated]"


class DeadLetter(BaseModel):
    """An input a stage could not accept: kept with the reason, never silently dropped."""

    reason: str = Field(max_length=MAX_REASON_CHARS)
    stage: str
    original: str = Field(
        max_length=MAX_ORIGINAL_CHARS, description="The input as text (JSON where it was JSON), cut"
    )
    original_bytes: int = Field(ge=0, description="Size of the whole original, before the cut")
    original_truncated: bool = False
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    batch_index: int | None = None
    source_file: str | None = None
    source_line: int | None = None
    detected_at: datetime


def bounded(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters, with a visible marker when cut."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(TRUNCATED))] + TRUNCATED


def original_text(original: Any) -> str:
    """Any input as text: bytes decoded (invalid UTF-8 replaced), JSON values encoded as JSON
    (falling back to a lenient encoder, then to repr, for what orjson refuses), text as is."""
    if original is None:
        return ""
    if isinstance(original, bytes | bytearray | memoryview):
        return bytes(original).decode("utf-8", "replace")
    if isinstance(original, str):
        return original
    try:
        return orjson.dumps(original, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:  # deeper than orjson's limit, or integers beyond 64 bits
        return json.dumps(original, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(original)[: MAX_ORIGINAL_CHARS * 2]


def dead_letter(
    reason: str,
    stage: str,
    original: Any,
    *,
    source_topic: str | None = None,
    source_partition: int | None = None,
    source_offset: int | None = None,
    batch_index: int | None = None,
    source_file: str | None = None,
    source_line: int | None = None,
    secrets: frozenset[str] = frozenset(),
    detected_at: datetime | None = None,
) -> dict[str, Any]:
    """A dead letter (the `DeadLetter` shape, as a JSON-ready dict). Never raises on any input."""
    text = original_text(original)
    size = len(text.encode("utf-8", "replace"))
    cut = bounded(text, MAX_ORIGINAL_CHARS)
    return {
        "reason": bounded(scrub(reason, secrets), MAX_REASON_CHARS),
        "stage": stage,
        "original": scrub(cut, secrets),
        "original_bytes": size,
        "original_truncated": len(cut) < len(text),
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "batch_index": batch_index,
        "source_file": source_file,
        "source_line": source_line,
        "detected_at": _iso(detected_at or datetime.now(UTC)),
    }


def encode_dead_letter(letter: dict[str, Any]) -> bytes:
    return orjson.dumps(letter)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
