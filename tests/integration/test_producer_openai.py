"""The real `openai` client against a local fake gateway: every outcome is recorded exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from callstream.producers.memory import MemoryPublisher
from callstream.producers.openai_instrumentation import instrument_openai
from callstream.producers.prepare import Policy
from callstream.producers.recorder import CallRecorder
from callstream.producers.settings import ProducerSettings
from tests.integration.gateway import RESPONSE_SUFFIX, STREAM_PIECES, USAGE, Gateway

openai = pytest.importorskip("openai")

# A fake gateway on loopback and an in-memory publisher: no Kafka or Elasticsearch.
pytestmark = pytest.mark.loopback

API_KEY = "sk-test-SECRETSECRET-0123456789"
MESSAGES = [{"role": "user", "content": "How do I return an order?"}]
TIMEOUT_S = 1.5  # generous: a loaded CI machine must not time out the successful calls
SUCCESS_TOKENS = {
    "input_tokens": USAGE["prompt_tokens"],
    "output_tokens": USAGE["completion_tokens"],
    "cache_read_input_tokens": USAGE["prompt_tokens_details"]["cached_tokens"],  # type: ignore[index]
    "reasoning_output_tokens": USAGE["completion_tokens_details"]["reasoning_tokens"],  # type: ignore[index]
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway() as gw:
        yield gw


@pytest.fixture
def memory() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def client(gateway: Gateway, memory: MemoryPublisher) -> Any:
    raw = openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=TIMEOUT_S)
    return instrument_openai(raw, CallRecorder(memory), service_name="support-bot")


@pytest.fixture
def async_client(gateway: Gateway, memory: MemoryPublisher) -> Any:
    raw = openai.AsyncOpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=TIMEOUT_S)
    return instrument_openai(raw, CallRecorder(memory))


def only(memory: MemoryPublisher) -> dict[str, Any]:
    assert len(memory.wire) == 1, memory.wire
    assert memory.dead_letters == []
    assert API_KEY not in str(memory.wire)
    return memory.wire[0]


def test_success_records_usage_and_returns_the_same_object(client: Any, memory: MemoryPublisher) -> None:
    response = client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert type(response).__name__ == "ChatCompletion"
    assert response.choices[0].message.content == "".join(STREAM_PIECES)
    event = only(memory)
    expected = {
        "request_model": "gpt-4.1",
        "response_model": "gpt-4.1" + RESPONSE_SUFFIX,
        "status_code": 200,
        "server_address": "127.0.0.1",
        "service_name": "support-bot",
        **SUCCESS_TOKENS,
    }
    assert {k: event.get(k) for k in expected} == expected
    assert "error_type" not in event and "streamed" not in event
    assert "How do I return" not in str(event)  # no prompt unless enabled


@pytest.mark.parametrize(
    ("model", "status", "error_type", "exception"),
    [
        ("auth-error", 401, "AuthenticationError", "AuthenticationError"),
        ("rate-limit", 429, "RateLimitError", "RateLimitError"),
        ("server-error", 500, "InternalServerError", "InternalServerError"),
        ("bad-request", 400, "BadRequestError", "BadRequestError"),
    ],
)
def test_http_errors(
    client: Any, memory: MemoryPublisher, model: str, status: int, error_type: str, exception: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=MESSAGES)
    assert type(caught.value).__name__ == exception
    event = only(memory)
    assert (event["status_code"], event["error_type"]) == (status, error_type)
    assert event["error_message"].startswith(f"Error code: {status}")
    assert len(event["error_message"]) <= ProducerSettings().error_message_max_chars
    assert "input_tokens" not in event


def test_api_key_echoed_in_an_error_never_leaves(client: Any, memory: MemoryPublisher) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="auth-error", messages=MESSAGES)
    assert "sk-test" in str(caught.value)  # the gateway did echo (a masked form of) the key
    event = only(memory)
    assert "sk-test" not in event["error_message"] and "[redacted]" in event["error_message"]


def test_timeout_is_recorded(client: Any, memory: MemoryPublisher) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="slow", messages=MESSAGES)
    event = only(memory)
    assert (event["error_type"], event.get("status_code")) == ("timeout", None)
    assert event["duration_ms"] >= TIMEOUT_S * 1000 * 0.9


def test_connection_errors_are_recorded(client: Any, memory: MemoryPublisher) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="hang-up", messages=MESSAGES)
    assert only(memory)["error_type"] == "connection_error"


def test_nothing_listening_is_a_connection_error(memory: MemoryPublisher) -> None:
    from callstream.infra.local_servers import free_port

    raw = openai.OpenAI(api_key=API_KEY, base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    client = instrument_openai(raw, CallRecorder(memory))
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert only(memory)["error_type"] == "connection_error"


def test_other_exceptions_are_recorded_by_class(client: Any, memory: MemoryPublisher) -> None:
    with pytest.raises(TypeError):
        client.chat.completions.create(model="gpt-4.1")  # messages missing: the client raises
    assert only(memory)["error_type"] == "TypeError"


def test_stream_records_time_to_first_token_and_final_usage(client: Any, memory: MemoryPublisher) -> None:
    stream = client.chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert memory.wire == []  # recorded when the stream ends, not before
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == STREAM_PIECES
    event = only(memory)
    assert event["streamed"] is True and event["status_code"] == 200
    assert event["response_model"] == "gpt-4.1" + RESPONSE_SUFFIX
    assert {k: event[k] for k in SUCCESS_TOKENS} == SUCCESS_TOKENS
    assert 0 <= event["time_to_first_token_ms"] <= event["duration_ms"]


def test_stream_without_usage_chunk_records_usage_missing(client: Any, memory: MemoryPublisher) -> None:
    with client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True) as stream:
        chunks = list(stream)
    assert len(chunks) == len(STREAM_PIECES) + 2
    event = only(memory)
    assert event["streamed"] is True and event["usage"] == "missing" and "input_tokens" not in event


def test_gateway_dropping_usage_is_usage_missing(client: Any, memory: MemoryPublisher) -> None:
    response = client.chat.completions.create(model="no-usage", messages=MESSAGES)
    assert response.usage is None
    event = only(memory)
    assert (event["status_code"], event["usage"]) == (200, "missing") and "input_tokens" not in event


def test_stream_asked_for_usage_but_not_given_is_usage_missing(client: Any, memory: MemoryPublisher) -> None:
    stream = client.chat.completions.create(
        model="no-usage", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert len(list(stream)) == len(STREAM_PIECES) + 2
    assert only(memory)["usage"] == "missing"


def test_reported_usage_is_not_marked(client: Any, memory: MemoryPublisher) -> None:
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert "usage" not in only(memory)  # "reported" is the contract's default: left out of the wire


def test_stream_stalling_mid_way_is_a_timeout(client: Any, memory: MemoryPublisher) -> None:
    stream = client.chat.completions.create(model="slow-stream", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APITimeoutError):
        for _ in stream:
            pass
    event = only(memory)
    assert event["error_type"] == "timeout" and event["streamed"] is True
    assert event["time_to_first_token_ms"] < event["duration_ms"]
    assert event["usage"] == "missing"  # tokens were generated before the stall: unknown, not 0


def test_stream_closed_early_is_recorded_once(client: Any, memory: MemoryPublisher) -> None:
    stream = client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    stream.close()
    event = only(memory)
    assert event["metadata"] == {"callstream.stream": "closed_before_end"}
    assert event["usage"] == "missing"


def test_embeddings_and_copies_are_instrumented(client: Any, memory: MemoryPublisher) -> None:
    client.with_options(timeout=5).embeddings.create(model="text-embedding-3-small", input="hello")
    event = only(memory)
    assert (event["operation_name"], event["input_tokens"]) == ("embeddings", USAGE["prompt_tokens"])


def test_bodies_only_when_enabled(gateway: Gateway) -> None:
    memory = MemoryPublisher(Policy(record_bodies=True))
    recorder = CallRecorder(memory, settings=ProducerSettings(record_bodies=True))
    client = instrument_openai(
        openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0), recorder
    )
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    metadata = only(memory)["metadata"]
    assert "How do I return an order?" in metadata["request_body"]
    assert metadata["response_body"] == "".join(STREAM_PIECES)


def test_async_client(async_client: Any, memory: MemoryPublisher) -> None:
    async def calls() -> None:
        await async_client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        stream = await async_client.chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            pieces = [
                c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content
            ]
        assert pieces == STREAM_PIECES
        with pytest.raises(openai.APITimeoutError):
            await async_client.chat.completions.create(model="slow", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            await async_client.chat.completions.create(model="rate-limit", messages=MESSAGES)

    asyncio.run(calls())
    assert memory.dead_letters == []
    plain, streamed, timed_out, limited = memory.wire
    assert {k: plain[k] for k in SUCCESS_TOKENS} == SUCCESS_TOKENS and "streamed" not in plain
    assert {k: streamed[k] for k in SUCCESS_TOKENS} == SUCCESS_TOKENS and streamed["streamed"] is True
    assert "time_to_first_token_ms" in streamed
    assert (timed_out["error_type"], timed_out.get("status_code")) == ("timeout", None)
    assert (limited["error_type"], limited["status_code"]) == ("RateLimitError", 429)


def test_instrumenting_twice_records_once(client: Any, memory: MemoryPublisher) -> None:
    instrument_openai(client, CallRecorder(memory))
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    only(memory)


def test_session_and_user_of_a_call(client: Any, memory: MemoryPublisher) -> None:
    from callstream.producers.recorder import call_fields

    with call_fields(session_id="s-42", metadata={"ticket": "T-1"}):
        client.chat.completions.create(model="gpt-4.1", messages=MESSAGES, user="customer-7")
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    first, second = memory.wire
    assert (first["session_id"], first["user_id"], first["metadata"]) == (
        "s-42",
        "customer-7",
        {"ticket": "T-1"},
    )
    assert "session_id" not in second and "user_id" not in second
