"""Map one JSON log line onto RawCallEvent fields: the seed client's format or callstream's own.

The seed client (NOTES.md §1) writes one object per call: log_id, timestamp, model, endpoint,
request_tokens, response_tokens, total_tokens, response_time_ms, status_code, error_message,
cost_usd, session_id, user_id, metadata. Its `timestamp` is taken when the line is written, after
the response, so by default the call's start is `timestamp - response_time_ms`. Naive timestamps
are read in a configurable zone (UTC by default). `cost_usd` is kept as `reported_cost_usd`:
callstream prices every call itself downstream and can reconcile the two.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from callstream.producers.outcome import http_outcome

LineFormat = Literal["auto", "seed", "callstream"]
SeedTimestamp = Literal["end", "start"]

SEED_KEYS = frozenset({"log_id", "response_time_ms", "request_tokens"})
_OPERATION_BY_PATH = (
    ("/embeddings", "embeddings"),
    ("/chat/completions", "chat"),
    ("/completions", "text_completion"),
)


def parse_zone(name: str) -> tzinfo:
    """'UTC', an IANA name ('Asia/Seoul') or a fixed offset ('+09:00')."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    if name[:1] in "+-":
        sign = 1 if name[0] == "+" else -1
        hours, _, minutes = name[1:].partition(":")
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
    return ZoneInfo(name)


def parse_time(value: Any, naive_zone: tzinfo) -> datetime:
    """ISO-8601 (with or without zone, 'Z' allowed) or epoch seconds / milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a timestamp: {value!r}")
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    return parsed.astimezone(UTC)


def detect(doc: dict[str, Any]) -> Literal["seed", "callstream"]:
    return "seed" if SEED_KEYS & doc.keys() and "event_time" not in doc else "callstream"


def line_event_id(line: bytes, line_number: int) -> str:
    """A stable id for a line that has none, so that re-reading it never makes a second event."""
    return hashlib.sha256(line + b"\x00" + str(line_number).encode()).hexdigest()[:32]


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def seed_fields(
    doc: dict[str, Any], naive_zone: tzinfo = UTC, timestamp: SeedTimestamp = "end"
) -> dict[str, Any]:
    """Seed log record -> RawCallEvent fields (validated later, like any recorded call)."""
    if "timestamp" not in doc:
        raise ValueError("seed record has no timestamp")
    duration_ms = float(doc.get("response_time_ms") or 0.0)
    written = parse_time(doc["timestamp"], naive_zone)
    event_time = written - timedelta(milliseconds=duration_ms) if timestamp == "end" else written
    status = doc.get("status_code")
    status_code = int(status) if status not in (None, "", 0) else None
    fields: dict[str, Any] = {
        "event_time": event_time,
        "request_model": doc.get("model"),
        "input_tokens": int(doc.get("request_tokens") or 0),
        "output_tokens": int(doc.get("response_tokens") or 0),
        "duration_ms": duration_ms,
        "status_code": status_code,
        "error_type": http_outcome(status_code),
        "error_message": _blank_to_none(doc.get("error_message")),
        "session_id": _blank_to_none(doc.get("session_id")),
        "user_id": _blank_to_none(doc.get("user_id")),
        "metadata": dict(doc.get("metadata") or {}),
    }
    if doc.get("log_id"):
        fields["event_id"] = str(doc["log_id"])
    cost = doc.get("cost_usd")
    if cost is not None:
        fields["reported_cost_usd"] = float(cost)
    endpoint = doc.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        url = urlsplit(endpoint)
        fields["server_address"] = url.hostname or None
        for suffix, operation in _OPERATION_BY_PATH:
            if url.path.endswith(suffix):
                fields["operation_name"] = operation
                break
    total = doc.get("total_tokens")
    if isinstance(total, int) and total != fields["input_tokens"] + fields["output_tokens"]:
        fields["metadata"]["seed.total_tokens"] = total  # kept visible: the seed's own total disagrees
    return fields


def line_fields(
    doc: dict[str, Any],
    line_format: LineFormat = "auto",
    naive_zone: tzinfo = UTC,
    seed_timestamp: SeedTimestamp = "end",
) -> dict[str, Any]:
    """One parsed log line -> RawCallEvent fields, whichever format it is in."""
    kind = detect(doc) if line_format == "auto" else line_format
    if kind == "seed":
        return seed_fields(doc, naive_zone, seed_timestamp)
    fields = dict(doc)
    if isinstance(fields.get("event_time"), str | int | float):
        fields["event_time"] = parse_time(fields["event_time"], naive_zone)
    return fields
