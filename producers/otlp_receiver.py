"""`callstream otlp`: an OpenTelemetry receiver (OTLP/HTTP and OTLP/GRPC traces) that publishes
the GenAI call spans it is sent through the producer's own path.

A thin shell around pure parts: producers.otlp_decode reads a request, producers.otlp_mapping
turns each span into a producer item, and the one `Publisher` (producers.publisher: validation,
redaction, packing, the spool) publishes it. This module only moves bytes, answers as the OTLP
specification says, and counts:

- 200 with an `ExportTraceServiceResponse`; `partial_success` counts the GenAI spans that could not
  be call events and says why (spans that are no GenAI call are counted and ignored, not rejected);
- 400 for a body it cannot decode, 413 for one too large, 415 for a content type or encoding it does
  not take, 401 without the bearer token when one is configured;
- 503 (gRPC: UNAVAILABLE) with `Retry-After` while Kafka is away and the spool has no room left,
  429 while Kafka is up but the queue and the spool are both full: the exporter keeps its spans and
  retries, nothing accepted is ever dropped;
- on SIGTERM: stop taking connections, finish the requests being handled, then close the
  publisher (publish what is queued, wait for acknowledgements, spool the rest).
"""

from __future__ import annotations

import hmac
import select
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from callstream import logs
from callstream.producers.otlp_decode import (
    CODE_INVALID_ARGUMENT,
    CODE_RESOURCE_EXHAUSTED,
    CODE_UNAUTHENTICATED,
    CODE_UNAVAILABLE,
    Encoding,
    RequestError,
    decode_request,
    encoding_of,
    spans_of,
    status_body,
    success_body,
)
from callstream.producers.otlp_mapping import Ignored, Rejected, Span, span_to_item
from callstream.producers.publisher import Publisher, PublisherStats
from callstream.producers.redaction import scrub
from callstream.producers.settings import OtlpSettings, ProducerSettings

log = logs.get(__name__)

TRACES_PATH = "/v1/traces"
IDLE_TIMEOUT_S = 30.0
"""A keep-alive connection with no new request for this long is closed."""
SOCKET_TIMEOUT_S = 30.0
"""A request whose bytes stop arriving for this long is abandoned (no slow client holds a thread)."""
MAX_REASONS = 3
"""Reasons quoted in a partial_success message; the count covers all rejected spans."""


