"""One mapping from an OpenTelemetry span to a call event: pure functions, no I/O.

A decoded span (`Span`, built by producers.otlp_decode from OTLP protobuf or JSON) becomes a
producer item: the same dict a `CallRecorder` hands to the publisher, so the one producer path
(producers.prepare: validation, redaction, privacy options; producers.publisher: packing, spool)
applies to it unchanged. Nothing here copies an attribute it does not know: message content
(`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`, prompt and
completion attributes of older instrumentations, span events) is never read, so it can never
leave the receiver.

Conventions read, the first present wins (current GenAI conventions, then the older GenAI names,
then OpenLLMetry's `llm.*`, then OpenInference's): see `INPUT_TOKENS` ... `TOTAL_TOKENS`, `MODEL`,
`PROVIDER` and `OPERATION` below, and docs/otlp.md for the table.

Token normalisation, the one rule (`normalise_tokens`): callstream counts cached tokens inside
`input_tokens` and reasoning tokens inside `output_tokens`, as the OpenTelemetry conventions do.
A reported input count is taken as *inclusive* of the cache parts, unless the span says otherwise:
either its cache parts exceed it, or its reported total equals input + cache parts + output (and
not input + output). Then the input count was the provider's uncached count (Anthropic's own
`input_tokens`, passed through) and the cache parts are added to it. Reasoning tokens and output
are treated the same way. So cached tokens are neither billed twice (counted once inside input,
priced at the cache rate by streams.pricing) nor lost (an exclusive count is completed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from callstream.producers.contract import MAX_TOKENS, RawCallEvent
from callstream.producers.outcome import CONNECTION_ERROR, CONNECTION_NAMES, TIMEOUT, TIMEOUT_NAMES
from callstream.producers.prepare import Policy, build_event

EVENT_ID_PREFIX = "otlp-"
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8
STATUS_ERROR = 2  # Status.StatusCode STATUS_CODE_ERROR
OTHER_ERROR = "_OTHER"  # error.type's fallback value in the OpenTelemetry conventions

# ---- attribute names, most current convention first ----

OPERATION = ("gen_ai.operation.name",)
PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
REQUEST_MODEL = ("gen_ai.request.model", "llm.request.model", "llm.model_name")
RESPONSE_MODEL = ("gen_ai.response.model", "llm.response.model")
INPUT_TOKENS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
    "llm.token_count.prompt",
)
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
)
CACHE_READ_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_CREATION_TOKENS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
TOTAL_TOKENS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")
USER = ("user.id", "enduser.id")
SESSION = ("session.id", "gen_ai.conversation.id")
SERVER_ADDRESS = ("server.address",)
ERROR_TYPE = ("error.type",)
HTTP_STATUS = ("http.response.status_code", "http.status_code")
STREAMED = ("gen_ai.request.stream", "llm.is_streaming")
ENVIRONMENT = ("deployment.environment.name", "deployment.environment")

# Operations that are one call to a model. Agent, workflow and tool spans wrap calls (which have
# spans of their own): counting them too would count each call twice.
CALL_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "embedding", "rerank"}
)
OPENLLMETRY_REQUEST_TYPE = "llm.request.type"  # chat | completion | embedding | rerank
OPENINFERENCE_KIND = "openinference.span.kind"
OPENINFERENCE_CALL_KINDS = {"LLM": "chat", "EMBEDDING": "embeddings"}
# The HTTP status the OpenAI and Anthropic SDKs' error classes stand for (both use these names).
SDK_ERROR_STATUS = {
    "BadRequestError": 400,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "UnprocessableEntityError": 422,
    "RateLimitError": 429,
    "InternalServerError": 500,
    "OverloadedError": 529,
}
# Some instrumentations record error.type as the repr of the exception class.
_CLASS_REPR = re.compile(r"^<class '([\w.]{1,200})'>$")
OPERATION_ALIASES = {"completion": "text_completion", "embedding": "embeddings"}

SPAN_ATTRIBUTES = frozenset(
    (
        *OPERATION, *PROVIDER, *REQUEST_MODEL, *RESPONSE_MODEL, *INPUT_TOKENS, *OUTPUT_TOKENS,
        *CACHE_READ_TOKENS, *CACHE_CREATION_TOKENS, *REASONING_TOKENS, *TOTAL_TOKENS, *USER, *SESSION,
        *SERVER_ADDRESS, *ERROR_TYPE, *HTTP_STATUS, *STREAMED, OPENLLMETRY_REQUEST_TYPE, OPENINFERENCE_KIND,
    )
)  # fmt: skip
"""Every span attribute the mapping reads; the decoder turns no other into a Python value."""
RESOURCE_ATTRIBUTES = frozenset(("service.name", *ENVIRONMENT, *USER))


@dataclass(frozen=True, slots=True)
class Span:
    """A span as OTLP carries it, decoded; attribute values are str, bool, int, float, bytes,
    lists and dicts (AnyValue), already bounded in depth by the decoder."""

    trace_id: bytes
    span_id: bytes
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    status_code: int = 0
    status_message: str = ""
    resource: Mapping[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A span that is no GenAI call (an HTTP span, an agent span): counted, not published."""

    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A GenAI span that cannot be a call event, with a bounded reason a person can act on."""

    reason: str


class _Invalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Tokens:
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_output_tokens: int = 0


def normalise_tokens(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int = 0,
    cache_creation: int = 0,
    reasoning: int = 0,
    total: int | None = None,
) -> Tokens:
    """The reported counts as callstream counts them (cached inside input, reasoning inside
    output): the one rule in this module's docstring."""
    cached = cache_read + cache_creation
    if input_tokens is None and output_tokens is not None and total is not None:
        input_tokens = max(0, total - output_tokens)  # a span that reports only total and output
    inp = input_tokens or 0
    out = output_tokens or 0
    input_exclusive = cached > inp
    output_exclusive = reasoning > out
    if total is not None and total != inp + out:
        if cached and total == inp + cached + out:
            input_exclusive = True
        elif reasoning and total == inp + out + reasoning:
            output_exclusive = True
        elif cached and reasoning and total == inp + cached + out + reasoning:
            input_exclusive = output_exclusive = True
    if input_exclusive:
        inp += cached
    if output_exclusive:
        out += reasoning
    return Tokens(inp, out, cache_read, cache_creation, reasoning)


