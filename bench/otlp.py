"""`callstream bench otlp`: spans per second one `callstream otlp` accepts and publishes over
OTLP/HTTP protobuf, against a plain HTTP server that only reads the same bodies (same run, same
client), and how long a span waits before it is in Kafka.

The client posts pre-built `ExportTraceServiceRequest` bodies (GenAI call spans with openai-v2's
attributes, `--spans-per-request` each) on `--connections` keep-alive connections, back to back.
- baseline: a ThreadingHTTPServer (a separate process, like the receiver) that reads each body and
  answers an empty ExportTraceServiceResponse;
- receiver: `callstream otlp` (a separate process) against local Kafka; its rate counts a span once
  a consumer reading the raw topic has seen its event, so it is spans accepted *and* published.
Latency: from the moment a request is sent to the moment the consumer sees each of its spans
(an upper bound of the time in the receiver and Kafka: it includes the consumer's fetch).
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import typer

from callstream.settings import KafkaSettings

REPO = Path(__file__).resolve().parent.parent
PROTO = "application/x-protobuf"


def build_bodies(requests: int, spans_per_request: int, run: str) -> list[bytes]:
    """Distinct requests of distinct GenAI call spans (ids derived from the run and the position)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key: str, value: str | int) -> KeyValue:
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    attributes = [
        kv("gen_ai.operation.name", "chat"),
        kv("gen_ai.provider.name", "openai"),
        kv("gen_ai.request.model", "gpt-4.1"),
        kv("gen_ai.response.model", "gpt-4.1-2025-04-14"),
        kv("gen_ai.usage.input_tokens", 812),
        kv("gen_ai.usage.output_tokens", 95),
        kv("gen_ai.usage.cache_read.input_tokens", 512),
        kv("server.address", "api.openai.com"),
        kv("gen_ai.response.id", "chatcmpl-0123456789"),
    ]
    now_ns = time.time_ns()
    trace_base = uuid.uuid5(uuid.NAMESPACE_OID, run).bytes
    bodies = []
    for r in range(requests):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(kv("service.name", "bench"))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "opentelemetry.instrumentation.openai_v2"
        for s in range(spans_per_request):
            span = scope_spans.spans.add()
            span.trace_id = trace_base[:8] + r.to_bytes(8, "big")
            span.span_id = (s + 1).to_bytes(8, "big")
            span.name = "chat gpt-4.1"
            span.kind = 3
            span.start_time_unix_nano = now_ns
            span.end_time_unix_nano = now_ns + 850_000_000
            span.attributes.extend(attributes)
        bodies.append(request.SerializeToString())
    return bodies