@dataclass
class OtlpStats:
    """Counts since start (exposed as callstream_otlp_<name>_total)."""

    requests: int = 0
    spans_received: int = 0
    spans_accepted: int = 0  # GenAI call spans handed to the publisher
    spans_ignored: int = 0  # spans that are no GenAI call
    spans_rejected: int = 0  # GenAI spans that could not be call events (told in partial_success)
    requests_refused: int = 0  # 4xx: undecodable, too large, wrong type, unauthenticated
    requests_throttled: int = 0  # 429/503: Kafka away and no room to keep spans
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class Throttled(Exception):
    """No room to keep more spans: answer 429/503 with Retry-After."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refusal(
    stats: PublisherStats, queue_max: int, spool_max_bytes: int, headroom_bytes: int
) -> Throttled | None:
    """Whether a request must be refused so that no accepted span is ever dropped: the publisher
    keeps spans in its queue while Kafka is up, and in its spool (while it has room) when Kafka is
    away or the queue is full."""
    memory_room = stats.kafka_available and stats.queue_depth < queue_max
    spool_room = spool_max_bytes > 0 and stats.spool_bytes + headroom_bytes < spool_max_bytes
    if memory_room or spool_room:
        return None
    if not stats.kafka_available:
        spool = "spool is off" if spool_max_bytes <= 0 else "spool is full"
        return Throttled(503, f"Kafka is unreachable and the {spool}: retry later")
    return Throttled(429, "the queue and the spool are full: retry later")


@dataclass(frozen=True)
class ExportResult:
    rejected: int
    message: str


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


CONTENT_TYPES: dict[Encoding, str] = {"protobuf": "application/x-protobuf", "json": "application/json"}


class OtlpReceiver:
    """What both transports share: authentication, admission, mapping and handing spans over."""

    def __init__(
        self,
        publisher: Publisher,
        settings: OtlpSettings | None = None,
        producer: ProducerSettings | None = None,
    ) -> None:
        self.publisher = publisher
        self.settings = settings or OtlpSettings()
        self.producer = producer or ProducerSettings()
        self.stats = OtlpStats()
        token = self.settings.bearer_token
        self._token = token.get_secret_value().encode() if token is not None else None
        self._slots = threading.BoundedSemaphore(self.settings.max_concurrent_requests)
        self._log_budget: Counter[str] = Counter()
        if self._token:
            publisher.add_secrets([self._token.decode()])  # never recorded, even in an error message

    # ---- shared ----

    def authorised(self, authorization: str | None) -> bool:
        if self._token is None:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self._token)

    def refusal(self) -> Throttled | None:
        return refusal(
            self.publisher.stats(),
            self.producer.queue_max_events,
            self.producer.spool_max_bytes,
            self.settings.spool_headroom_bytes,
        )

    def export(self, spans: Sequence[Span]) -> ExportResult:
        """Map the spans and hand the calls to the publisher. Raises Throttled when there is no room."""
        throttled = self.refusal()
        if throttled is not None:
            self.stats.add(requests_throttled=1)
            raise throttled
        items: list[dict[str, Any]] = []
        reasons: list[str] = []
        ignored = 0
        for span in spans:
            mapped = span_to_item(span)
            if isinstance(mapped, Ignored):
                ignored += 1
            elif isinstance(mapped, Rejected):
                reasons.append(mapped.reason)
            else:
                items.append(mapped)
        for item in items:
            self.publisher.put(item)
        self.stats.add(
            spans_received=len(spans),
            spans_accepted=len(items),
            spans_ignored=ignored,
            spans_rejected=len(reasons),
        )
        if not reasons:
            return ExportResult(0, "")
        for reason in reasons[:MAX_REASONS]:
            self._warn("GenAI span rejected", reason=reason)
        more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
        message = f"{len(reasons)} GenAI spans rejected: " + "; ".join(reasons[:MAX_REASONS]) + more
        return ExportResult(len(reasons), scrub(message))

    def _warn(self, message: str, **fields: Any) -> None:
        """The first 10 of each kind, then every 1000th: a misbehaving exporter must not flood the logs."""
        self._log_budget[message] += 1
        seen = self._log_budget[message]
        if seen <= 10 or seen % 1000 == 0:
            log.warning(message, occurrences=seen, **fields)

    # ---- OTLP/HTTP ----

    def handle_http(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """One POST: the reply the specification prescribes. Never raises."""
        self.stats.add(requests=1)
        content_type = headers.get("content-type")
        encoding: Encoding = (
            "json" if (content_type or "").lower().startswith("application/json") else "protobuf"
        )
        try:
            if path.split("?", 1)[0] != TRACES_PATH:
                raise RequestError(404, f"not found: OTLP traces are posted to {TRACES_PATH}")
            if not self.authorised(headers.get("authorization")):
                raise RequestError(401, "missing or wrong bearer token")
            encoding = encoding_of(content_type)
            if not self._slots.acquire(timeout=1.0):
                raise Throttled(503, "too many requests at once: retry later")
            try:
                decoded = decode_request(
                    body,
                    content_type,
                    headers.get("content-encoding"),
                    max_request_bytes=self.settings.max_request_bytes,
                    max_decompressed_bytes=self.settings.max_decompressed_bytes,
                )
                result = self.export(decoded.spans)
            finally:
                self._slots.release()
        except RequestError as exc:
            self.stats.add(requests_refused=1)
            self._warn("OTLP request refused", status=exc.status, reason=exc.message[:200])
            code = CODE_UNAUTHENTICATED if exc.status == 401 else CODE_INVALID_ARGUMENT
            return Reply(exc.status, status_body(code, exc.message, encoding), CONTENT_TYPES[encoding])
        except Throttled as exc:
            self._warn("OTLP request throttled", status=exc.status, reason=exc.reason)
            code = CODE_UNAVAILABLE if exc.status == 503 else CODE_RESOURCE_EXHAUSTED
            return Reply(
                exc.status,
                status_body(code, exc.reason, encoding),
                CONTENT_TYPES[encoding],
                {"Retry-After": str(self.settings.retry_after_s)},
            )
        except Exception as exc:  # a bug must cost one request, never the receiver
            log.error("OTLP request failed", error=scrub(f"{type(exc).__name__}: {exc}")[:300])
            return Reply(500, status_body(13, "internal error", encoding), CONTENT_TYPES[encoding])
        return Reply(200, success_body(result.rejected, result.message, encoding), CONTENT_TYPES[encoding])


# ---- servers ----


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests being handled
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], receiver: OtlpReceiver, context: ssl.SSLContext | None
    ) -> None:
        self.receiver = receiver
        self.stopping = threading.Event()
        super().__init__(address, _Handler)
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:  # requests are counted, not logged
        pass

    def handle(self) -> None:
        """Keep-alive, but between requests look at the stop flag: a stop never waits for an idle
        connection, and never cuts a request that is being handled."""
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection and self._next_request_arrives():
                self.handle_one_request()
        except (OSError, ssl.SSLError):
            pass  # the client went away or spoke no TLS: its connection only

    def _next_request_arrives(self) -> bool:
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if readable:
                return True
        return False

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length_header = self.headers.get("content-length")
        limit = receiver.settings.max_request_bytes
        if length_header is None:
            body = (
                self._read_chunked(limit) if "chunked" in self.headers.get("transfer-encoding", "") else b""
            )
        else:
            try:
                length = int(length_header)
            except ValueError:
                length = -1
            if length < 0 or length > limit:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                text = f"request body over {limit} bytes" if length > limit else "bad Content-Length"
                reply = Reply(413 if length > limit else 400, text.encode(), "text/plain; charset=utf-8")
                self._send(reply)
                return
            body = self.rfile.read(length)
        if body is None:
            self.close_connection = True
            self._send(Reply(413, f"request body over {limit} bytes".encode(), "text/plain; charset=utf-8"))
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        self._send(receiver.handle_http(self.path, headers, body))

    def _read_chunked(self, limit: int) -> bytes | None:
        out = bytearray()
        while True:
            size_line = self.rfile.readline(64)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                self.rfile.readline(64)
                return bytes(out)
            if len(out) + size > limit:
                return None
            out += self.rfile.read(size)
            self.rfile.readline(64)

    def do_GET(self) -> None:
        self._send(
            Reply(405, b"POST OTLP traces to /v1/traces\n", "text/plain; charset=utf-8", {"Allow": "POST"})
        )

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection or self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)


def _tls_context(settings: OtlpSettings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


class _GrpcServer:
    """OTLP/gRPC TraceService/Export on grpcio, sharing the receiver's admission and mapping."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        settings = receiver.settings
        self._grpc = grpc

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                receiver.stats.add(requests=1)
                metadata = {key.lower(): value for key, value in context.invocation_metadata()}
                if not receiver.authorised(metadata.get("authorization")):
                    receiver.stats.add(requests_refused=1)
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
                try:
                    result = receiver.export(list(spans_of(request)))
                except Throttled as exc:
                    context.abort(grpc.StatusCode.UNAVAILABLE, exc.reason)
                response = ExportTraceServiceResponse()
                if result.rejected:
                    response.partial_success.rejected_spans = result.rejected
                    response.partial_success.error_message = result.message[:1_000]
                return response

        self.server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=settings.max_concurrent_requests, thread_name_prefix="otlp-grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", settings.max_decompressed_bytes),
                ("grpc.max_concurrent_streams", settings.max_concurrent_requests),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        address = f"{settings.host}:{settings.grpc_port}"
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
            )
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        self.server.start()

    def stop(self, grace_s: float) -> None:
        self.server.stop(grace_s).wait()


