"""The public API a service calls to record a finished LLM call, whatever its outcome.

    recorder = CallRecorder()                      # Kafka, settings from the environment
    with recorder.call("gpt-4.1") as call:         # times the block, records exceptions, re-raises
        response = client.chat.completions.create(...)
        call.set_usage(input_tokens=..., output_tokens=...)

    @recorder.recorded("gpt-4.1")                  # sync or async functions
    def ask(...): ...

    recorder.record(request_model="gpt-4.1", duration_ms=812.0, status_code=200, input_tokens=...)

    with call_fields(session_id="s-42", user_id="u-7"):   # every call recorded inside the block,
        client.chat.completions.create(...)              # instrumented clients included

Every method hands a plain dict to the publisher and returns: no validation, encoding or I/O on
the caller's thread, and nothing raised into the caller by the recording itself. The caller's own
result or exception passes through unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
import time
import types
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast

from callstream.producers.outcome import classify, http_outcome
from callstream.producers.publisher import (
    DEFERRED_KEY,
    SECRETS_KEY,
    KafkaPublisher,
    Publisher,
    PublisherStats,
)
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings

P = ParamSpec("P")
R = TypeVar("R")

UsageExtractor = Callable[[Any], Mapping[str, Any] | None]

_NO_FIELDS: Mapping[str, Any] = types.MappingProxyType({})
_CALL_FIELDS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "callstream_call_fields", default=_NO_FIELDS
)


def current_call_fields() -> Mapping[str, Any]:
    """The fields `call_fields` blocks set for this thread or task (empty outside any block)."""
    return _CALL_FIELDS.get()


@contextlib.contextmanager
def call_fields(**fields: Any) -> Iterator[None]:
    """Fields (session_id, user_id, metadata, ...) for every call recorded inside the block, on this
    thread or asyncio task, by any recorder and instrumentation. Blocks nest; the innermost value of
    a field wins, and a call's own fields win over the block's."""
    token = _CALL_FIELDS.set(types.MappingProxyType({**_CALL_FIELDS.get(), **fields}))
    try:
        yield
    finally:
        _CALL_FIELDS.reset(token)


class CallContext:
    """One call in progress. Set what you learn (usage, response model, status); exit records it."""

    __slots__ = ("_done", "_perf", "_recorder", "event_id", "fields", "start_time")

    def __init__(self, recorder: CallRecorder, fields: dict[str, Any]) -> None:
        self._recorder = recorder
        self.fields = fields
        self.event_id: str = fields.get("event_id") or uuid.uuid4().hex
        fields["event_id"] = self.event_id
        self.start_time = time.time()
        self._perf = time.perf_counter()
        self._done = False

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._perf) * 1000.0

    def set_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_input_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        reasoning_output_tokens: int | None = None,
    ) -> None:
        for key, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cache_read_input_tokens", cache_read_input_tokens),
            ("cache_creation_input_tokens", cache_creation_input_tokens),
            ("reasoning_output_tokens", reasoning_output_tokens),
        ):
            if value is not None:
                self.fields[key] = value

    def set(self, **fields: Any) -> None:
        """Any RawCallEvent field: response_model, status_code, user_id, metadata, ..."""
        self.fields.update(fields)

    def first_token(self) -> None:
        """Mark the arrival of the first token of a streamed response (once)."""
        if "time_to_first_token_ms" not in self.fields:
            self.fields["time_to_first_token_ms"] = self.elapsed_ms()
            self.fields["streamed"] = True

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Strings to scrub from this call's event (e.g. the API key its request carried): kept
        with the event, so no number of other calls in between makes them forgotten."""
        kept = self.fields.setdefault(SECRETS_KEY, [])
        kept.extend(s for s in secrets if s and s not in kept)

    def defer(self, extract: Callable[[dict[str, Any]], None]) -> None:
        """Complete the event off the caller's thread, e.g. read usage from a response object."""
        self.fields[DEFERRED_KEY] = extract

    def fail(self, exc: BaseException) -> None:
        """Record the call as failed with this exception (the caller re-raises it)."""
        outcome = classify(exc)
        fields = self.fields
        fields.setdefault("error_type", outcome.error_type)
        if outcome.status_code is not None:
            fields.setdefault("status_code", outcome.status_code)
        if outcome.error_message:
            fields.setdefault("error_message", outcome.error_message)
        self.finish()

    def finish(self) -> None:
        """Record the call (once). Called by the context manager and the instrumentations."""
        if self._done:
            return
        self._done = True
        fields = self.fields
        fields["duration_ms"] = self.elapsed_ms()
        fields["start_time"] = self.start_time
        _default_outcome(fields)
        self._recorder._put(fields)

    def __enter__(self) -> CallContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is not None:
            self.fail(exc)
        else:
            self.finish()
        return False

    async def __aenter__(self) -> CallContext:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


