"""OTLP request bodies -> spans, and the bad bodies the specification refuses (producers.otlp_decode)."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from callstream.producers.otlp_decode import (
    MAX_VALUE_DEPTH,
    TOO_DEEP,
    RequestError,
    _varint,
    decode_request,
    inflate,
    status_body,
    success_body,
)

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
START = 1_772_000_000_000_000_000
PROTO = "application/x-protobuf"


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=to_any(value))


def to_any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(to_any(v) for v in value)
        return out
    return AnyValue(string_value=value)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def request(attributes: dict[str, Any], count: int = 1, **span: Any) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "checkout"), kv("host.name", "h1")])
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.openai_v2"
    for i in range(count):
        s = ss.spans.add()
        s.trace_id = bytes.fromhex(TRACE_HEX)
        s.span_id = (int(SPAN_HEX, 16) + i).to_bytes(8, "big")
        s.name = "chat gpt-4.1"
        s.start_time_unix_nano = START
        s.end_time_unix_nano = START + 5_000_000
        s.attributes.extend(kv(k, v) for k, v in attributes.items())
        for key, value in span.items():
            setattr(s, key, value)
    return req


ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4.1",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.input.messages": "secret prompt",
}


def test_protobuf_body_gives_its_spans_with_only_the_attributes_the_mapping_reads() -> None:
    decoded = decode_request(request(ATTRS, count=3).SerializeToString(), PROTO)
    assert len(decoded.spans) == 3
    span = decoded.spans[0]
    assert span.trace_id.hex() == TRACE_HEX and span.span_id.hex() == SPAN_HEX
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (START, START + 5_000_000)
    assert span.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4.1",
        "gen_ai.usage.input_tokens": 120,
    }
    assert span.resource == {"service.name": "checkout"}
    assert span.scope_name == "opentelemetry.instrumentation.openai_v2"


JSON_BODY = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "openllmetry"},
                    "spans": [
                        {
                            "traceId": TRACE_HEX.upper(),
                            "spanId": SPAN_HEX,
                            "parentSpanId": "",
                            "name": "openai.chat",
                            "kind": 3,
                            "startTimeUnixNano": str(START),
                            "endTimeUnixNano": START + 7_000_000,
                            "attributes": [
                                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                                {"key": "llm.usage.prompt_tokens", "value": {"intValue": "80"}},
                                {"key": "llm.usage.completion_tokens", "value": {"intValue": 12}},
                                {"key": "gen_ai.request.stream", "value": {"boolValue": True}},
                                {"key": "llm.token_count.total", "value": {"doubleValue": 92.0}},
                                {"key": "user.id", "value": {"bytesValue": "dXNlcg=="}},
                            ],
                            "status": {"code": 2, "message": "boom"},
                            "links": [{"traceId": TRACE_HEX, "spanId": SPAN_HEX}],
                            "unknownField": {"ignored": True},
                        }
                    ],
                }
            ],
        }
    ]
}


def test_otlp_json_with_hex_ids_camel_case_and_anyvalue_shapes() -> None:
    decoded = decode_request(orjson.dumps(JSON_BODY), "application/json; charset=utf-8")
    (span,) = decoded.spans
    assert span.trace_id.hex() == TRACE_HEX and span.span_id.hex() == SPAN_HEX
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (START, START + 7_000_000)
    assert span.attributes == {
        "gen_ai.request.model": "gpt-4o",
        "llm.usage.prompt_tokens": 80,
        "llm.usage.completion_tokens": 12,
        "gen_ai.request.stream": True,
        "llm.token_count.total": 92.0,
        "user.id": b"user",
    }
    assert (span.status_code, span.status_message) == (2, "boom")
    assert span.resource == {"service.name": "checkout"}


def test_json_id_that_is_no_hex_leaves_the_span_to_be_rejected_by_the_mapping() -> None:
    body = orjson.loads(orjson.dumps(JSON_BODY))
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-hex!"
    (span,) = decode_request(orjson.dumps(body), "application/json").spans
    assert span.trace_id == b""


def test_gzip_bodies_are_inflated() -> None:
    raw = request(ATTRS).SerializeToString()
    assert len(decode_request(gzip.compress(raw), PROTO, "gzip").spans) == 1
    two_members = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    assert len(decode_request(two_members, PROTO, "GZIP").spans) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status", "fragment"),
    [
        (b"\xff\xff\xff\xff", PROTO, None, 400, "not an ExportTraceServiceRequest in protobuf"),
        (b"{not json", "application/json", None, 400, "not JSON"),
        (b"[1, 2]", "application/json", None, 400, "expected a JSON object"),
        (b'{"resourceSpans": "nope"}', "application/json", None, 400, "OTLP/JSON"),
        (b"{}", "text/plain", None, 415, "unsupported content type"),
        (b"{}", None, None, 415, "unsupported content type"),
        (b"{}", "application/json", "br", 415, "unsupported content encoding"),
        (b"not gzip at all", PROTO, "gzip", 400, "not valid gzip"),
        (gzip.compress(b"x" * 1000)[:-12], PROTO, "gzip", 400, "truncated gzip"),
    ],
)
def test_bad_bodies_get_the_status_the_spec_prescribes(
    body: bytes, content_type: str | None, encoding: str | None, status: int, fragment: str
) -> None:
    with pytest.raises(RequestError) as caught:
        decode_request(body, content_type, encoding)
    assert caught.value.status == status and fragment in caught.value.message
    assert len(caught.value.message) <= 400


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in about 64 KB
    assert len(bomb) < 100_000
    with pytest.raises(RequestError) as caught:
        inflate(bomb, "gzip", 1 << 20)
    assert caught.value.status == 413


def test_request_over_the_size_limit_is_413() -> None:
    with pytest.raises(RequestError) as caught:
        decode_request(b"\0" * 2000, PROTO, max_request_bytes=1000)
    assert caught.value.status == 413


def test_json_nested_too_deep_is_400() -> None:
    levels = 300  # written as text: orjson itself would refuse to encode it
    deep = '{"arrayValue": {"values": [' * levels + '{"stringValue": "x"}' + "]}}" * levels
    body = '{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": ' + deep + "}]}}]}"
    with pytest.raises(RequestError) as caught:
        decode_request(body.encode(), "application/json")
    assert caught.value.status == 400 and "nested" in caught.value.message


def test_protobuf_nested_too_deep_is_400_and_moderately_deep_values_get_a_marker() -> None:
    # Written by hand: the protobuf runtime itself refuses to build a message this deep.
    value = b"\x0a\x01x"  # AnyValue{string_value: "x"}
    for _ in range(150):
        array = field(1, value)  # ArrayValue{values: [value]}
        value = field(5, array)  # AnyValue{array_value: array}
    span = request({}).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    span += field(9, field(1, b"user.id") + field(2, value))  # one more attribute, merged in
    body = field(1, field(2, field(2, span)))  # request{resource_spans{scope_spans{spans}}}
    with pytest.raises(RequestError) as caught:
        decode_request(body, PROTO)
    assert caught.value.status == 400
    moderate: Any = "x"
    for _ in range(MAX_VALUE_DEPTH + 3):
        moderate = [moderate]
    (span,) = decode_request(request({"user.id": moderate}).SerializeToString(), PROTO).spans
    nested = span.attributes["user.id"]
    for _ in range(MAX_VALUE_DEPTH):
        nested = nested[0]
    assert nested == TOO_DEEP


def test_a_megabyte_attribute_the_mapping_does_not_read_is_never_turned_into_python() -> None:
    big = "x" * (2 << 20)
    (span,) = decode_request(
        request(ATTRS | {"gen_ai.output.messages": big}).SerializeToString(), PROTO
    ).spans
    assert "gen_ai.output.messages" not in span.attributes


def test_wrong_attribute_types_decode_and_are_left_to_the_mapping() -> None:
    (span,) = decode_request(
        request(
            ATTRS | {"gen_ai.usage.input_tokens": "lots", "gen_ai.request.model": [1, 2]}
        ).SerializeToString(),
        PROTO,
    ).spans
    assert span.attributes["gen_ai.usage.input_tokens"] == "lots"
    assert span.attributes["gen_ai.request.model"] == [1, 2]


def test_success_body_carries_partial_success_only_when_spans_were_rejected() -> None:
    assert (
        ExportTraceServiceResponse.FromString(success_body(0, "", "protobuf")).HasField("partial_success")
        is False
    )
    partial = ExportTraceServiceResponse.FromString(success_body(3, "3 spans rejected: no model", "protobuf"))
    assert partial.partial_success.rejected_spans == 3
    assert partial.partial_success.error_message == "3 spans rejected: no model"
    assert orjson.loads(success_body(0, "", "json")) == {}
    assert orjson.loads(success_body(2, "why", "json")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "why"}
    }


def test_status_body_is_a_google_rpc_status() -> None:
    # google.rpc.Status, read by hand: field 1 (code) a varint, field 2 (message) a string.
    body = status_body(3, "bad body", "protobuf")
    assert body == b"\x08\x03\x12\x08bad body"
    assert orjson.loads(status_body(14, "kafka away", "json")) == {"code": 14, "message": "kafka away"}


def test_collector_kafka_messages_in_both_encodings() -> None:
    from callstream.producers.otlp_kafka import decode_message

    (proto,) = decode_message(request(ATTRS).SerializeToString())
    (json_span,) = decode_message(b"  " + orjson.dumps(JSON_BODY))
    assert proto.span_id.hex() == json_span.span_id.hex() == SPAN_HEX
    for bad in (None, b"", b"\xff\xff\xff", b"{nope"):
        with pytest.raises(RequestError):
            decode_message(bad)
