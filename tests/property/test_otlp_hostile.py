"""Any span, any body: the mapping gives an item, Ignored or Rejected, never an exception; the decoder
gives spans or a RequestError with a status the spec names; content attributes never get through."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.proto")

from callstream.producers.contract import RawCallEvent
from callstream.producers.otlp_decode import RequestError, decode_request
from callstream.producers.otlp_mapping import SPAN_ATTRIBUTES, Ignored, Rejected, Span, span_to_event
from callstream.producers.prepare import Policy

CANARY = "CANARY-otlp-content-31337"
KEYS = [*sorted(SPAN_ATTRIBUTES), "gen_ai.input.messages", "gen_ai.output.messages", "input.value"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["chat", "LLM", "embeddings", "invoke_agent", "gpt-4.1", "429", CANARY, "12", ""]),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
nanos = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def spans(draw: Any) -> Span:
    attributes = draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=12))
    return Span(
        trace_id=draw(st.binary(min_size=0, max_size=20)),
        span_id=draw(st.binary(min_size=0, max_size=10)),
        name="x",
        start_time_unix_nano=draw(nanos),
        end_time_unix_nano=draw(nanos),
        attributes=attributes,
        status_code=draw(st.integers(0, 3)),
        status_message=draw(st.text(max_size=30)),
        resource=draw(st.dictionaries(st.sampled_from(["service.name", "user.id"]), values, max_size=2)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span=spans())
def test_any_span_maps_without_raising_and_without_content(span: Span) -> None:
    result = span_to_event(span, Policy())
    assert isinstance(result, RawCallEvent | Ignored | Rejected)
    if isinstance(result, RawCallEvent):
        wire = repr(result.to_wire())
        for key in ("gen_ai.input.messages", "gen_ai.output.messages", "input.value"):
            value = span.attributes.get(key)
            if isinstance(value, str) and len(value) > 8:
                assert value not in wire


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(["application/x-protobuf", "application/json", "text/plain", None]),
    gzipped=st.booleans(),
)
def test_any_body_decodes_or_is_refused_with_a_spec_status(
    body: bytes, content_type: str | None, gzipped: bool
) -> None:
    try:
        decoded = decode_request(
            gzip.compress(body) if gzipped else body, content_type, "gzip" if gzipped else None
        )
    except RequestError as exc:
        assert exc.status in (400, 413, 415) and len(exc.message) < 400
    else:
        assert isinstance(decoded.spans, list)
