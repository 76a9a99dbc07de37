"""Every failure gets a name; timeouts and connection errors get fixed ones whatever raised them."""

from __future__ import annotations

import httpx
import pytest

from callstream.producers.outcome import classify


class StatusError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError("slow"), ("timeout", None, "slow")),
        (httpx.ReadTimeout("read timed out"), ("timeout", None, "read timed out")),
        (httpx.ConnectTimeout("connect timed out"), ("timeout", None, "connect timed out")),
        (ConnectionRefusedError(111, "refused"), ("connection_error", None, "[Errno 111] refused")),
        (httpx.ConnectError("no route"), ("connection_error", None, "no route")),
        (httpx.RemoteProtocolError("hung up"), ("connection_error", None, "hung up")),
        (ValueError("bad"), ("ValueError", None, "bad")),
        (StatusError(429, "slow down"), ("StatusError", 429, "slow down")),
        (KeyboardInterrupt(), ("KeyboardInterrupt", None, None)),
    ],
)
def test_classify(exc: BaseException, expected: tuple[str, int | None, str | None]) -> None:
    assert tuple(classify(exc)) == expected


def test_http_status_error_from_httpx_keeps_its_status() -> None:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(503, request=request)
    exc = httpx.HTTPStatusError("unavailable", request=request, response=response)
    assert classify(exc)[:2] == ("HTTPStatusError", 503)
