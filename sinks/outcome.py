"""What a bulk response means for each document: done, retry, or dead-letter. Pure.

Retryable: 429 (Elasticsearch is overloaded), 5xx, no status, and whole-request failures such as
refused connections. Rejected (dead-lettered, never retried): other per-item 4xx, e.g. a mapping
error; a poison document must not block its partition. A 409 version conflict on an externally
versioned document is success: a newer version is already stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from callstream.sinks.documents import Doc, Failure


class ItemOutcome(enum.Enum):
    INDEXED = "indexed"
    SUPERSEDED = "superseded"  # 409 on an externally versioned doc: a newer version is stored
    RETRY = "retry"
    REJECTED = "rejected"


class RequestOutcome(enum.Enum):
    RETRY = "retry"
    SPLIT = "split"  # the request as a whole was refused (400, 413): halve it to isolate the culprit


def classify_item(status: int | None, versioned: bool) -> ItemOutcome:
    if status is None:
        return ItemOutcome.RETRY
    if 200 <= status < 300:
        return ItemOutcome.INDEXED
    if status == 409 and versioned:
        return ItemOutcome.SUPERSEDED
    if status == 429 or status >= 500:
        return ItemOutcome.RETRY
    if 400 <= status < 500:
        return ItemOutcome.REJECTED
    return ItemOutcome.RETRY


def classify_request(status: int | None) -> RequestOutcome:
    """A failed bulk request. Anything but a refusal of the body itself is retried (401/403 too:
    credentials get fixed, data must not be dropped meanwhile)."""
    if status in (400, 413):
        return RequestOutcome.SPLIT
    return RequestOutcome.RETRY


def error_text(error: Any) -> tuple[str, str]:
    """(error type, human reason) from a bulk item's `error`, including the nested cause."""
    if not isinstance(error, Mapping):
        return "unknown", str(error)
    error_type = str(error.get("type", "unknown"))
    reason = f"{error_type}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, Mapping):
        reason += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
    return error_type, reason


@dataclass(slots=True)
class BulkSplit:
    indexed: list[Doc] = field(default_factory=list)
    superseded: list[Doc] = field(default_factory=list)
    retry: list[Doc] = field(default_factory=list)
    rejected: list[Failure] = field(default_factory=list)


def rejection(doc: Doc, status: int | None, error: Any) -> Failure:
    error_type, reason = error_text(error)
    try:
        original: Any = orjson.loads(doc.source)
    except orjson.JSONDecodeError:
        original = doc.source.decode("utf-8", "replace")
    return Failure(reason, error_type, original, doc.origin, doc.item, status, doc.index, doc.id)


def split_response(docs: Sequence[Doc], items: Sequence[Mapping[str, Any]]) -> BulkSplit:
    """Sort a bulk response's items (same order as the request) by outcome."""
    result = BulkSplit()
    if len(items) != len(docs):  # a malformed answer: trust nothing, send everything again
        result.retry.extend(docs)
        return result
    for doc, wrapped in zip(docs, items, strict=True):
        item: Mapping[str, Any] = next(iter(wrapped.values()), {}) if wrapped else {}
        status = item.get("status")
        outcome = classify_item(status if isinstance(status, int) else None, doc.version is not None)
        if outcome is ItemOutcome.INDEXED:
            result.indexed.append(doc)
        elif outcome is ItemOutcome.SUPERSEDED:
            result.superseded.append(doc)
        elif outcome is ItemOutcome.RETRY:
            result.retry.append(doc)
        else:
            result.rejected.append(rejection(doc, status, item.get("error")))
    return result


def backoff_s(attempt: int, min_ms: int, max_ms: int, jitter: float) -> float:
    """Capped exponential backoff with jitter: half fixed, half random (`jitter` in [0, 1))."""
    cap_ms = min(max_ms, min_ms * 2 ** min(attempt, 32))
    return (cap_ms / 2 + jitter * cap_ms / 2) / 1000