def serve_plain(port: int) -> None:
    """The baseline: read each body whole, answer an empty ExportTraceServiceResponse."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", PROTO)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


def post_all(port: int, bodies: list[bytes], connections: int) -> tuple[float, list[float], int]:
    """Post every body (split over `connections` keep-alive connections); returns the seconds it
    took, the send time of each body, and how many answers were not 200."""
    sent_at = [0.0] * len(bodies)
    failures = [0]
    lock = threading.Lock()

    def worker(indices: range) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in indices:
            while True:
                sent_at[i] = time.monotonic()
                connection.request("POST", "/v1/traces", bodies[i], {"Content-Type": PROTO})
                response = connection.getresponse()
                response.read()
                if response.status in (429, 503):  # the receiver asks to wait: do as exporters do
                    time.sleep(float(response.getheader("Retry-After") or 1))
                    continue
                if response.status != 200:
                    with lock:
                        failures[0] += 1
                break
        connection.close()

    threads = [
        threading.Thread(target=worker, args=(range(c, len(bodies), connections),))
        for c in range(connections)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start, sent_at, failures[0]


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class RawWatcher:
    """Reads the raw topic from the start; the time each event id was first seen."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        from confluent_kafka import Consumer

        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            kafka.confluent_config()
            | {
                "group.id": f"bench-otlp-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            at = time.monotonic()
            value = orjson.loads(message.value())
            for event in value if isinstance(value, list) else [value]:
                self.seen.setdefault(event["event_id"], at)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.seen) >= count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(
    kafka_base: KafkaSettings,
    server_env: dict[str, str],
    workdir: Path,
    requests: int,
    spans_per_request: int,
    connections: int,
) -> dict[str, Any]:
    from callstream import topics
    from callstream.infra.local_servers import free_port
    from callstream.infra.setup import create_topics
    from callstream.producers.otlp_mapping import event_id

    run = f"otlp{uuid.uuid4().hex[:6]}"
    kafka = kafka_base.model_copy(update={"topic_prefix": run})
    create_topics(kafka)
    bodies = build_bodies(requests, spans_per_request, run)
    spans = requests * spans_per_request
    env = (
        dict(os.environ)
        | server_env
        | {"CALLSTREAM_KAFKA_TOPIC_PREFIX": run, "PYTHONUNBUFFERED": "1", "CALLSTREAM_OTLP_METRICS_PORT": "0"}
    )

    # baseline: the same bodies to a server that only reads them
    port = free_port()
    plain = subprocess.Popen(
        [sys.executable, "-c", f"from bench.otlp import serve_plain; serve_plain({port})"],
        cwd=REPO,
        env=env,
        stdout=(workdir / "plain.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, plain)
        post_all(port, bodies[: max(1, requests // 10)], connections)  # warm up
        plain_s, _, plain_failures = post_all(port, bodies, connections)
    finally:
        _stop(plain)

    # the receiver, against Kafka, counted when its spans are in the raw topic
    port = free_port()
    watcher = RawWatcher(kafka, kafka.topic(topics.RAW))
    receiver = subprocess.Popen(
        [sys.executable, "-m", "callstream.cli", "otlp", "--http-port", str(port), "--no-grpc"],
        cwd=REPO,
        env=env | {"CALLSTREAM_PRODUCER_SPOOL_DIR": str(workdir / "spool")},
        stdout=(workdir / "otlp.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, receiver)
        start = time.monotonic()
        posted_s, sent_at, failures = post_all(port, bodies, connections)
        delivered = watcher.wait_for(spans, 300)
        published_s = max(watcher.seen.values(), default=start) - start
    finally:
        _stop(receiver)
        watcher.close()
    waits = []
    for r, body_sent in enumerate(sent_at):
        trace = uuid.uuid5(uuid.NAMESPACE_OID, run).bytes[:8] + r.to_bytes(8, "big")
        for s in range(spans_per_request):
            at = watcher.seen.get(event_id(trace, (s + 1).to_bytes(8, "big")))
            if at is not None:
                waits.append((at - body_sent) * 1000)
    plain_rate = spans / plain_s
    receiver_rate = spans / max(posted_s, published_s)
    return {
        "spans": spans,
        "spans_per_request": spans_per_request,
        "connections": connections,
        "plain_spans_per_s": round(plain_rate),
        "receiver_spans_per_s": round(receiver_rate),
        "ratio": round(receiver_rate / plain_rate, 3),
        "receiver_accept_s": round(posted_s, 3),
        "receiver_published_s": round(published_s, 3),
        "wait_p50_ms": round(_quantile(waits, 0.5), 1) if waits else None,
        "wait_p99_ms": round(_quantile(waits, 0.99), 1) if waits else None,
        "all_delivered": delivered and len(waits) == spans,
        "refused_requests": failures + plain_failures,
    }


def command(
    requests: int = typer.Option(400, help="Requests posted to each server"),
    spans_per_request: int = typer.Option(100, help="GenAI call spans in each request"),
    connections: int = typer.Option(4, help="Keep-alive client connections posting at once"),
    engine: str = typer.Option(
        "embedded", help="Local servers to start: embedded (noida-db) or real (Apache Kafka; Java)"
    ),
    external: bool = typer.Option(False, help="Use the Kafka of CALLSTREAM_KAFKA_* instead of starting one"),
) -> None:
    """Spans/s one OTLP receiver accepts and publishes, against a server that only reads the bodies."""
    from rich.console import Console

    from callstream.infra import local_servers

    console = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="callstream-bench-otlp-"))
    try:
        with contextlib.ExitStack() as stack:
            server_env: dict[str, str] = {}
            if external:
                kafka = KafkaSettings()
            else:
                servers = stack.enter_context(local_servers.running(engine, workdir / engine))
                kafka, server_env = servers.kafka_settings(), servers.env()
            console.print(f"posting {requests} x {spans_per_request} spans on {connections} connections ...")
            result = measure(kafka, server_env, workdir, requests, spans_per_request, connections)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["broker"] = "external" if external else f"{engine} engine"
    console.print(
        f"plain server {result['plain_spans_per_s']} spans/s; "
        f"callstream otlp {result['receiver_spans_per_s']} spans/s accepted and in Kafka "
        f"(ratio {result['ratio']}); wait p50 {result['wait_p50_ms']} ms, "
        f"p99 {result['wait_p99_ms']} ms; all delivered: {result['all_delivered']}"
    )
    print(json.dumps(result))
