"""The recorder API: what is recorded for each outcome, and that the caller's result is untouched."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from callstream.producers.memory import MemoryPublisher
from callstream.producers.recorder import CallRecorder, call_fields


@pytest.fixture
def memory() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def recorder(memory: MemoryPublisher) -> CallRecorder:
    return CallRecorder(memory)


def test_context_manager_success(recorder: CallRecorder, memory: MemoryPublisher) -> None:
    with recorder.call("gpt-4.1", user_id="u1", metadata={"client_ip": "10.0.0.1"}) as call:
        call.set_usage(
            input_tokens=100, output_tokens=20, cache_read_input_tokens=40, reasoning_output_tokens=5
        )
        call.set(response_model="gpt-4.1-2025-04-14")
    (event,) = memory.events
    assert event.event_id == call.event_id
    assert (event.request_model, event.response_model) == ("gpt-4.1", "gpt-4.1-2025-04-14")
    assert (event.input_tokens, event.output_tokens) == (100, 20)
    assert (event.cache_read_input_tokens, event.reasoning_output_tokens) == (40, 5)
    assert event.status_code == 200 and event.error_type is None
    assert event.user_id == "u1" and event.metadata == {"client_ip": "10.0.0.1"}
    assert event.duration_ms >= 0


def test_context_manager_reraises_the_same_exception(recorder: CallRecorder, memory: MemoryPublisher) -> None:
    original = TimeoutError("gateway took too long")
    with pytest.raises(TimeoutError) as caught, recorder.call("claude-sonnet-4-5"):
        raise original
    assert caught.value is original
    (event,) = memory.events
    assert (event.error_type, event.status_code, event.error_message) == (
        "timeout",
        None,
        "gateway took too long",
    )


def test_decorator_sync_returns_the_result_and_reads_usage(
    recorder: CallRecorder, memory: MemoryPublisher
) -> None:
    result = object()

    @recorder.recorded(usage=lambda r: {"input_tokens": 7, "output_tokens": 3})
    def ask(model: str) -> object:
        return result

    assert ask(model="deepseek-v3.2") is result
    (event,) = memory.events
    assert (event.request_model, event.input_tokens, event.output_tokens) == ("deepseek-v3.2", 7, 3)


def test_decorator_async_records_exceptions(recorder: CallRecorder, memory: MemoryPublisher) -> None:
    @recorder.recorded("gemini-2.5-flash")
    async def ask() -> None:
        raise ConnectionResetError("peer reset")

    with pytest.raises(ConnectionResetError):
        asyncio.run(ask())
    (event,) = memory.events
    assert (event.request_model, event.error_type) == ("gemini-2.5-flash", "connection_error")


def test_failing_usage_extractor_never_hurts_the_caller(
    recorder: CallRecorder, memory: MemoryPublisher
) -> None:
    @recorder.recorded("m", usage=lambda r: r["missing"])
    def ask() -> dict[str, int]:
        return {}

    assert ask() == {}
    (event,) = memory.events
    assert event.metadata["callstream.extraction_error"].startswith("KeyError")


def test_record_http_error_without_exception(recorder: CallRecorder, memory: MemoryPublisher) -> None:
    event_id = recorder.record("gpt-4.1", 230.0, status_code=429, error_message="rate limited")
    (event,) = memory.events
    assert (event.event_id, event.status_code, event.error_type) == (event_id, 429, "429")


def test_invalid_event_is_counted_and_dead_lettered(recorder: CallRecorder, memory: MemoryPublisher) -> None:
    recorder.record("gpt-4.1", 10.0, input_tokens=5, cache_read_input_tokens=50)
    assert memory.events == []
    (letter,) = memory.dead_letters
    assert letter["stage"] == "producer" and "cache_read_input_tokens" in letter["reason"]
    assert recorder.stats().invalid == 1


def test_defaults_apply_to_every_event(memory: MemoryPublisher) -> None:
    recorder = CallRecorder(memory, defaults={"service_name": "support-bot", "provider_name": "holysheep"})
    recorder.record("gpt-4.1", 1.0)
    (event,) = memory.events
    assert (event.service_name, event.provider_name) == ("support-bot", "holysheep")


def test_call_fields_apply_inside_the_block_only(memory: MemoryPublisher) -> None:
    recorder = CallRecorder(memory, defaults={"service_name": "bot", "session_id": "default"})
    with call_fields(session_id="s-42", user_id="u-7"):
        recorder.record("m", 1.0)
        with call_fields(user_id="u-8"):
            recorder.record("m", 1.0)
        recorder.record("m", 1.0, session_id="own")
    recorder.record("m", 1.0)
    got = [(e.session_id, e.user_id, e.service_name) for e in memory.events]
    assert got == [
        ("s-42", "u-7", "bot"),
        ("s-42", "u-8", "bot"),
        ("own", "u-7", "bot"),  # the call's own field wins
        ("default", None, "bot"),
    ]


def test_call_fields_follow_asyncio_tasks(memory: MemoryPublisher) -> None:
    recorder = CallRecorder(memory)

    async def one(session: str) -> None:
        with call_fields(session_id=session):
            await asyncio.sleep(0.01)
            async with recorder.call("m"):
                await asyncio.sleep(0)

    async def both() -> None:
        await asyncio.gather(one("a"), one("b"))

    asyncio.run(both())
    assert sorted(e.session_id or "" for e in memory.events) == ["a", "b"]


def test_each_request_keeps_its_own_secrets_however_many_tenants_call_in_between() -> None:
    """The keys an httpx request carried stay with its event: 200 tenants' keys registered before
    the publisher's thread gets to the first event (more than any global set keeps) never make
    that first key readable in its event."""
    import httpx

    from callstream.producers.httpx_instrumentation import RecordingTransport

    class Later(MemoryPublisher):  # prepares events only when drained, like the publisher's thread
        def __init__(self) -> None:
            super().__init__()
            self.queued: list[dict[str, Any]] = []

        def put(self, item: dict[str, Any]) -> None:
            self.queued.append(item)

        def drain(self) -> None:
            for item in self.queued:
                super().put(item)

    def echo(request: httpx.Request) -> httpx.Response:  # a provider that repeats the key it refused
        body = orjson.dumps({"error": {"message": f"denied for {request.headers['api-key']} here"}})
        return httpx.Response(
            401, stream=httpx.ByteStream(body), headers={"content-type": "application/json"}
        )

    later = Later()
    recorder = CallRecorder(later)
    keys = [f"{i:04d}tenantkey{'ab' * 10}{i:04d}" for i in range(200)]
    with httpx.Client(transport=RecordingTransport(httpx.MockTransport(echo), recorder)) as client:
        for key in keys:
            client.post("https://azure.example/openai/chat/completions", headers={"api-key": key}, json={})
    later.drain()
    assert len(later.wire) == len(keys)
    text = orjson.dumps(later.wire).decode()
    assert all(key not in text for key in keys)
    assert all(event["error_message"] == "denied for [redacted] here" for event in later.wire)
    assert "_secrets" not in text
