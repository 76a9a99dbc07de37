"""Record every call of an `openai` client (sync or async, streamed or not), pointed at any
OpenAI-compatible base URL.

    client = instrument_openai(OpenAI(base_url="https://gateway.example/v1"))

`chat.completions.create`, `completions.create` and `embeddings.create` of that client instance
(and of copies made with `with_options`/`copy`) are wrapped. The caller gets the very response
object or exception the client produced; a streamed response is handed back in a transparent
proxy that yields the same chunks and records the call when the stream ends, fails or is closed.
Timeouts and connection errors are recorded as such ('timeout', 'connection_error'), HTTP errors
with their status. Reading usage from the response happens off the caller's thread.

Streamed token counts need the final usage chunk, which the server sends only when the request
asks for it (`stream_options={"include_usage": True}`); callstream does not add it behind the
caller's back, because it changes what the stream yields. A successful response without usage (a
stream without its usage chunk, one closed early, a gateway that drops usage) is recorded with
`usage="missing"`: its tokens are unknown, not zero, and the stream leaves it unpriced.

`openai` is an optional dependency (extra "openai") and is never imported here: the client is duck-typed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from callstream.producers.recorder import CallContext, CallRecorder, current_call_fields, get_recorder

C = TypeVar("C")

_MARK = "__callstream_instrumented__"
# resource attribute path -> gen_ai.operation.name
_OPERATIONS = (("chat.completions", "chat"), ("completions", "text_completion"), ("embeddings", "embeddings"))


def instrument_openai(
    client: C, recorder: CallRecorder | None = None, *, provider_name: str | None = None, **defaults: Any
) -> C:
    """Wrap the client's create methods in place; returns the same client. Idempotent.

    `defaults` are RawCallEvent fields stamped on every event of this client (service_name,
    environment, user_id, session_id, metadata, ...); a `call_fields(...)` block around a call
    overrides them, and `create(user=...)` becomes `user_id` unless one is set already.
    """
    rec = recorder or get_recorder()
    api_key = getattr(client, "api_key", None)
    if isinstance(api_key, str):
        rec.add_secrets([api_key])
    base_url = getattr(client, "base_url", None)
    server = getattr(base_url, "host", None) or None
    for path, operation in _OPERATIONS:
        resource = _resolve(client, path)
        if resource is None:
            continue
        original = getattr(resource, "create", None)
        if original is None or getattr(original, _MARK, False):
            continue
        is_async = inspect.iscoroutinefunction(original) or type(resource).__name__.startswith("Async")
        wrap = _wrap_async if is_async else _wrap_sync
        wrapper = wrap(original, _Site(rec, operation, server, provider_name, defaults))
        setattr(wrapper, _MARK, True)
        resource.create = wrapper
    for name in ("copy", "with_options"):
        _wrap_copy(client, name, rec, provider_name, defaults)
    return client


def _resolve(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _wrap_copy(
    client: Any, name: str, rec: CallRecorder, provider_name: str | None, defaults: Mapping[str, Any]
) -> None:
    original = getattr(client, name, None)
    if original is None or getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def copy(*args: Any, **kwargs: Any) -> Any:
        return instrument_openai(original(*args, **kwargs), rec, provider_name=provider_name, **defaults)

    setattr(copy, _MARK, True)
    # A client class with __slots__ refuses this: its copies then stay uninstrumented.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(client, name, copy)


class _Site:
    """What is fixed for every call through one wrapped method."""

    __slots__ = ("defaults", "operation", "provider", "recorder", "server")

    def __init__(
        self,
        recorder: CallRecorder,
        operation: str,
        server: str | None,
        provider: str | None,
        defaults: Mapping[str, Any],
    ) -> None:
        self.recorder = recorder
        self.operation = operation
        self.server = server
        self.provider = provider
        self.defaults = dict(defaults)

    def begin(self, kwargs: Mapping[str, Any]) -> CallContext:
        fields: dict[str, Any] = {**self.defaults, **current_call_fields()}
        fields["operation_name"] = self.operation
        if self.server:
            fields["server_address"] = self.server
        if self.provider:
            fields["provider_name"] = self.provider
        if kwargs.get("stream"):
            fields["streamed"] = True
        user = kwargs.get("user")
        if isinstance(user, str) and user and "user_id" not in fields:
            fields["user_id"] = user
        if self.recorder.record_bodies:
            body = kwargs.get("messages", kwargs.get("prompt", kwargs.get("input")))
            if body is not None:
                fields["request_body"] = body
        return self.recorder.call(str(kwargs.get("model") or "unknown"), **fields)


def _wrap_sync(original: Callable[..., Any], site: _Site) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        ctx = site.begin(kwargs)
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            ctx.fail(exc)
            raise
        if inspect.isawaitable(result):  # an async method that did not look like one
            return _finish_awaitable(result, ctx, kwargs, site)
        if kwargs.get("stream") and hasattr(result, "__next__"):
            return _StreamProxy(result, ctx, site.recorder.record_bodies)
        _succeed(ctx, result, site.recorder.record_bodies)
        return result

    return create


async def _finish_awaitable(awaitable: Any, ctx: CallContext, kwargs: Mapping[str, Any], site: _Site) -> Any:
    try:
        result = await awaitable
    except BaseException as exc:
        ctx.fail(exc)
        raise
    if kwargs.get("stream") and hasattr(result, "__anext__"):
        return _AsyncStreamProxy(result, ctx, site.recorder.record_bodies)
    _succeed(ctx, result, site.recorder.record_bodies)
    return result


def _wrap_async(original: Callable[..., Any], site: _Site) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(*args: Any, **kwargs: Any) -> Any:
        ctx = site.begin(kwargs)
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            ctx.fail(exc)
            raise
        if kwargs.get("stream") and hasattr(result, "__anext__"):
            return _AsyncStreamProxy(result, ctx, site.recorder.record_bodies)
        _succeed(ctx, result, site.recorder.record_bodies)
        return result

    return create


def _succeed(ctx: CallContext, result: Any, record_bodies: bool) -> None:
    ctx.fields["status_code"] = 200
    ctx.defer(functools.partial(_from_response, result, record_bodies))
    ctx.finish()


# ---- reading responses (runs on the publisher's thread) ----


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def usage_fields(usage: Any) -> dict[str, int]:
    """OpenAI usage -> RawCallEvent token fields (also tolerates the Responses API's names)."""
    if usage is None:
        return {}
    prompt = _get(usage, "prompt_tokens")
    if prompt is None:
        prompt = _get(usage, "input_tokens")
    completion = _get(usage, "completion_tokens")
    if completion is None:
        completion = _get(usage, "output_tokens")
    prompt_details = _get(usage, "prompt_tokens_details") or _get(usage, "input_tokens_details")
    completion_details = _get(usage, "completion_tokens_details") or _get(usage, "output_tokens_details")
    fields = {
        "input_tokens": prompt or 0,
        "output_tokens": completion or 0,
        "cache_read_input_tokens": _get(prompt_details, "cached_tokens") or 0,
        "cache_creation_input_tokens": (
            _get(prompt_details, "cache_write_tokens") or _get(usage, "cache_creation_input_tokens") or 0
        ),
        "reasoning_output_tokens": _get(completion_details, "reasoning_tokens") or 0,
    }
    return {key: int(value) for key, value in fields.items()}


def _from_response(result: Any, record_bodies: bool, item: dict[str, Any]) -> None:
    model = _get(result, "model")
    if isinstance(model, str) and model:
        item["response_model"] = model
    usage = _get(result, "usage")
    if usage is None:
        item["usage"] = "missing"
    item.update(usage_fields(usage))
    if record_bodies:
        choices = _get(result, "choices") or []
        texts = [_get(_get(c, "message"), "content") or _get(c, "text") for c in choices]
        item["response_body"] = "\n".join(t for t in texts if isinstance(t, str))


def _from_stream(
    model: str | None, usage: Any, text: list[str] | None, started: bool, item: dict[str, Any]
) -> None:
    if model:
        item["response_model"] = model
    if usage is None and (started or item.get("error_type") is None):
        item["usage"] = "missing"  # no usage chunk, or closed early: tokens were spent, count unknown
    item.update(usage_fields(usage))
    if text is not None:
        item["response_body"] = "".join(text)


# ---- streamed responses ----


class _StreamState:
    """What a stream proxy learns from the chunks it passes through (attribute reads only)."""

    __slots__ = ("ctx", "finished", "first_chunk_ms", "model", "text", "usage")

    def __init__(self, ctx: CallContext, record_bodies: bool) -> None:
        self.ctx = ctx
        self.model: str | None = None
        self.usage: Any = None
        self.text: list[str] | None = [] if record_bodies else None
        self.first_chunk_ms: float | None = None
        self.finished = False

    def chunk(self, chunk: Any) -> None:
        ctx = self.ctx
        if self.first_chunk_ms is None:
            self.first_chunk_ms = ctx.elapsed_ms()
            self.model = getattr(chunk, "model", None)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
        choices = getattr(chunk, "choices", None)
        if choices:
            delta = getattr(choices[0], "delta", None)
            content = (
                getattr(delta, "content", None) if delta is not None else getattr(choices[0], "text", None)
            )
            if content or (delta is not None and getattr(delta, "tool_calls", None)):
                ctx.first_token()
                if self.text is not None and isinstance(content, str):
                    self.text.append(content)

    def finish(self, exc: BaseException | None = None, note: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        ctx = self.ctx
        if "time_to_first_token_ms" not in ctx.fields and self.first_chunk_ms is not None:
            ctx.fields["time_to_first_token_ms"] = self.first_chunk_ms
        started = self.first_chunk_ms is not None
        ctx.defer(functools.partial(_from_stream, self.model, self.usage, self.text, started))
        if note:
            metadata = dict(ctx.fields.get("metadata") or {})
            metadata["callstream.stream"] = note
            ctx.fields["metadata"] = metadata
        if exc is not None:
            ctx.fail(exc)
        else:
            ctx.fields.setdefault("status_code", 200)
            ctx.finish()


class _Proxy:
    """What both stream proxies share: the wrapped stream's other attributes pass through, and a
    stream dropped before its end is still recorded (with a note saying so)."""

    __slots__ = ("_state", "_stream")

    def __init__(self, stream: Any, ctx: CallContext, record_bodies: bool) -> None:
        self._stream = stream
        self._state = _StreamState(ctx, record_bodies)

    def __getattr__(self, name: str) -> Any:
        if name in ("_stream", "_state"):  # not set yet (failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None and not state.finished:
            state.finish(note="abandoned_before_end")


class _StreamProxy(_Proxy):
    """Behaves like openai.Stream; records the call when iteration ends, fails or the stream closes."""

    __slots__ = ()

    def __iter__(self) -> _StreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            chunk = self._stream.__next__()
        except StopIteration:
            self._state.finish()
            raise
        except BaseException as exc:
            self._state.finish(exc)
            raise
        self._state.chunk(chunk)
        return chunk

    def __enter__(self) -> _StreamProxy:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._state.finish(note=None if self._state.finished else "closed_before_end")


class _AsyncStreamProxy(_Proxy):
    """Behaves like openai.AsyncStream; records the call when iteration ends, fails or the stream closes."""

    __slots__ = ()

    def __aiter__(self) -> _AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._state.finish()
            raise
        except BaseException as exc:
            self._state.finish(exc)
            raise
        self._state.chunk(chunk)
        return chunk

    async def __aenter__(self) -> _AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._state.finish(note=None if self._state.finished else "closed_before_end")
