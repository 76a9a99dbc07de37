"""Map one JSON log line onto RawCallEvent fields: an LLM gateway client's log, or callstream's own.

The gateway client format is the JSON-lines log a client of an OpenAI-compatible LLM gateway
writes, one object per call: log_id, timestamp, model, endpoint, request_tokens, response_tokens,
total_tokens, response_time_ms, status_code, error_message, cost_usd, session_id, user_id,
metadata. Its `timestamp` is taken when the line is written, after the response, so by default
the call's start is `timestamp - response_time_ms`. Naive timestamps are read in a configurable
zone (UTC by default). `cost_usd` is kept as `reported_cost_usd`: callstream prices every call
itself downstream and can reconcile the two.

Whatever a line holds, these functions either return fields or raise ValueError with a reason a
person can act on ("timestamp 1e+20 is out of range"), never an OverflowError from deep inside.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from callstream.producers.outcome import http_outcome

LineFormat = Literal["auto", "gateway", "callstream"]
GatewayTimestamp = Literal["end", "start"]

GATEWAY_KEYS = frozenset({"log_id", "response_time_ms", "request_tokens"})
GATEWAY_FIELDS = frozenset(
    {
        "log_id", "timestamp", "model", "endpoint", "request_tokens", "response_tokens", "total_tokens",
        "response_time_ms", "status_code", "error_message", "cost_usd", "session_id", "user_id",
    }
)  # fmt: skip
"""The gateway client format's fields (and `metadata`): all its dead letters keep of a line."""
TOTAL_TOKENS_KEY = "gateway.total_tokens"
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


def _show(value: Any) -> str:
    return repr(value)[:40]


def parse_time(value: Any, naive_zone: tzinfo) -> datetime:
    """ISO-8601 (with or without zone, 'Z' allowed) or epoch seconds / milliseconds, as UTC."""
    if isinstance(value, bool):
        raise ValueError(f"timestamp {_show(value)} is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"timestamp {_show(value)} is not a finite number")
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"timestamp {_show(value)} is out of range") from None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"timestamp {_show(value)} is not a time")
    try:
        parsed = datetime.fromisoformat(value.strip()[:64])
    except ValueError:
        raise ValueError(f"timestamp {_show(value)} is not ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(f"timestamp {_show(value)} is out of range once converted to UTC") from None


def detect(doc: dict[str, Any]) -> Literal["gateway", "callstream"]:
    return "gateway" if GATEWAY_KEYS & doc.keys() and "event_time" not in doc else "callstream"


def line_event_id(text: bytes, inode: int, offset: int) -> str:
    """A stable id for a line that has none, so that re-reading it never makes a second event: the
    file's inode (unchanged when logrotate renames it), the line's byte offset in that file, and
    its content. Restarts and rotation re-read the same line with the same id; a file truncated
    and rewritten gets new ids for new content."""
    digest = hashlib.sha256(f"{inode}:{offset}:".encode() + text)
    return digest.hexdigest()[:32]


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _whole(doc: dict[str, Any], key: str) -> int | None:
    """A whole number field (absent, null or "" -> None); ValueError naming the field otherwise."""
    value = doc.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{key}: {_show(value)} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 32:
        return int(value)
    raise ValueError(f"{key}: {_show(value)} is not a whole number")


def _number(doc: dict[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key}: {_show(value)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{key}: {_show(value)} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{key}: {_show(value)} is not a finite number")
    return number


def _text(value: Any) -> Any:
    """Ids logged as numbers become text; anything else is left for the contract to judge."""
    value = _blank_to_none(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def gateway_fields(
    doc: dict[str, Any], naive_zone: tzinfo = UTC, timestamp: GatewayTimestamp = "end"
) -> dict[str, Any]:
    """Gateway client log record -> RawCallEvent fields (validated later, like any recorded call)."""
    if "timestamp" not in doc:
        raise ValueError("gateway record has no timestamp")
    duration_ms = _number(doc, "response_time_ms") or 0.0
    written = parse_time(doc["timestamp"], naive_zone)
    event_time = written
    if timestamp == "end":
        try:
            event_time = written - timedelta(milliseconds=duration_ms)
        except (OverflowError, ValueError):
            raise ValueError(f"response_time_ms {_show(duration_ms)} is out of range") from None
    status_code = _whole(doc, "status_code") or None
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    fields: dict[str, Any] = {
        "event_time": event_time,
        "request_model": doc.get("model"),
        "input_tokens": _whole(doc, "request_tokens") or 0,
        "output_tokens": _whole(doc, "response_tokens") or 0,
        "duration_ms": duration_ms,
        "status_code": status_code,
        "error_type": http_outcome(status_code) if isinstance(status_code, int) else None,
        "error_message": _blank_to_none(doc.get("error_message")),
        "session_id": _text(doc.get("session_id")),
        "user_id": _text(doc.get("user_id")),
        "metadata": dict(metadata or {}),
    }
    if "request_tokens" not in doc and "response_tokens" not in doc and (status_code or 200) < 400:
        fields["usage"] = "missing"  # the line says nothing about tokens: unknown, not 0
    if doc.get("log_id"):
        fields["event_id"] = str(doc["log_id"])
    cost = _number(doc, "cost_usd")
    if cost is not None:
        fields["reported_cost_usd"] = cost
    endpoint = doc.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        try:
            url = urlsplit(endpoint)
            fields["server_address"] = url.hostname or None
        except ValueError:
            raise ValueError(f"endpoint {_show(endpoint)} is not a URL") from None
        for suffix, operation in _OPERATION_BY_PATH:
            if url.path.endswith(suffix):
                fields["operation_name"] = operation
                break
    total = doc.get("total_tokens")
    if isinstance(total, int) and total != fields["input_tokens"] + fields["output_tokens"]:
        fields["metadata"][TOTAL_TOKENS_KEY] = total  # kept visible: the log's own total disagrees
    return fields


def line_fields(
    doc: dict[str, Any],
    line_format: LineFormat = "auto",
    naive_zone: tzinfo = UTC,
    gateway_timestamp: GatewayTimestamp = "end",
) -> dict[str, Any]:
    """One parsed log line -> RawCallEvent fields, whichever format it is in."""
    kind = detect(doc) if line_format == "auto" else line_format
    if kind == "gateway":
        return gateway_fields(doc, naive_zone, gateway_timestamp)
    fields = dict(doc)
    if isinstance(fields.get("event_time"), str | int | float):
        fields["event_time"] = parse_time(fields["event_time"], naive_zone)
    return fields
