"""Record LLM calls made with plain httpx, through a transport wrapper.

    client = httpx.Client(transport=RecordingTransport(httpx.HTTPTransport(), recorder))
    async_client = httpx.AsyncClient(transport=AsyncRecordingTransport(httpx.AsyncHTTPTransport()))

Every request through the transport is one call. The response body is observed as the caller
reads it (nothing is read on the caller's behalf): usage comes from the JSON body or, for a
server-sent-event stream, from the chunk that carries it; the first data chunk gives the time to
first token. A timeout or connection error, raised when sending or while reading the body, is
recorded and re-raised unchanged. Parsing the request (model) and the response (usage) happens
on the publisher's thread. Headers (Authorization, api-key) are never recorded; their values are
kept with the call's event as secrets to scrub from it (CallContext.add_secrets), however many
other calls (other tenants' keys) come in between. A successful response
whose usage cannot be read (no usage in the JSON, a body that is not JSON or too large to parse,
a stream without its usage chunk or closed early) is recorded with `usage="missing"`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from callstream.errors import MissingExtraError

try:
    import httpx
except ImportError as exc:
    raise MissingExtraError("httpx", "httpx") from exc


from callstream.producers.openai_instrumentation import usage_fields
from callstream.producers.recorder import CallContext, CallRecorder, current_call_fields, get_recorder

MAX_BUFFERED_BYTES = 4 * 1024 * 1024
"""A JSON body (or a recorded stream, or one server-sent-event line) beyond this is passed through
to the caller but not kept: memory per call is bounded, and the call's usage is then 'missing'."""
_OPERATION_BY_PATH = (
    ("/chat/completions", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embeddings"),
    ("/responses", "chat"),
    ("/messages", "chat"),
)
_SECRET_HEADERS = (
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-functions-key",
)


def _begin(recorder: CallRecorder, request: httpx.Request, defaults: dict[str, Any]) -> CallContext:
    fields: dict[str, Any] = {**defaults, **current_call_fields()}
    fields["server_address"] = request.url.host or None
    path = request.url.path
    for suffix, operation in _OPERATION_BY_PATH:
        if path.endswith(suffix):
            fields["operation_name"] = operation
            break
    secrets: list[str] = []
    for header in _SECRET_HEADERS:  # keys must not leak through error messages either
        value = request.headers.get(header)
        if value:
            secrets += [value, value.removeprefix("Bearer ").strip()]
    try:
        content: bytes | None = request.content
    except httpx.RequestNotRead:
        content = None
    ctx = recorder.call("unknown", **fields)
    ctx.add_secrets(secrets)
    ctx.defer(functools.partial(_from_request, content, recorder.record_bodies))
    return ctx


def _from_request(content: bytes | None, record_bodies: bool, item: dict[str, Any]) -> None:
    if not content:
        return
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return
    if not isinstance(body, dict):
        return
    model = body.get("model")
    if isinstance(model, str) and model:
        item["request_model"] = model
    user = body.get("user")
    if isinstance(user, str) and user and not item.get("user_id"):
        item["user_id"] = user
    if record_bodies:
        item["request_body"] = body.get("messages", body.get("prompt", body.get("input")))


class _Observer:
    """Watches the response bytes go by; completes the event off the caller's thread."""

    __slots__ = (
        "buffer",
        "ctx",
        "done",
        "first_data",
        "partial",
        "record_bodies",
        "request_extract",
        "sse",
        "status",
        "usage_line",
    )

    def __init__(self, ctx: CallContext, response: httpx.Response, record_bodies: bool) -> None:
        self.ctx = ctx
        self.record_bodies = record_bodies
        self.status = response.status_code
        self.sse = response.headers.get("content-type", "").startswith("text/event-stream")
        self.buffer = bytearray()
        self.partial = b""
        self.first_data: bytes | None = None
        self.usage_line: bytes | None = None
        self.done = False
        self.request_extract = ctx.fields.pop("_deferred", None)
        ctx.fields["status_code"] = self.status
        if self.sse:
            ctx.fields["streamed"] = True

    def feed(self, chunk: bytes) -> None:
        if not self.sse:
            if len(self.buffer) + len(chunk) <= MAX_BUFFERED_BYTES:
                self.buffer += chunk
            return
        if self.record_bodies and len(self.buffer) + len(chunk) <= MAX_BUFFERED_BYTES:
            self.buffer += chunk
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_BUFFERED_BYTES:  # one event line of megabytes: not ours to hold
            self.partial = b""
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            if self.first_data is None:
                self.first_data = line
                self.ctx.first_token()
            if b'"usage":{' in line or b'"usage": {' in line:
                self.usage_line = line

    def finish(self, exc: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        ctx = self.ctx
        ctx.defer(
            functools.partial(
                _from_response,
                self.request_extract,
                self.status,
                self.sse,
                bytes(self.buffer),
                self.first_data,
                self.usage_line,
                self.record_bodies,
            )
        )
        if exc is not None:
            ctx.fail(exc)
        else:
            ctx.finish()


def _from_response(
    request_extract: Any,
    status: int,
    sse: bool,
    body: bytes,
    first_data: bytes | None,
    usage_line: bytes | None,
    record_bodies: bool,
    item: dict[str, Any],
) -> None:
    if request_extract is not None:
        request_extract(item)
    if status >= 400:
        if body:
            item.setdefault("error_message", _error_text(body))
        return
    item["usage"] = "missing"  # until a usage object is found below
    if sse:
        first = _sse_json(first_data)
        if isinstance(first, dict) and isinstance(first.get("model"), str):
            item["response_model"] = first["model"]
        usage_doc = _sse_json(usage_line)
        if isinstance(usage_doc, dict) and isinstance(usage_doc.get("usage"), dict):
            item.update(usage_fields(usage_doc["usage"]))
            item["usage"] = "reported"
        if record_bodies:
            item["response_body"] = body.decode("utf-8", "replace")
        return
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return
    if isinstance(doc, dict):
        if isinstance(doc.get("model"), str):
            item["response_model"] = doc["model"]
        if isinstance(doc.get("usage"), dict):
            item.update(usage_fields(doc["usage"]))
            item["usage"] = "reported"
        if record_bodies:
            texts = [
                (c.get("message") or {}).get("content") or c.get("text") for c in doc.get("choices") or []
            ]
            item["response_body"] = "\n".join(t for t in texts if isinstance(t, str))


def _sse_json(line: bytes | None) -> Any:
    if not line:
        return None
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _error_text(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
        error = doc.get("error") if isinstance(doc, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str):
            return message
    except orjson.JSONDecodeError:
        pass
    return body[:4096].decode("utf-8", "replace")


class _ObservedStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, observer: _Observer) -> None:
        self._inner = inner
        self._observer = observer

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                self._observer.feed(chunk)
                yield chunk
        except BaseException as exc:
            self._observer.finish(exc)
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._observer.finish()


class _AsyncObservedStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, observer: _Observer) -> None:
        self._inner = inner
        self._observer = observer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                self._observer.feed(chunk)
                yield chunk
        except BaseException as exc:
            self._observer.finish(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._observer.finish()


class RecordingTransport(httpx.BaseTransport):
    """Wraps a sync transport (default httpx.HTTPTransport()); records each request as one call."""

    def __init__(
        self, inner: httpx.BaseTransport | None = None, recorder: CallRecorder | None = None, **defaults: Any
    ) -> None:
        self._inner = inner or httpx.HTTPTransport()
        self._recorder = recorder
        self._defaults = defaults

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _begin(self._recorder_now(), request, self._defaults)
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            ctx.fail(exc)  # the request extraction stays deferred on ctx
            raise
        observer = _Observer(ctx, response, self._recorder_now().record_bodies)
        response.stream = _ObservedStream(response.stream, observer)
        return response

    def _recorder_now(self) -> CallRecorder:
        return self._recorder or get_recorder()

    def close(self) -> None:
        self._inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """Wraps an async transport (default httpx.AsyncHTTPTransport()); records each request as one call."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        recorder: CallRecorder | None = None,
        **defaults: Any,
    ) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._recorder = recorder
        self._defaults = defaults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ctx = _begin(self._recorder_now(), request, self._defaults)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            ctx.fail(exc)  # the request extraction stays deferred on ctx
            raise
        observer = _Observer(ctx, response, self._recorder_now().record_bodies)
        response.stream = _AsyncObservedStream(response.stream, observer)
        return response

    def _recorder_now(self) -> CallRecorder:
        return self._recorder or get_recorder()

    async def aclose(self) -> None:
        await self._inner.aclose()
