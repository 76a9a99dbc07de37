"""Issue 18: spans from the instrumentations themselves reach Elasticsearch exactly once.

The official `opentelemetry-instrumentation-openai-v2` instruments the real `openai` client calling
a fake OpenAI-compatible gateway on loopback, with message content capture on; a second family
(OpenInference's attribute names, written through the SDK) comes from another service. The SDK's
OTLP/HTTP (gzip) and OTLP/gRPC exporters send the spans to `callstream otlp` (a separate process),
which publishes them to Kafka; the stream and sink workers take them to Elasticsearch. One export
is sent twice, as an exporter's retry would: each call is counted once. The secret planted in the
message content appears nowhere: not in Kafka, Elasticsearch, the spool or any worker's log.
"""

from __future__ import annotations

import signal
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from callstream import topics
from callstream.infra.local_servers import LocalServers, free_port
from callstream.settings import ElasticsearchSettings
from tests.integration.gateway import USAGE, Gateway
from tests.pipeline import latest_aggregates, log_events, new_pipeline, read_topic, wait_for

pytest.importorskip("openai")
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.instrumentation.openai_v2")

import openai
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.integration

SECRET = "PLANTED-content-secret-5c1e9a"
API_KEY = "sk-test-SECRETSECRET-0123456789"
SUCCESSES = 12
RATE_LIMITED = 3
SEARCH_CALLS = 5
SEARCH_TOKENS = (200, 30, 150)  # prompt (cache included), completion, cache read


