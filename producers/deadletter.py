"""Dead letters: inputs that could not be accepted, kept with a reason a person can act on.

One shape for every stage (producer, ingest, stream, sink, alert), defined here, upstream of all
of them (`DeadLetter`). Whatever the input was (bytes that are not UTF-8, JSON nested too deep to
encode again, integers beyond 64 bits, a megabyte of text), a dead letter is built from it without
raising, is bounded in size (the original cut to `MAX_ORIGINAL_CHARS`, the reason to
`MAX_REASON_CHARS`; a huge original is never decoded whole), carries no secret (a JSON original is
redacted by key and pattern with `redaction.redact`, any other text is scrubbed with
`redaction.scrub`, and so is the reason), and always encodes.

A stage that knows the contract of its input passes its fields (`fields=`): a JSON original then
keeps only those, its metadata scrubbed and bounded, and every other field is dropped and named
under `callstream.dropped` (prepare.known_fields_only), so that a prompt or a response logged
beside an event is never kept, indexed or searchable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from callstream.producers.prepare import Fields, Policy, known_fields_only
from callstream.producers.redaction import (
    SCRUB_MARGIN_CHARS,
    redact,
    scrub,
    scrub_bounded,
    truncate,
)

MAX_REASON_CHARS = 1_000
MAX_ORIGINAL_CHARS = 16_384
STRUCTURED_MAX_BYTES = 1 << 20
"""A text or bytes original up to this size that is JSON is parsed, so that its values under
sensitive keys are redacted; a larger one is only cut and scrubbed as text."""


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


TEXT_CAP_CHARS = MAX_ORIGINAL_CHARS + SCRUB_MARGIN_CHARS


def original_text(original: Any, max_chars: int = TEXT_CAP_CHARS) -> str:
    """Any input as text of at most about `max_chars` characters: bytes decoded (invalid UTF-8
    replaced, only the head of a huge one), JSON values encoded as JSON (falling back to a lenient
    encoder, then to repr, for what orjson refuses), text as is."""
    if original is None:
        return ""
    if isinstance(original, bytes | bytearray | memoryview):
        return bytes(original[: max_chars * 4]).decode("utf-8", "replace")[:max_chars]
    if isinstance(original, str):
        return original[:max_chars]
    try:
        return orjson.dumps(original, option=orjson.OPT_NON_STR_KEYS, default=str).decode()[:max_chars]
    except Exception:  # an object whose str() raises, too deep, ...: the next encoder
        pass
    try:  # deeper than orjson's limit, or integers beyond 64 bits
        return json.dumps(original, default=str, ensure_ascii=False)[:max_chars]
    except Exception:
        pass
    try:
        return repr(original)[:max_chars]
    except Exception:
        return f"[unprintable {type(original).__name__}]"


def _size(original: Any, text: str) -> int:
    if isinstance(original, bytes | bytearray | memoryview):
        return len(original)
    if isinstance(original, str):
        return len(original.encode("utf-8", "replace"))
    return len(text.encode("utf-8", "replace"))


def _structured(original: Any) -> Any:
    """The original as a JSON value (dict/list), parsed from text or bytes when it is JSON and not
    too large; None when it is not a JSON object or array."""
    if isinstance(original, dict | list | tuple):
        return original
    if isinstance(original, str):
        if len(original) > STRUCTURED_MAX_BYTES or original.lstrip()[:1] not in ("{", "["):
            return None
    elif isinstance(original, bytes | bytearray | memoryview):
        if len(original) > STRUCTURED_MAX_BYTES or bytes(original[:64]).lstrip()[:1] not in (b"{", b"["):
            return None
        original = bytes(original)
    else:
        return None
    try:
        parsed = orjson.loads(original)
    except (orjson.JSONDecodeError, TypeError):
        return None
    return parsed if isinstance(parsed, dict | list) else None


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
    fields: Fields | None = None,
) -> dict[str, Any]:
    """A dead letter (the `DeadLetter` shape, as a JSON-ready dict). Never raises on any input.

    A JSON original (a dict or list, or text/bytes holding one) is cut to `fields` when given (each
    object of a batch alike), then redacted by key and pattern; when nothing needed changing, text
    keeps its exact original form."""
    text = original_text(original)
    size = _size(original, text)
    structured = _structured(original)
    if structured is not None:
        known = _known(structured, fields, secrets) if fields is not None else structured
        clean = redact(known, secrets)
        if clean != structured or not isinstance(original, str | bytes | bytearray | memoryview):
            text = original_text(clean)
    head_only = len(text) >= TEXT_CAP_CHARS
    scrubbed = _encodable(scrub(text, secrets))
    cut = truncate(scrubbed, MAX_ORIGINAL_CHARS)
    return {
        "reason": _encodable(scrub_bounded(reason, MAX_REASON_CHARS, secrets)),
        "stage": stage,
        "original": cut,
        "original_bytes": size,
        "original_truncated": head_only or len(scrubbed) > MAX_ORIGINAL_CHARS,
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "batch_index": batch_index,
        "source_file": source_file,
        "source_line": source_line,
        "detected_at": _iso(detected_at or datetime.now(UTC)),
    }


def _known(structured: Any, fields: Fields, secrets: frozenset[str]) -> Any:
    """A JSON original with only the contract's fields in each object (of a batch, each item)."""
    policy = Policy(secrets=tuple(secrets))
    try:
        if isinstance(structured, Mapping):
            return known_fields_only(structured, fields, policy)
        return [
            known_fields_only(item, fields, policy)
            if isinstance(item, Mapping)
            else item
            if item is None or isinstance(item, str | bool | int | float)
            else f"[{type(item).__name__} dropped]"
            for item in structured
        ]
    except Exception:  # never raise: an original that cannot be cut is left out rather than kept
        return "[original could not be cut to its contract's fields; left out]"


def _encodable(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate (from a decoded JSON escape like "\\ud800") becomes '?'."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def encode_dead_letter(letter: dict[str, Any]) -> bytes:
    return orjson.dumps(letter)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