@dataclass
class RunningReceiver:
    """The servers of one receiver; `stop()` is the clean stop (also what SIGTERM does)."""

    receiver: OtlpReceiver
    http: _HttpServer | None
    grpc: _GrpcServer | None
    http_port: int | None
    grpc_port: int | None
    _thread: threading.Thread | None = None

    def stop(self, grace_s: float = 30.0) -> None:
        """No new connections; finish the requests being handled; then close the publisher."""
        if self.http is not None:
            self.http.stopping.set()
            self.http.shutdown()
            self.http.server_close()  # joins the handler threads: every accepted span is queued
        if self.grpc is not None:
            self.grpc.stop(grace_s)
        self.receiver.publisher.close()


def start(receiver: OtlpReceiver) -> RunningReceiver:
    """Listen on the configured ports (0: a free one); returns the bound ports."""
    settings = receiver.settings
    http = grpc = None
    thread = None
    try:
        if settings.http_port is not None:
            http = _HttpServer((settings.host, settings.http_port), receiver, _tls_context(settings))
            thread = threading.Thread(target=http.serve_forever, name="otlp-http", daemon=True)
            thread.start()
        if settings.grpc_port is not None:
            grpc = _GrpcServer(receiver)
    except Exception:
        if http is not None:
            http.shutdown()
            http.server_close()
        raise
    running = RunningReceiver(
        receiver,
        http,
        grpc,
        int(http.server_address[1]) if http is not None else None,
        grpc.port if grpc is not None else None,
        thread,
    )
    scheme = "https" if settings.tls_cert_file else "http"
    log.info(
        "OTLP receiver listening",
        http=f"{scheme}://{settings.host}:{running.http_port}{TRACES_PATH}" if http is not None else None,
        grpc=f"{settings.host}:{running.grpc_port}" if grpc is not None else None,
        auth="bearer" if settings.bearer_token is not None else "none",
    )
    return running


def exposed_counts(receiver: OtlpReceiver) -> Callable[[], dict[str, float]]:
    """The receiver's counts and its publisher's, for Metrics.expose."""

    def read() -> dict[str, float]:
        publisher = {f"publisher_{k}": float(v) for k, v in asdict(receiver.publisher.stats()).items()}
        return {k: float(v) for k, v in receiver.stats.snapshot().items()} | publisher

    return read


PUBLISHER_GAUGES = (
    "publisher_queue_depth",
    "publisher_in_flight",
    "publisher_spool_bytes",
    "publisher_kafka_available",
)
