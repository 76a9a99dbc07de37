"""`callstream otlp`'s answers (producers.otlp_receiver), with an in-memory publisher: the replies
the OTLP specification prescribes, admission while Kafka is away, and the SDK's own exporters
(OTLP/HTTP and OTLP/gRPC) sending to the receiver over loopback."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import SecretStr

from callstream.producers.memory import MemoryPublisher
from callstream.producers.otlp_receiver import OtlpReceiver, Reply, RunningReceiver, refusal, start
from callstream.producers.publisher import PublisherStats
from callstream.producers.settings import OtlpSettings, ProducerSettings
from tests.unit.test_otlp_decode import ATTRS, PROTO, request

SECRET = "planted-secret-in-content-0451"


def receiver(publisher: Any = None, **settings: Any) -> OtlpReceiver:
    return OtlpReceiver(
        publisher or MemoryPublisher(),
        OtlpSettings(**({"http_port": 0, "grpc_port": None} | settings)),
        ProducerSettings(spool_max_bytes=1 << 20),
    )


def post(r: OtlpReceiver, body: bytes, **headers: str) -> Reply:
    return r.handle_http("/v1/traces", {"content-type": PROTO} | headers, body)


def test_genai_spans_are_published_and_others_counted_and_ignored() -> None:
    memory = MemoryPublisher()
    r = receiver(memory)
    req = request(ATTRS | {"gen_ai.input.messages": SECRET}, count=3)
    other = req.resource_spans[0].scope_spans[0].spans.add()
    other.CopyFrom(req.resource_spans[0].scope_spans[0].spans[0])
    other.span_id = b"\x09" * 8
    del other.attributes[:]
    reply = post(r, req.SerializeToString())
    assert reply.status == 200 and reply.content_type == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(reply.body).HasField("partial_success")
    assert len(memory.wire) == 3 and memory.dead_letters == []
    assert {e["input_tokens"] for e in memory.wire} == {120}
    assert SECRET not in repr(memory.wire)
    counts = r.stats.snapshot()
    assert counts | {"requests": 0} == {
        "requests": 0,
        "spans_received": 4,
        "spans_accepted": 3,
        "spans_ignored": 1,
        "spans_rejected": 0,
        "requests_refused": 0,
        "requests_throttled": 0,
    }


def test_partial_success_counts_rejected_spans_and_says_why() -> None:
    memory = MemoryPublisher()
    r = receiver(memory)
    req = request(ATTRS, count=5)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"\x01" * 4
    spans[3].end_time_unix_nano = 1
    reply = post(r, req.SerializeToString())
    assert reply.status == 200
    partial = ExportTraceServiceResponse.FromString(reply.body).partial_success
    assert partial.rejected_spans == 2
    assert "2 GenAI spans rejected" in partial.error_message
    assert (
        "trace id must be 16 bytes" in partial.error_message
        and "ends before it starts" in partial.error_message
    )
    assert len(memory.wire) == 3
    json_reply = post(r, orjson.dumps({"resourceSpans": []}), **{"content-type": "application/json"})
    assert json_reply.status == 200 and orjson.loads(json_reply.body) == {}


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("/v1/traces", {"content-type": PROTO}, b"\xff\xff\xff", 400),
        ("/v1/traces", {"content-type": "application/json"}, b"{", 400),
        ("/v1/traces", {"content-type": "text/plain"}, b"", 415),
        ("/v1/traces", {"content-type": PROTO, "content-encoding": "zstd"}, b"", 415),
        (
            "/v1/traces",
            {"content-type": PROTO, "content-encoding": "gzip"},
            gzip.compress(b"\0" * (8 << 20)),
            413,
        ),
        ("/v1/metrics", {"content-type": PROTO}, b"", 404),
    ],
)
def test_bad_requests_are_refused_and_the_receiver_keeps_serving(
    path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    memory = MemoryPublisher()
    r = receiver(memory, max_decompressed_bytes=1 << 20)
    reply = r.handle_http(path, headers, body)
    assert reply.status == status
    assert post(r, request(ATTRS).SerializeToString()).status == 200
    assert len(memory.wire) == 1


def test_json_errors_are_json_statuses() -> None:
    reply = receiver().handle_http("/v1/traces", {"content-type": "application/json"}, b"{")
    assert reply.status == 400 and orjson.loads(reply.body)["code"] == 3


def test_bearer_token() -> None:
    memory = MemoryPublisher()
    r = receiver(memory, bearer_token=SecretStr("tok-123456789"))
    body = request(ATTRS).SerializeToString()
    assert post(r, body).status == 401
    assert post(r, body, authorization="Bearer wrong").status == 401
    assert post(r, body, authorization="Bearer tok-123456789").status == 200
    assert len(memory.wire) == 1


STATS = PublisherStats(
    recorded=0,
    published=0,
    messages=0,
    delivery_failures=0,
    spooled=0,
    unspooled=0,
    spool_bytes=0,
    overflowed=0,
    invalid=0,
    dropped=0,
    queue_depth=0,
    in_flight=0,
    kafka_available=True,
)


def test_refusal_only_when_no_accepted_span_could_be_kept() -> None:
    assert refusal(STATS, 100, 1000, 10) is None
    away = replace(STATS, kafka_available=False)
    assert refusal(away, 100, 1000, 10) is None  # the spool keeps them
    full = refusal(replace(away, spool_bytes=995), 100, 1000, 10)
    assert full is not None and full.status == 503 and "spool is full" in full.reason
    off = refusal(away, 100, 0, 10)
    assert off is not None and off.status == 503 and "spool is off" in off.reason
    assert refusal(replace(STATS, queue_depth=100, spool_bytes=995), 100, 1000, 10) is not None
    assert refusal(replace(STATS, queue_depth=100), 100, 1000, 10) is None  # overflow to the spool


class AwayPublisher(MemoryPublisher):
    def stats(self) -> PublisherStats:
        return replace(super().stats(), kafka_available=False, spool_bytes=1 << 20)


def test_503_with_retry_after_while_kafka_is_away_and_the_spool_full() -> None:
    memory = AwayPublisher()
    r = receiver(memory, retry_after_s=7)
    reply = post(r, request(ATTRS).SerializeToString())
    assert reply.status == 503 and reply.headers == {"Retry-After": "7"}
    assert memory.wire == [] and r.stats.snapshot()["requests_throttled"] == 1


# ---- over loopback, with the SDK's exporters ----


@pytest.fixture
def running() -> Iterator[tuple[RunningReceiver, MemoryPublisher]]:
    memory = MemoryPublisher()
    r = receiver(memory, grpc_port=0)
    served = start(r)
    try:
        yield served, memory
    finally:
        served.stop(grace_s=1)


def _export_with_sdk(exporter: Any) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("chat gpt-4.1") as span:
        span.set_attributes(ATTRS | {"gen_ai.usage.output_tokens": 7, "gen_ai.input.messages": SECRET})
    with tracer.start_as_current_span("GET /"):
        pass
    provider.shutdown()


def test_sdk_http_and_grpc_exporters_reach_the_publisher(
    running: tuple[RunningReceiver, MemoryPublisher],
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    served, memory = running
    _export_with_sdk(
        HttpExporter(endpoint=f"http://127.0.0.1:{served.http_port}/v1/traces", compression=Compression.Gzip)
    )
    _export_with_sdk(GrpcExporter(endpoint=f"127.0.0.1:{served.grpc_port}", insecure=True))
    assert len(memory.wire) == 2 and memory.dead_letters == []
    assert {(e["service_name"], e["input_tokens"], e["output_tokens"]) for e in memory.wire} == {
        ("sdk-test", 120, 7)
    }
    assert SECRET not in repr(memory.wire)
    counts = served.receiver.stats.snapshot()
    assert (counts["spans_accepted"], counts["spans_ignored"]) == (2, 2)


def test_http_server_refuses_oversized_bodies_unread_and_keeps_serving(
    running: tuple[RunningReceiver, MemoryPublisher],
) -> None:
    served, memory = running
    connection = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    connection.putrequest("POST", "/v1/traces")
    connection.putheader("Content-Type", PROTO)
    connection.putheader("Content-Length", str(1 << 30))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and response.getheader("Connection") == "close"
    connection.close()
    again = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    body = request(ATTRS).SerializeToString()
    for _ in range(2):  # one keep-alive connection, two requests
        again.request("POST", "/v1/traces", body, {"Content-Type": PROTO})
        reply = again.getresponse()
        assert reply.status == 200
        reply.read()
    again.close()
    # the same span twice (an exporter's retry): one event id, so the stream's dedup keeps it once
    assert len(memory.wire) == 2 and len({e["event_id"] for e in memory.wire}) == 1


def test_chunked_bodies_are_read_within_the_limit(running: tuple[RunningReceiver, MemoryPublisher]) -> None:
    served, memory = running
    body = request(ATTRS).SerializeToString()
    connection = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    connection.request(
        "POST", "/v1/traces", iter([body[:10], body[10:]]), {"Content-Type": PROTO}, encode_chunked=True
    )
    reply = connection.getresponse()
    assert reply.status == 200
    reply.read()
    connection.close()
    assert len(memory.wire) == 1


def test_bearer_token_on_both_transports_with_the_sdk_exporters() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    memory = MemoryPublisher()
    served = start(receiver(memory, grpc_port=0, bearer_token=SecretStr("tok-abcdef123456")))
    try:
        good = {"authorization": "Bearer tok-abcdef123456"}
        http_url = f"http://127.0.0.1:{served.http_port}/v1/traces"
        grpc_url = f"127.0.0.1:{served.grpc_port}"
        _export_with_sdk(HttpExporter(endpoint=http_url, headers=good))
        _export_with_sdk(GrpcExporter(endpoint=grpc_url, insecure=True, headers=good))
        _export_with_sdk(HttpExporter(endpoint=http_url, headers={"authorization": "Bearer nope"}))
        _export_with_sdk(GrpcExporter(endpoint=grpc_url, insecure=True))
        assert len(memory.wire) == 2
        # each export sends its 2 spans one request at a time (SimpleSpanProcessor): 2 refused each
        assert served.receiver.stats.snapshot()["requests_refused"] == 4
    finally:
        served.stop(grace_s=1)


def test_tls(tmp_path: Path) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    memory = MemoryPublisher()
    served = start(receiver(memory, tls_cert_file=cert, tls_key_file=key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection("127.0.0.1", served.http_port, timeout=10, context=context)
        connection.request("POST", "/v1/traces", request(ATTRS).SerializeToString(), {"Content-Type": PROTO})
        reply = connection.getresponse()
        assert reply.status == 200
        reply.read()
        connection.close()
        plain = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("POST", "/v1/traces", b"", {"Content-Type": PROTO})
            plain.getresponse()
        plain.close()
        assert len(memory.wire) == 1
    finally:
        served.stop(grace_s=1)