def event_id(trace_id: bytes, span_id: bytes) -> str:
    """The event id of a span: a function of its trace and span ids only, so an exporter's retry
    or a Collector's redelivery of the same span is a duplicate that the stream's dedup drops. It
    also finds the trace: `otlp-<trace id hex>-<span id hex>` (no metadata repeats them, which
    would cost each event a scrub of every key and value in the publisher)."""
    return f"{EVENT_ID_PREFIX}{trace_id.hex()}-{span_id.hex()}"


def _first(attributes: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any] | None:
    for name in names:
        value = attributes.get(name)
        if value is not None and value != "":
            return name, value
    return None


def _text(attributes: Mapping[str, Any], names: Sequence[str]) -> str | None:
    found = _first(attributes, names)
    if found is None:
        return None
    name, value = found
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise _Invalid(f"{name}: expected a string, got {_kind(value)}")


def _count(attributes: Mapping[str, Any], names: Sequence[str]) -> int | None:
    found = _first(attributes, names)
    if found is None:
        return None
    name, value = found
    number: int
    if isinstance(value, bool):
        raise _Invalid(f"{name}: expected a token count, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        number = int(value.strip())
    else:
        raise _Invalid(f"{name}: expected a token count, got {_kind(value)}")
    if not 0 <= number <= MAX_TOKENS:
        raise _Invalid(f"{name}: {number} is not a token count between 0 and {MAX_TOKENS}")
    return number


def _flag(attributes: Mapping[str, Any], names: Sequence[str]) -> bool:
    found = _first(attributes, names)
    return found is not None and (found[1] is True or found[1] == "true")


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 40 else f"the string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a key-value list"
    if isinstance(value, bytes):
        return "bytes"
    return type(value).__name__


def operation_of(attributes: Mapping[str, Any]) -> str | None:
    """The span's GenAI operation when it is one call to a model, else None (not a GenAI call,
    or a span that wraps calls: an agent, a workflow, a tool)."""
    for source in (attributes.get(OPERATION[0]), attributes.get(OPENLLMETRY_REQUEST_TYPE)):
        if isinstance(source, str) and source:
            operation = source.strip().lower()
            return OPERATION_ALIASES.get(operation, operation) if operation in CALL_OPERATIONS else None
    kind = attributes.get(OPENINFERENCE_KIND)
    if isinstance(kind, str):
        return OPENINFERENCE_CALL_KINDS.get(kind.upper())
    if _first(attributes, REQUEST_MODEL) is not None and _first(attributes, PROVIDER) is not None:
        return "chat"  # an older instrumentation that names a model and a provider, but no operation
    return None


def _time(nanos: int) -> datetime:
    try:
        # whole seconds and microseconds apart: a float of nanoseconds would lose microseconds
        return datetime.fromtimestamp(nanos // 10**9, UTC) + timedelta(microseconds=nanos % 10**9 // 1000)
    except (OverflowError, OSError, ValueError):
        raise _Invalid(f"start_time_unix_nano {nanos} is not a time in range") from None


def outcome_of(span: Span) -> tuple[str | None, int | None]:
    """(error_type, HTTP status) of a call span, as the recorder names them (producers.outcome):

    - a span without an error status or `error.type` is a success: its HTTP status, else 200;
    - `error.type` names the error ("429", "timeout", an exception class); a class repr such as
      "<class 'openai.RateLimitError'>" becomes the class name; the names of timeouts and
      connection errors become 'timeout' and 'connection_error';
    - an error status without `error.type` is '_OTHER' (the conventions' fallback);
    - the HTTP status is `http.response.status_code`, else error.type when it is one, else the
      status the OpenAI and Anthropic SDKs' error class stands for (RateLimitError: 429, ...)."""
    attributes = span.attributes
    error_type = _text(attributes, ERROR_TYPE)
    if error_type is not None and (named := _CLASS_REPR.match(error_type)):
        error_type = named.group(1).rsplit(".", 1)[-1]
    if error_type is None and span.status_code == STATUS_ERROR:
        error_type = OTHER_ERROR
    status_code = _count(attributes, HTTP_STATUS)
    if status_code is not None and not 100 <= status_code <= 599:
        status_code = None
    if error_type is None:
        return None, status_code if status_code is not None else 200
    if error_type in TIMEOUT_NAMES:
        error_type = TIMEOUT
    elif error_type in CONNECTION_NAMES:
        error_type = CONNECTION_ERROR
    if status_code is None:
        if error_type.isdigit() and len(error_type) == 3 and 100 <= int(error_type) <= 599:
            status_code = int(error_type)
        else:
            status_code = SDK_ERROR_STATUS.get(error_type)
    return error_type, status_code


def span_to_item(span: Span) -> dict[str, Any] | Ignored | Rejected:
    """The producer item of a GenAI call span (for `Publisher.put`), `Ignored` for any other span,
    `Rejected` with a reason for a GenAI span that cannot be a call event. Never raises."""
    attributes = span.attributes
    operation = operation_of(attributes)
    if operation is None:
        return Ignored("not a GenAI call span")
    try:
        return _item(span, operation)
    except _Invalid as exc:
        return Rejected(f"span {span.span_id.hex()[:16]}: {str(exc)[:300]}")


def _item(span: Span, operation: str) -> dict[str, Any]:
    attributes = span.attributes
    if len(span.trace_id) != TRACE_ID_BYTES or not any(span.trace_id):
        raise _Invalid(f"trace id must be {TRACE_ID_BYTES} bytes, not all zero")
    if len(span.span_id) != SPAN_ID_BYTES or not any(span.span_id):
        raise _Invalid(f"span id must be {SPAN_ID_BYTES} bytes, not all zero")
    if span.start_time_unix_nano <= 0:
        raise _Invalid("span has no start time")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        raise _Invalid("span ends before it starts")
    request_model = _text(attributes, REQUEST_MODEL)
    response_model = _text(attributes, RESPONSE_MODEL)
    if request_model is None and response_model is None:
        raise _Invalid("GenAI span names no model (gen_ai.request.model)")
    counts = {
        name: _count(attributes, names)
        for name, names in (
            ("input", INPUT_TOKENS),
            ("output", OUTPUT_TOKENS),
            ("cache_read", CACHE_READ_TOKENS),
            ("cache_creation", CACHE_CREATION_TOKENS),
            ("reasoning", REASONING_TOKENS),
            ("total", TOTAL_TOKENS),
        )
    }
    error_type, status_code = outcome_of(span)
    item: dict[str, Any] = {
        "event_id": event_id(span.trace_id, span.span_id),
        "event_time": _time(span.start_time_unix_nano),
        "duration_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "operation_name": operation,
        "request_model": request_model or response_model,
        "response_model": response_model,
        "provider_name": _text(attributes, PROVIDER),
        "error_type": error_type,
        "status_code": status_code,
        "error_message": (span.status_message or None) if error_type is not None else None,
        "server_address": _text(attributes, SERVER_ADDRESS),
        "service_name": _text(span.resource, ("service.name",)),
        "environment": _text(span.resource, ENVIRONMENT),
        "user_id": _text(attributes, USER) or _text(span.resource, USER),
        "session_id": _text(attributes, SESSION),
        "streamed": _flag(attributes, STREAMED),
    }
    if any(counts[name] is not None for name in ("input", "output", "total")):
        tokens = normalise_tokens(
            counts["input"],
            counts["output"],
            counts["cache_read"] or 0,
            counts["cache_creation"] or 0,
            counts["reasoning"] or 0,
            counts["total"],
        )
        item.update(
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cache_read_input_tokens=tokens.cache_read_input_tokens,
            cache_creation_input_tokens=tokens.cache_creation_input_tokens,
            reasoning_output_tokens=tokens.reasoning_output_tokens,
        )
    elif error_type is None:
        item["usage"] = "missing"  # a call without usage: unknown tokens, never priced at $0
    return {key: value for key, value in item.items() if value is not None}


def span_to_event(span: Span, policy: Policy) -> RawCallEvent | Ignored | Rejected:
    """`span_to_item` through the producer's own preparation (redaction, privacy, validation), as
    the publisher applies it: what a span becomes in Kafka. For tests and tools; the receiver hands
    items to the publisher, which prepares them on its own thread."""
    item = span_to_item(span)
    if not isinstance(item, dict):
        return item
    try:
        return RawCallEvent.model_validate(build_event(item, policy))
    except Exception as exc:  # the publisher dead-letters the same item with the same reason
        return Rejected(f"invalid event: {str(exc)[:300]}")