def openai_spans(monkeypatch: pytest.MonkeyPatch) -> list[ReadableSpan]:
    """Real instrumented calls, with message content captured on the spans."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with Gateway() as gateway:
            client = openai.OpenAI(api_key=API_KEY, base_url=gateway.base_url, max_retries=0, timeout=10)
            messages = [{"role": "user", "content": f"my password is {SECRET}"}]
            for _ in range(SUCCESSES):
                client.chat.completions.create(model="gpt-4.1", messages=messages)
            for _ in range(RATE_LIMITED):
                with pytest.raises(openai.RateLimitError):
                    client.chat.completions.create(model="rate-limit", messages=messages)
    finally:
        instrumentor.uninstrument()
    spans = list(memory.get_finished_spans())
    assert len(spans) == SUCCESSES + RATE_LIMITED
    assert any(SECRET in str(s.attributes) for s in spans)  # the content is there to leak
    return spans


def openinference_spans() -> list[ReadableSpan]:
    """Another family's names (OpenInference), from another service, and one span that is no call."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "search-api"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("openinference.instrumentation.litellm")
    prompt, completion, cached = SEARCH_TOKENS
    for i in range(SEARCH_CALLS):
        with tracer.start_as_current_span("completion") as span:
            span.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.provider": "openai",
                    "llm.token_count.prompt": prompt,
                    "llm.token_count.completion": completion,
                    "llm.token_count.total": prompt + completion,
                    "llm.token_count.prompt_details.cache_read": cached,
                    "input.value": f"search for {SECRET}",
                    "llm.input_messages.0.message.content": SECRET,
                    "session.id": f"session-{i % 2}",
                }
            )
    with tracer.start_as_current_span("GET /healthz"):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_instrumented_spans_land_in_elasticsearch_exactly_once(
    servers: LocalServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = new_pipeline(servers, tmp_path)
    spool = tmp_path / "otlp-spool"
    http_port, grpc_port = free_port(), free_port()
    receiver = pipeline.start(
        "otlp",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        name="otlp",
        CALLSTREAM_OTLP_METRICS_PORT="0",
        CALLSTREAM_PRODUCER_SPOOL_DIR=str(spool),
        CALLSTREAM_PRODUCER_LINGER_MS="20",
    )
    pipeline.start_stream_worker()
    pipeline.start("sink", name="sink")
    es = ElasticsearchSettings(url=servers.es_url, index_prefix=pipeline.prefix).client()
    try:
        wait_for(lambda: listening(http_port) and listening(grpc_port), 60, 0.2, describe=pipeline.logs)
        calls = openai_spans(monkeypatch)
        family = openinference_spans()

        http = HttpExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces", compression=Compression.Gzip)
        assert http.export(calls) == SpanExportResult.SUCCESS
        assert http.export(calls[:4]) == SpanExportResult.SUCCESS  # an exporter's retry: the same spans again
        http.shutdown()
        grpc = GrpcExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
        assert grpc.export(family) == SpanExportResult.SUCCESS
        grpc.shutdown()

        unique = SUCCESSES + RATE_LIMITED + SEARCH_CALLS
        index = f"{pipeline.prefix}-calls-*"

        def indexed() -> bool:
            es.indices.refresh(index=index)
            return es.count(index=index)["count"] >= unique

        wait_for(indexed, 180, describe=pipeline.logs)
        hits = es.search(index=index, size=1_000)["hits"]["hits"]
        docs = [h["_source"] for h in hits]
        assert len(docs) == unique and len({h["_id"] for h in hits}) == unique
        by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in docs:
            by_service[doc["service_name"]].append(doc)
        support, search = by_service["support-bot"], by_service["search-api"]
        assert set(by_service) == {"support-bot", "search-api"}
        ok = [d for d in support if d["request_model"] == "gpt-4.1"]
        failed = [d for d in support if d["request_model"] == "rate-limit"]
        assert len(ok) == SUCCESSES and len(failed) == RATE_LIMITED and len(search) == SEARCH_CALLS
        assert {(d["input_tokens"], d["output_tokens"]) for d in ok} == {
            (USAGE["prompt_tokens"], USAGE["completion_tokens"])
        }
        assert {d["error_type"] for d in failed} == {"RateLimitError"}
        prompt, completion, cached = SEARCH_TOKENS
        assert {
            (d["input_tokens"], d["output_tokens"], d.get("cache_read_input_tokens")) for d in search
        } == {(prompt, completion, cached)}

        # The stream's aggregates count each call once, the retried export included.
        def aggregates() -> dict[str, tuple[int, int, int]]:
            sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for doc in latest_aggregates(pipeline.kafka).values():
                if doc["dimension"] == "service" and doc["window_size"] == "1h":
                    total = sums[doc["key"]]
                    total[0] += doc["requests"]
                    total[1] += doc["errors"]
                    total[2] += doc["tokens"]["input"]
            return {key: (a, b, c) for key, (a, b, c) in sums.items()}

        expected = {
            "support-bot": (SUCCESSES + RATE_LIMITED, RATE_LIMITED, SUCCESSES * USAGE["prompt_tokens"]),
            "search-api": (SEARCH_CALLS, 0, SEARCH_CALLS * prompt),
        }
        wait_for(lambda: aggregates() == expected, 180, describe=lambda: f"{aggregates()}\n{pipeline.logs()}")

        # The receiver stops cleanly on SIGTERM and says what it took.
        assert pipeline.stop(receiver, signal.SIGTERM) == 0
        (done,) = log_events(receiver, "otlp done")
        assert done["spans_accepted"] == SUCCESSES + RATE_LIMITED + 4 + SEARCH_CALLS
        assert done["spans_ignored"] == 1 and done["spans_rejected"] == 0

        # The planted secret and the API key appear nowhere.
        raw = b"".join(value for _, value in read_topic(pipeline.kafka, pipeline.topic(topics.RAW)))
        letters = b"".join(
            value for _, value in read_topic(pipeline.kafka, pipeline.topic(topics.DEADLETTER))
        )
        assert raw and SECRET.encode() not in raw and SECRET.encode() not in letters
        everything = str(es.search(index=f"{pipeline.prefix}-*", size=10_000)["hits"]["hits"])
        assert SECRET not in everything and API_KEY not in everything
        spooled = b"".join(p.read_bytes() for p in spool.rglob("*") if p.is_file())
        assert SECRET.encode() not in spooled
        logs = "".join(Path(p.log_path).read_text(errors="replace") for p in pipeline.processes)  # type: ignore[attr-defined]
        assert logs and SECRET not in logs and API_KEY not in logs
    finally:
        pipeline.stop_all()
        es.close()
