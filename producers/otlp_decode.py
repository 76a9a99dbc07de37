"""OTLP trace requests, decoded: protobuf and OTLP/JSON bodies, gzip, bounded sizes. Pure functions.

What the OTLP specification prescribes and this module follows:

- `Content-Type: application/x-protobuf` is an `ExportTraceServiceRequest` in protobuf;
  `application/json` is the same message in OTLP/JSON: protobuf's JSON mapping with lowerCamelCase
  keys (snake_case accepted too), 64-bit integers as numbers or strings, enums as integers, and
  trace and span ids as hex strings (not base64, the one difference from protobuf's mapping);
- `Content-Encoding: gzip` is accepted; any other encoding or content type is refused (415);
- a body that cannot be decoded is refused (400); so is one nested deeper than `MAX_JSON_DEPTH`;
- a body over `max_request_bytes`, or one that decompresses to more than `max_decompressed_bytes`
  (a gzip bomb stops at the limit, it is never inflated whole), is refused (413).

Only the attributes the mapping reads (producers.otlp_mapping.SPAN_ATTRIBUTES) are turned into
Python values: message content and every other attribute stay inside the protobuf object, which is
dropped as soon as the spans are read. Attribute values deeper than `MAX_VALUE_DEPTH` become a marker.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from callstream.errors import MissingExtraError
from callstream.producers.otlp_mapping import RESOURCE_ATTRIBUTES, SPAN_ATTRIBUTES, Span

try:
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError as ProtobufDecodeError
    from google.protobuf.message import Message
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
except ImportError as exc:
    raise MissingExtraError("otlp", "opentelemetry-proto") from exc

Encoding = Literal["protobuf", "json"]
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPES = frozenset({"application/json"})
MAX_JSON_DEPTH = 128
MAX_VALUE_DEPTH = 8
TOO_DEEP = "[nested too deep]"
MAX_STATUS_MESSAGE_CHARS = 8_192
# google.rpc.Code values used in error bodies
CODE_INVALID_ARGUMENT = 3
CODE_RESOURCE_EXHAUSTED = 8
CODE_UNAUTHENTICATED = 16
CODE_UNAVAILABLE = 14
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


class RequestError(ValueError):
    """A request refused whole, with the HTTP status the specification prescribes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encoding_of(content_type: str | None) -> Encoding:
    """protobuf or json from a Content-Type header (parameters such as charset ignored); 415 otherwise."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in PROTOBUF_TYPES:
        return "protobuf"
    if media in JSON_TYPES:
        return "json"
    raise RequestError(415, f"unsupported content type {media[:80]!r}: use application/x-protobuf or json")


def inflate(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body without its Content-Encoding (identity or gzip), never more than `max_bytes` of it."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise RequestError(415, f"unsupported content encoding {encoding[:40]!r}: use gzip or none")
    out = bytearray()
    rest = body
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, max_bytes - len(out) + 1)
        except zlib.error as exc:
            raise RequestError(400, f"body is not valid gzip: {exc}") from None
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise RequestError(413, f"body decompresses to more than {max_bytes} bytes")
        if not inflater.eof:
            raise RequestError(400, "body is truncated gzip")
        rest = inflater.unused_data  # a further gzip member, as gzip allows
    return bytes(out)


def parse_request(body: bytes, encoding: Encoding) -> Any:
    """The ExportTraceServiceRequest in `body`; RequestError(400) for anything undecodable."""
    if encoding == "protobuf":
        try:
            return ExportTraceServiceRequest.FromString(body)
        except (ProtobufDecodeError, RecursionError, ValueError) as exc:
            raise RequestError(
                400, f"not an ExportTraceServiceRequest in protobuf: {str(exc)[:200]}"
            ) from None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"not JSON (unreadable at character {exc.pos})") from None
    if not isinstance(doc, dict):
        raise RequestError(400, f"expected a JSON object, got {type(doc).__name__}")
    if _depth_exceeds(doc, MAX_JSON_DEPTH):
        raise RequestError(400, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    _ids_to_base64(doc)
    try:
        return json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise RequestError(400, f"not an ExportTraceServiceRequest in OTLP/JSON: {str(exc)[:200]}") from None


def _depth_exceeds(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, dict | list))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, dict | list))
    return False


def _ids_to_base64(doc: dict[str, Any]) -> None:
    """OTLP/JSON's hex ids -> protobuf JSON's base64, in spans and their links. An id that is no
    hex becomes empty (the mapping then rejects that span with a reason: the request still counts)."""
    for span in _dicts(doc, ("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans",)):
        _fix_ids(span)
        links = span.get("links")
        if isinstance(links, list):
            for link in links:
                if isinstance(link, dict):
                    _fix_ids(link)


def _dicts(doc: dict[str, Any], *levels: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    current = [doc]
    for names in levels:
        found: list[dict[str, Any]] = []
        for item in current:
            for name in names:
                values = item.get(name)
                if isinstance(values, list):
                    found.extend(v for v in values if isinstance(v, dict))
        current = found
    yield from current


def _fix_ids(item: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        value = item.get(name)
        if isinstance(value, str):
            try:
                item[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                item[name] = ""


@dataclass(frozen=True, slots=True)
class Decoded:
    spans: list[Span]


def decode_request(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None = None,
    *,
    max_request_bytes: int = 4 << 20,
    max_decompressed_bytes: int = 32 << 20,
) -> Decoded:
    """An OTLP/HTTP trace request's body -> its spans. Raises RequestError (with the status to answer)."""
    if len(body) > max_request_bytes:
        raise RequestError(413, f"request body over {max_request_bytes} bytes")
    encoding = encoding_of(content_type)
    raw = inflate(body, content_encoding, max_decompressed_bytes)
    return Decoded(list(spans_of(parse_request(raw, encoding))))


