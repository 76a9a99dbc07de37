"""Span -> call event, one test per convention the mapping reads (producers.otlp_mapping)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callstream.producers.contract import RawCallEvent
from callstream.producers.otlp_mapping import (
    Ignored,
    Rejected,
    Span,
    event_id,
    normalise_tokens,
    span_to_event,
    span_to_item,
)
from callstream.producers.prepare import Policy
from callstream.producers.redaction import REDACTED

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
START_NS = 1_772_000_000_123_456_000  # 2026-02-25T06:13:20.123456Z
SECRET = "planted-secret-do-not-leak-7f3a"
RESOURCE = {"service.name": "support-bot", "deployment.environment.name": "prod"}


def span(attributes: dict[str, Any], **fields: Any) -> Span:
    values: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "chat gpt-4.1",
        "start_time_unix_nano": START_NS,
        "end_time_unix_nano": START_NS + 1_250_000_000,
        "attributes": attributes,
        "resource": RESOURCE,
        "scope_name": "opentelemetry.instrumentation.openai_v2",
    }
    return Span(**(values | fields))


def event(attributes: dict[str, Any], policy: Policy | None = None, **fields: Any) -> RawCallEvent:
    result = span_to_event(span(attributes, **fields), policy or Policy())
    assert isinstance(result, RawCallEvent), result
    return result


def tokens(e: RawCallEvent) -> tuple[int, int, int, int, int]:
    return (
        e.input_tokens,
        e.output_tokens,
        e.cache_read_input_tokens,
        e.cache_creation_input_tokens,
        e.reasoning_output_tokens,
    )


CURRENT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4.1",
    "gen_ai.response.model": "gpt-4.1-2025-04-14",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 45,
    "gen_ai.usage.cache_read.input_tokens": 100,
    "gen_ai.usage.cache_creation.input_tokens": 5,
    "gen_ai.usage.reasoning.output_tokens": 20,
    "server.address": "api.openai.com",
    "user.id": "u-42",
    "gen_ai.conversation.id": "conv-7",
}


def test_current_genai_conventions() -> None:
    e = event(CURRENT)
    assert e.event_id == "otlp-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
    assert e.event_time == datetime(2026, 2, 25, 6, 13, 20, 123456, tzinfo=UTC)
    assert e.duration_ms == 1250.0
    assert (e.operation_name, e.provider_name, e.request_model, e.response_model) == (
        "chat",
        "openai",
        "gpt-4.1",
        "gpt-4.1-2025-04-14",
    )
    # OpenTelemetry counts cache reads and writes inside input_tokens, as callstream does: unchanged.
    assert tokens(e) == (120, 45, 100, 5, 20)
    assert e.usage == "reported"
    assert (e.server_address, e.service_name, e.environment) == ("api.openai.com", "support-bot", "prod")
    assert (e.user_id, e.session_id) == ("u-42", "conv-7")
    assert e.error_type is None and e.status_code == 200  # a span without an error is a success
    assert e.metadata == {}  # the event id carries the trace and span ids


def test_older_genai_names() -> None:
    e = event(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.prompt_tokens": 300,
            "gen_ai.usage.completion_tokens": 50,
            "session.id": "s-1",
            "enduser.id": "alice",
        }
    )
    assert (e.operation_name, e.provider_name, e.request_model) == ("chat", "anthropic", "claude-sonnet-4")
    assert tokens(e) == (300, 50, 0, 0, 0)
    assert (e.session_id, e.user_id) == ("s-1", "alice")


def test_openllmetry_llm_usage() -> None:
    e = event(
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "llm.usage.prompt_tokens": 80,
            "llm.usage.completion_tokens": 12,
            "llm.usage.total_tokens": 92,
            "gen_ai.usage.cache_read_input_tokens": 64,
            "llm.is_streaming": True,
        }
    )
    assert tokens(e) == (80, 12, 64, 0, 0)
    assert e.streamed is True and e.provider_name == "OpenAI"


def test_openinference_token_counts() -> None:
    e = event(
        {
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 200,
            "llm.token_count.completion": 30,
            "llm.token_count.total": 230,
            "llm.token_count.prompt_details.cache_read": 150,
            "llm.token_count.completion_details.reasoning": 10,
            "session.id": "sess-9",
            "user.id": "bob",
        }
    )
    assert (e.operation_name, e.request_model, e.provider_name) == ("chat", "gpt-4o-mini", "openai")
    assert tokens(e) == (200, 30, 150, 0, 10)
    assert (e.session_id, e.user_id) == ("sess-9", "bob")
    embedding = event({"openinference.span.kind": "EMBEDDING", "llm.model_name": "text-embedding-3-small"})
    assert embedding.operation_name == "embeddings"


def test_first_convention_present_wins() -> None:
    e = event(CURRENT | {"gen_ai.usage.prompt_tokens": 999, "llm.token_count.prompt": 998})
    assert e.input_tokens == 120


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        # inclusive input (the OpenTelemetry rule): kept as reported
        ((120, 45, 100, 0, 0, None), (120, 45, 100, 0, 0)),
        ((120, 45, 100, 0, 0, 165), (120, 45, 100, 0, 0)),
        # cache parts exceed input: input was the provider's uncached count (Anthropic's raw field)
        ((10, 45, 100, 20, 0, None), (130, 45, 100, 20, 0)),
        # total says input + cache + output: exclusive, even though cache < input
        ((200, 45, 100, 0, 0, 345), (300, 45, 100, 0, 0)),
        # reasoning outside output (Gemini's candidates vs thoughts), told by the total or by size
        ((50, 30, 0, 0, 20, 100), (50, 50, 0, 0, 20)),
        ((50, 10, 0, 0, 20, None), (50, 30, 0, 0, 20)),
        # both exclusive, told by the total
        ((50, 30, 40, 0, 20, 140), (90, 50, 40, 0, 20)),
        # only total and output: input is the rest
        ((None, 30, 0, 0, 0, 100), (70, 30, 0, 0, 0)),
    ],
)
def test_token_normalisation_rule(
    reported: tuple[int | None, int, int, int, int, int | None], expected: tuple[int, int, int, int, int]
) -> None:
    result = normalise_tokens(*reported)
    assert (
        result.input_tokens,
        result.output_tokens,
        result.cache_read_input_tokens,
        result.cache_creation_input_tokens,
        result.reasoning_output_tokens,
    ) == expected


def test_exclusive_input_is_completed_so_the_contract_accepts_it() -> None:
    e = event(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 9,
            "gen_ai.usage.cache_read.input_tokens": 2048,
        }
    )
    assert tokens(e) == (2051, 9, 2048, 0, 0)


def test_error_status_and_error_type_give_the_error() -> None:
    typed = event(
        CURRENT | {"error.type": "429", "gen_ai.usage.input_tokens": None},
        status_code=2,
        status_message=f"Rate limit reached, key {SECRET}",
    )
    assert (typed.error_type, typed.status_code) == ("429", 429)
    untyped = event({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, status_code=2)
    assert untyped.error_type == "_OTHER" and untyped.usage == "reported"
    exc = event(CURRENT | {"error.type": "APIConnectionError"}, status_code=2, status_message="refused")
    assert (exc.error_type, exc.status_code, exc.error_message) == ("connection_error", None, "refused")
    named = event(CURRENT | {"error.type": "<class 'openai.RateLimitError'>"}, status_code=2)
    assert (named.error_type, named.status_code) == ("RateLimitError", 429)
    timeout = event(CURRENT | {"error.type": "APITimeoutError"}, status_code=2)
    assert (timeout.error_type, timeout.status_code) == ("timeout", None)
    refused = event(CURRENT | {"error.type": "<class 'httpx.ConnectError'>"}, status_code=2)
    assert refused.error_type == "ConnectError"
    reset = event(CURRENT | {"error.type": "ConnectionError"}, status_code=2)
    assert reset.error_type == "connection_error"
    explicit = event(CURRENT | {"error.type": "RateLimitError", "http.response.status_code": 503})
    assert explicit.status_code == 503
    served = event(CURRENT | {"http.response.status_code": 201})
    assert (served.error_type, served.status_code) == (None, 201)
    ok = event(CURRENT, status_code=1, status_message="ignored without an error")
    assert ok.error_type is None and ok.error_message is None and ok.status_code == 200


def test_status_message_passes_the_redaction_policy() -> None:
    policy = Policy().with_secrets([SECRET])
    e = event(
        CURRENT | {"error.type": "AuthenticationError"},
        policy,
        status_code=2,
        status_message=f"Incorrect API key provided: sk-proj-abcdefghijklmnop1234. ({SECRET})",
    )
    assert e.error_message is not None and SECRET not in e.error_message
    assert "sk-proj-abcdefghijklmnop" not in e.error_message and REDACTED in e.error_message


def test_a_call_without_usage_is_missing_not_zero() -> None:
    e = event({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1"})
    assert e.usage == "missing" and e.input_tokens == 0


def test_message_content_is_never_copied() -> None:
    content = {
        "gen_ai.input.messages": f'[{{"role":"user","parts":[{{"type":"text","content":"{SECRET}"}}]}}]',
        "gen_ai.output.messages": SECRET,
        "gen_ai.system_instructions": SECRET,
        "gen_ai.prompt.0.content": SECRET,
        "gen_ai.completion.0.content": SECRET,
        "llm.input_messages.0.message.content": SECRET,
        "input.value": SECRET,
        "output.value": SECRET,
    }
    item = span_to_item(span(CURRENT | content))
    assert isinstance(item, dict)
    assert SECRET not in repr(item)
    assert SECRET not in repr(event(CURRENT | content).to_wire())


def test_resource_user_applies_when_the_span_has_none() -> None:
    attributes = {k: v for k, v in CURRENT.items() if k != "user.id"}
    e = event(attributes, resource=RESOURCE | {"enduser.id": "tenant-user"})
    assert e.user_id == "tenant-user"


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"http.request.method": "POST", "url.full": "https://api.openai.com/v1/chat/completions"},
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4.1"},
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
        {"traceloop.span.kind": "workflow", "traceloop.entity.name": "answer"},
        {"openinference.span.kind": "CHAIN"},
        {"gen_ai.request.model": "gpt-4.1"},  # a model alone, no provider or operation: not enough
    ],
)
def test_spans_that_are_no_genai_call_are_ignored(attributes: dict[str, Any]) -> None:
    assert isinstance(span_to_item(span(attributes)), Ignored)


def test_the_event_id_depends_on_trace_and_span_ids_only() -> None:
    first = event(CURRENT)
    again = event(CURRENT | {"gen_ai.usage.output_tokens": 46}, start_time_unix_nano=START_NS + 1)
    other = event(CURRENT, span_id=bytes.fromhex("b7ad6b7169203332"))
    assert first.event_id == again.event_id == event_id(TRACE, SPAN)
    assert other.event_id != first.event_id


@pytest.mark.parametrize(
    ("fields", "attributes", "fragment"),
    [
        ({"trace_id": b"\x01" * 8}, {}, "trace id must be 16 bytes"),
        ({"trace_id": b"\x00" * 16}, {}, "not all zero"),
        ({"span_id": b"\x01" * 16}, {}, "span id must be 8 bytes"),
        ({"end_time_unix_nano": START_NS - 1}, {}, "ends before it starts"),
        ({"start_time_unix_nano": 0, "end_time_unix_nano": 0}, {}, "no start time"),
        ({}, {"gen_ai.usage.input_tokens": "lots"}, "gen_ai.usage.input_tokens: expected a token count"),
        ({}, {"gen_ai.usage.input_tokens": -1}, "is not a token count"),
        ({}, {"gen_ai.usage.output_tokens": True}, "got a boolean"),
        ({}, {"gen_ai.usage.output_tokens": [1, 2]}, "got an array"),
        ({}, {"gen_ai.request.model": {"a": 1}}, "expected a string, got a key-value list"),
        ({}, {"gen_ai.request.model": None, "gen_ai.response.model": None}, "names no model"),
    ],
)
def test_a_genai_span_that_cannot_be_an_event_is_rejected_with_a_bounded_reason(
    fields: dict[str, Any], attributes: dict[str, Any], fragment: str
) -> None:
    result = span_to_item(span(CURRENT | attributes, **fields))
    assert isinstance(result, Rejected), result
    assert fragment in result.reason and len(result.reason) <= 340


def test_values_the_contract_refuses_are_rejected_not_raised() -> None:
    huge = "m" * 3_000_000  # an attribute of megabytes: cut before the scrub, then refused by length
    result = span_to_event(span(CURRENT | {"gen_ai.request.model": huge}), Policy())
    assert isinstance(result, Rejected) and len(result.reason) <= 320
    long_call = span_to_event(span(CURRENT, end_time_unix_nano=START_NS + 2 * 86_400 * 10**9), Policy())
    assert isinstance(long_call, Rejected) and "duration_ms" in long_call.reason


def test_a_span_in_2100_maps_and_is_left_to_the_stream_s_time_bounds() -> None:
    start = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1e9)
    e = event(CURRENT, start_time_unix_nano=start, end_time_unix_nano=start + 10**9)
    assert e.event_time.year == 2100  # the stream dead-letters it against its clock-skew bound
    # fixed64 nanoseconds reach 2554 at most, inside the contract's range; the epoch's first day is not
    early = span_to_event(span(CURRENT, start_time_unix_nano=1, end_time_unix_nano=2), Policy())
    assert isinstance(early, Rejected) and "event_time" in early.reason
    latest = event(CURRENT, start_time_unix_nano=2**64 - 2, end_time_unix_nano=2**64 - 1)
    assert latest.event_time.year == 2554


def test_strings_pass_the_redaction_policy_and_privacy_options() -> None:
    policy = Policy(user_id_mode="drop").with_secrets([SECRET])
    e = event(CURRENT | {"session.id": f"s-{SECRET}", "server.address": "u:pw@host"}, policy)
    assert e.user_id is None
    assert e.session_id is not None and SECRET not in e.session_id
