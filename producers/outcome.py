"""How a failed call is named: error.type, HTTP status and message, from whatever exception it raised.

Timeouts and connection errors get fixed names ('timeout', 'connection_error') whichever client
raised them, because a client that logs only after a response loses exactly these. Everything
here is cheap enough to run on the caller's thread: isinstance checks and attribute reads, no
formatting of large strings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"


class Outcome(NamedTuple):
    error_type: str | None
    status_code: int | None
    error_message: str | None


# Matched by class name along the exception's MRO, so that no client library needs importing (openai
# is optional, and it ships its own httpx fork). Timeouts first: several clients derive their timeout
# from their connection error (openai.APITimeoutError, requests.ConnectTimeout).
TIMEOUT_NAMES = frozenset(
    {
        "TimeoutError",  # builtin; also socket.timeout and asyncio.TimeoutError
        "APITimeoutError",  # openai, anthropic
        "TimeoutException",  # httpx: ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
        "Timeout",  # requests
        "ServerTimeoutError",  # aiohttp
    }
)
CONNECTION_NAMES = frozenset(
    {
        "ConnectionError",  # builtin (refused, reset, aborted) and requests
        "APIConnectionError",  # openai, anthropic
        "NetworkError",  # httpx: ConnectError, ReadError, WriteError, CloseError
        "ProxyError",
        "RemoteProtocolError",  # httpx: the server hung up mid-response
        "ClientConnectionError",  # aiohttp
    }
)


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def classify(exc: BaseException) -> Outcome:
    """error.type, HTTP status (if the server answered) and the raw message of an exception."""
    status = _status_of(exc)
    if status is None:
        if _named(exc, TIMEOUT_NAMES):
            return Outcome(TIMEOUT, None, _message_of(exc))
        if _named(exc, CONNECTION_NAMES):
            return Outcome(CONNECTION_ERROR, None, _message_of(exc))
    return Outcome(type(exc).__name__, status, _message_of(exc))


def _status_of(exc: BaseException) -> int | None:
    status: Any = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) and 100 <= status <= 599 else None


def _message_of(exc: BaseException) -> str | None:
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc) if exc.args else None
    return message[:8192] if message else None


def http_outcome(status_code: int | None) -> str | None:
    """error.type for an HTTP response that raised nothing: the status code (OTel convention) for
    4xx/5xx, None for a success."""
    return str(status_code) if status_code is not None and status_code >= 400 else None