def spans_of(request: Any) -> Iterator[Span]:
    """The spans of a parsed ExportTraceServiceRequest, with the attributes the mapping reads."""
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes, RESOURCE_ATTRIBUTES)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                yield Span(
                    trace_id=bytes(span.trace_id),
                    span_id=bytes(span.span_id),
                    name=span.name[:256],
                    start_time_unix_nano=int(span.start_time_unix_nano),
                    end_time_unix_nano=int(span.end_time_unix_nano),
                    attributes=attributes_of(span.attributes, SPAN_ATTRIBUTES),
                    status_code=int(span.status.code),
                    status_message=span.status.message[:MAX_STATUS_MESSAGE_CHARS],
                    resource=resource,
                    scope_name=scope.name[:256],
                    scope_version=scope.version[:64],
                )


def attributes_of(key_values: Iterable[Any], keep: Container[str]) -> dict[str, Any]:
    """KeyValue list -> dict of the keys in `keep` (the first of a repeated key wins)."""
    out: dict[str, Any] = {}
    for kv in key_values:
        if kv.key in keep and kv.key not in out:
            out[kv.key] = any_value(kv.value)
    return out


def any_value(value: Any, depth: int = 0) -> Any:
    """An AnyValue as a Python value: str, bool, int, float, bytes, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("string_value", "bool_value", "int_value", "double_value", "bytes_value"):
        return getattr(value, kind)
    if depth >= MAX_VALUE_DEPTH:
        return TOO_DEEP
    if kind == "array_value":
        return [any_value(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


# ---- responses ----


def success_body(rejected: int, message: str, encoding: Encoding) -> bytes:
    """ExportTraceServiceResponse: `partial_success` only when spans were rejected, as the spec says."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message[:1_000]
    return _encode(response, encoding)


def _encode(message: Message, encoding: Encoding) -> bytes:
    if encoding == "protobuf":
        return message.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(message))


def status_body(code: int, message: str, encoding: Encoding) -> bytes:
    """A google.rpc.Status (code, message): the body of an error response, in the request's encoding.
    Written by hand (two fields) rather than pulling in googleapis-common-protos."""
    text = message[:1_000]
    if encoding == "json":
        return orjson.dumps({"code": code, "message": text})
    data = text.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(data)) + data


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
