"""A webhook receiver on loopback: what the demo, the alert benchmark and the tests point the
alert worker at. It keeps every request (arrival time, path, headers, JSON body) and can be told
to answer with errors first, to exercise retries. Not for production use.

It also shows what a receiver should do with callstream's notifications: drop events whose
`event_id` it has already taken (`events()` counts each event once; `requests` keeps every POST).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    at: float  # time.time() on arrival
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with `fail_status` before accepting
    fail_status: int = 503  # the failure's body names the path, as some servers do
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                status = receiver._accept(Received(time.time(), self.path, dict(self.headers), body))
                answer = b"ok" if status == 200 else f"no such hook: {self.path}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def _accept(self, received: Received) -> int:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                status = self.fail_status
            else:
                status = 200
                self.requests.append(received)
        with self._arrived:
            self._arrived.notify_all()
        return status

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def accepted(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def events(self, path: str = "/webhook") -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, event) of every distinct event_id accepted at `path` (webhook payloads)."""
        seen: set[str] = set()
        out = []
        for received in self.accepted(path):
            if not isinstance(received.body, dict):
                continue
            for event in received.body.get("events", []):
                if event["event_id"] not in seen:
                    seen.add(event["event_id"])
                    out.append((received.at, event))
        return out

    def wait(self, condition: Any, timeout_s: float) -> bool:
        """Wait until `condition(self)` is true (checked on every arrival and every second)."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class SmtpReceiver:
    """A real SMTP server on loopback (aiosmtpd, a development dependency) that keeps every message."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Any] = field(default_factory=list)
    _controller: Any = None

    def start(self) -> SmtpReceiver:
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        from callstream.infra.local_servers import free_port

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = message_from_bytes(envelope.original_content, policy=policy.default)
                receiver.messages.append((time.time(), list(envelope.rcpt_tos), message))
                return "250 Message accepted for delivery"

        self.port = self.port or free_port(self.host)
        self._controller = Controller(Handler(), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def close(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
