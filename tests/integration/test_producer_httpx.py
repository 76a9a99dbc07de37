"""Plain httpx calls through the recording transport, against the fake gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from callstream.infra.local_servers import free_port
from callstream.producers.httpx_instrumentation import AsyncRecordingTransport, RecordingTransport
from callstream.producers.memory import MemoryPublisher
from callstream.producers.recorder import CallRecorder
from tests.integration.gateway import RESPONSE_SUFFIX, STREAM_PIECES, USAGE, Gateway

# A fake gateway on loopback and an in-memory publisher: no Kafka or Elasticsearch.
pytestmark = pytest.mark.loopback

KEY = "sk-httpx-SECRET-987654321"
BODY = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway() as gw:
        yield gw


@pytest.fixture
def memory() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def client(gateway: Gateway, memory: MemoryPublisher) -> Iterator[httpx.Client]:
    transport = RecordingTransport(httpx.HTTPTransport(), CallRecorder(memory))
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=gateway.base_url, transport=transport, timeout=1.5, headers=headers) as c:
        yield c


def only(memory: MemoryPublisher) -> dict[str, Any]:
    assert len(memory.wire) == 1 and memory.dead_letters == []
    assert KEY not in str(memory.wire) and "SECRET" not in str(memory.wire)
    return memory.wire[0]


def test_success(client: httpx.Client, memory: MemoryPublisher) -> None:
    response = client.post("/chat/completions", json={"model": "gpt-4.1", **BODY})
    assert response.status_code == 200 and response.json()["usage"] == USAGE
    event = only(memory)
    assert (event["request_model"], event["response_model"]) == ("gpt-4.1", "gpt-4.1" + RESPONSE_SUFFIX)
    assert (event["input_tokens"], event["output_tokens"], event["status_code"]) == (120, 45, 200)
    assert (event["cache_read_input_tokens"], event["reasoning_output_tokens"]) == (100, 20)
    assert event.get("operation_name", "chat") == "chat" and event["server_address"] == "127.0.0.1"


def test_http_error_status_and_message(client: httpx.Client, memory: MemoryPublisher) -> None:
    response = client.post("/chat/completions", json={"model": "auth-error", **BODY})
    assert response.status_code == 401
    event = only(memory)
    assert (event["status_code"], event["error_type"]) == (401, "401")
    assert event["error_message"].startswith("Incorrect API key provided: [redacted]")


def test_timeout(client: httpx.Client, memory: MemoryPublisher) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json={"model": "slow", **BODY})
    event = only(memory)
    assert (event["request_model"], event["error_type"], event.get("status_code")) == (
        "slow",
        "timeout",
        None,
    )


def test_connection_refused(memory: MemoryPublisher) -> None:
    transport = RecordingTransport(httpx.HTTPTransport(), CallRecorder(memory))
    with httpx.Client(transport=transport) as c, pytest.raises(httpx.ConnectError):
        c.post(f"http://127.0.0.1:{free_port()}/v1/chat/completions", json={"model": "gpt-4.1"})
    assert only(memory)["error_type"] == "connection_error"


def test_streamed_sse(client: httpx.Client, memory: MemoryPublisher) -> None:
    request = {"model": "gpt-4.1", "stream": True, "stream_options": {"include_usage": True}, **BODY}
    with client.stream("POST", "/chat/completions", json=request) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]" and len(lines) == len(STREAM_PIECES) + 4
    event = only(memory)
    assert event["streamed"] is True and event["input_tokens"] == 120 and event["output_tokens"] == 45
    assert event["response_model"] == "gpt-4.1" + RESPONSE_SUFFIX
    assert 0 <= event["time_to_first_token_ms"] <= event["duration_ms"]


def test_stream_stalling_is_a_timeout(client: httpx.Client, memory: MemoryPublisher) -> None:
    with (
        pytest.raises(httpx.ReadTimeout),
        client.stream(
            "POST", "/chat/completions", json={"model": "slow-stream", "stream": True, **BODY}
        ) as response,
    ):
        for _ in response.iter_bytes():
            pass
    event = only(memory)
    assert (event["error_type"], event["status_code"], event["streamed"]) == ("timeout", 200, True)


def test_async_transport(gateway: Gateway, memory: MemoryPublisher) -> None:
    async def calls() -> None:
        transport = AsyncRecordingTransport(httpx.AsyncHTTPTransport(), CallRecorder(memory))
        async with httpx.AsyncClient(base_url=gateway.base_url, transport=transport, timeout=1.5) as c:
            await c.post("/chat/completions", json={"model": "gpt-4.1", **BODY})
            await c.post("/chat/completions", json={"model": "rate-limit", **BODY})
            with pytest.raises(httpx.ReadTimeout):
                await c.post("/chat/completions", json={"model": "slow", **BODY})

    asyncio.run(calls())
    ok, limited, timed_out = memory.wire
    assert (ok["input_tokens"], ok["status_code"]) == (120, 200)
    assert (limited["status_code"], limited["error_type"]) == (429, "429")
    assert timed_out["error_type"] == "timeout"


def test_usage_missing_without_usage_non_json_or_closed_early(
    client: httpx.Client, memory: MemoryPublisher
) -> None:
    assert client.post("/chat/completions", json={"model": "no-usage", **BODY}).status_code == 200
    assert client.post("/chat/completions", json={"model": "not-json", **BODY}).text == "OK"
    request = {"model": "no-usage", "stream": True, "stream_options": {"include_usage": True}, **BODY}
    with client.stream("POST", "/chat/completions", json=request) as response:
        assert (
            len([line for line in response.iter_lines() if line.startswith("data:")])
            == len(STREAM_PIECES) + 3
        )
    with client.stream(
        "POST", "/chat/completions", json={"model": "gpt-4.1", "stream": True, **BODY}
    ) as response:
        next(response.iter_bytes())  # closed after the first chunk
    client.post("/chat/completions", json={"model": "gpt-4.1", **BODY})
    client.post("/chat/completions", json={"model": "rate-limit", **BODY})
    assert memory.dead_letters == [] and len(memory.wire) == 6
    no_usage, not_json, stream_without, closed_early, reported, failed = memory.wire
    for event in (no_usage, not_json, stream_without, closed_early):
        assert (event["status_code"], event["usage"]) == (200, "missing") and "input_tokens" not in event
    assert "usage" not in reported and reported["input_tokens"] == 120
    assert "usage" not in failed and failed["status_code"] == 429  # an error costs nothing: not missing


def test_each_requests_key_stays_with_its_event_and_no_global_set_grows(
    gateway: Gateway, memory: MemoryPublisher
) -> None:
    """100 tenants' keys: each request's key is scrubbed from its own event, and none is added to
    the publisher's global set (which a gateway with many tenants would outgrow)."""
    recorder = CallRecorder(memory)
    transport = RecordingTransport(httpx.HTTPTransport(), recorder)
    keys = [f"rotating-key-{i:04d}" for i in range(100)]
    with httpx.Client(base_url=gateway.base_url, transport=transport, timeout=5) as c:
        for key in keys:
            c.post("/chat/completions", json={"model": "gpt-4.1", **BODY}, headers={"x-api-key": key})
    assert memory.policy.secrets == ()
    events = memory.events
    assert len(events) == len(keys)
    recorded = "".join(event.model_dump_json() for event in events)
    assert not [key for key in keys if key in recorded]
