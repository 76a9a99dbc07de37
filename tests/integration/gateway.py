"""A fake OpenAI-compatible gateway (like the ELK tutorial's) on a free loopback port, in a thread.

The requested model picks the behaviour, so one server serves every test case:

- any other model: 200 with usage (USAGE), response model = model + RESPONSE_SUFFIX;
  with "stream": true, server-sent events (role chunk, one chunk per piece of STREAM_PIECES, a
  finish chunk, a usage chunk when stream_options.include_usage is set, then [DONE]);
- "auth-error" 401 (the message echoes the masked API key, as OpenAI's does), "rate-limit" 429,
  "server-error" 500, "bad-request" 400;
- "no-usage": 200 without usage (a gateway that drops it); streamed: no usage chunk, even when asked;
- "not-json": 200 with a plain-text body;
- "slow": answers after SLOW_S seconds (longer than the tests' client timeouts);
- "slow-stream": sends the first chunk, then stalls for SLOW_S seconds;
- "hang-up": closes the connection without answering.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from callstream.infra.local_servers import free_port

USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 45,
    "total_tokens": 165,
    "prompt_tokens_details": {"cached_tokens": 100},
    "completion_tokens_details": {"reasoning_tokens": 20},
}
RESPONSE_SUFFIX = "-2025-04-14"
STREAM_PIECES = ["Hel", "lo", " world"]
SLOW_S = 4.0
ERRORS = {
    "auth-error": (401, "invalid_api_key", "Incorrect API key provided: {key}."),
    "rate-limit": (429, "rate_limit_exceeded", "Rate limit reached for requests. " + "x" * 2000),
    "server-error": (500, "server_error", "The server had an error while processing your request."),
    "bad-request": (400, "invalid_request_error", "Invalid 'messages': empty array."),
}


def _masked(auth: str) -> str:
    key = auth.removeprefix("Bearer ").strip()
    return key[:7] + "*" * 6 + key[-4:] if len(key) > 11 else key


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        model = body.get("model", "")
        if model == "hang-up":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if model == "slow":
            time.sleep(SLOW_S)
        if model == "not-json":
            data = b"OK"
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if model in ERRORS:
            status, code, message = ERRORS[model]
            message = message.format(key=_masked(self.headers.get("authorization", "")))
            self._json(status, {"error": {"message": message, "type": code, "code": code}})
            return
        if body.get("stream"):
            self._stream(model, body)
            return
        if self.path.endswith("/embeddings"):
            usage = {"prompt_tokens": USAGE["prompt_tokens"], "total_tokens": USAGE["prompt_tokens"]}
            vector: Any = [0.25, 0.5]
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack("<2f", 0.25, 0.5)).decode()
            data = [{"object": "embedding", "index": 0, "embedding": vector}]
            self._json(
                200, {"object": "list", "data": data, "model": model + RESPONSE_SUFFIX, "usage": usage}
            )
            return
        self._json(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model + RESPONSE_SUFFIX,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(STREAM_PIECES)},
                        "finish_reason": "stop",
                    }
                ],
                **({} if model == "no-usage" else {"usage": USAGE}),
            },
        )

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> None:
            doc = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model + RESPONSE_SUFFIX,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": usage,
            }
            self.wfile.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
            self.wfile.flush()

        try:
            chunk({"role": "assistant", "content": ""})
            for i, piece in enumerate(STREAM_PIECES):
                chunk({"content": piece})
                if i == 0 and model == "slow-stream":
                    time.sleep(SLOW_S)
            chunk({}, finish="stop")
            if (body.get("stream_options") or {}).get("include_usage") and model != "no-usage":
                chunk(None, usage=USAGE)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that timed out hang up on purpose


class Gateway:
    """`with Gateway() as gw: OpenAI(base_url=gw.base_url, ...)`"""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.requests = []
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gateway", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._server.requests

    def __enter__(self) -> Gateway:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