class CallRecorder:
    """Records LLM calls through a publisher (Kafka by default). Thread-safe; one per process is enough."""

    def __init__(
        self,
        publisher: Publisher | None = None,
        *,
        settings: ProducerSettings | None = None,
        kafka: KafkaSettings | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or ProducerSettings()
        self.publisher: Publisher = publisher or KafkaPublisher(self.settings, kafka)
        self._put = self.publisher.put
        self.defaults = dict(defaults or {})

    @property
    def record_bodies(self) -> bool:
        return self.settings.record_bodies

    def _fields(self, request_model: str | None, fields: dict[str, Any]) -> dict[str, Any]:
        scoped = _CALL_FIELDS.get()
        if self.defaults or scoped:
            fields = {**self.defaults, **scoped, **fields}
        if request_model is not None:
            fields["request_model"] = request_model
        return fields

    def record(
        self, request_model: str, duration_ms: float, *, start_time: float | None = None, **fields: Any
    ) -> str:
        """Record a call that already finished; returns its event_id. `start_time` is epoch seconds."""
        item = self._fields(request_model, fields)
        event_id = item.get("event_id") or uuid.uuid4().hex
        item["event_id"] = event_id
        item["duration_ms"] = duration_ms
        if "event_time" not in item:
            item["start_time"] = start_time if start_time is not None else time.time() - duration_ms / 1000.0
        _default_outcome(item)
        self._put(item)
        return str(event_id)

    def call(self, request_model: str, **fields: Any) -> CallContext:
        """Context manager (sync and async) around one call."""
        return CallContext(self, self._fields(request_model, fields))

    def recorded(
        self, request_model: str | None = None, *, usage: UsageExtractor | None = None, **fields: Any
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator recording every call of a function. `request_model` defaults to the function's
        `model` keyword argument; `usage(result)` may return token counts and other fields."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            def begin(kwargs: Mapping[str, Any]) -> CallContext:
                model = request_model or kwargs.get("model") or getattr(func, "__name__", "unknown")
                return self.call(str(model), **fields)

            def end(ctx: CallContext, result: Any) -> None:
                if usage is not None:
                    ctx.defer(functools.partial(_apply_usage, usage, result))
                ctx.finish()

            if inspect.iscoroutinefunction(func):
                async_func = cast(Callable[..., Awaitable[Any]], func)

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    ctx = begin(kwargs)
                    try:
                        result = await async_func(*args, **kwargs)
                    except BaseException as exc:
                        ctx.fail(exc)
                        raise
                    end(ctx, result)
                    return result

                return cast(Callable[P, R], async_wrapper)

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                ctx = begin(kwargs)
                try:
                    result = func(*args, **kwargs)
                except BaseException as exc:
                    ctx.fail(exc)
                    raise
                end(ctx, result)
                return result

            return wrapper

        return decorate

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.publisher.add_secrets(secrets)

    def stats(self) -> PublisherStats:
        return self.publisher.stats()

    def flush(self, timeout_s: float = 10.0) -> bool:
        return self.publisher.flush(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        self.publisher.close(timeout_s)


def _default_outcome(fields: dict[str, Any]) -> None:
    """A call that raised nothing and reported no status is a success (200); an HTTP error status
    without an exception gets error.type = the status code (OpenTelemetry's convention)."""
    if fields.get("error_type") is None:
        status = fields.get("status_code")
        if status is None:
            fields["status_code"] = 200
        else:
            error_type = http_outcome(status)
            if error_type is not None:
                fields["error_type"] = error_type


def _apply_usage(extract: UsageExtractor, result: Any, item: dict[str, Any]) -> None:
    extra = extract(result)
    if extra:
        item.update(extra)


_default: CallRecorder | None = None
_default_lock = threading.Lock()


def get_recorder() -> CallRecorder:
    """The process-wide recorder, created from the environment on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = CallRecorder()
    return _default


def set_recorder(recorder: CallRecorder | None) -> None:
    """Install the process-wide recorder (or forget it, with None)."""
    global _default
    with _default_lock:
        _default = recorder


def record_call(request_model: str, **fields: Any) -> CallContext:
    """`with record_call("gpt-4.1") as call:` on the process-wide recorder."""
    return get_recorder().call(request_model, **fields)


def recorded(
    request_model: str | None = None, *, usage: UsageExtractor | None = None, **fields: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator on the process-wide recorder, resolved at call time (so it may be set up later)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        holder: dict[str, Callable[P, R]] = {}

        def target() -> Callable[P, R]:
            if "f" not in holder:
                holder["f"] = get_recorder().recorded(request_model, usage=usage, **fields)(func)
            return holder["f"]

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await cast(Callable[..., Awaitable[Any]], target())(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return target()(*args, **kwargs)

        return wrapper

    return decorate
