"""Bulk results: what is done, what is retried, what is dead-lettered; and the backoff curve."""

from __future__ import annotations

import orjson
import pytest

from callstream.sinks.bulk import bulk_body
from callstream.sinks.documents import Doc, Origin
from callstream.sinks.outcome import (
    ItemOutcome,
    RequestOutcome,
    backoff_s,
    classify_item,
    classify_request,
    error_text,
    split_response,
)

ORIGIN = Origin("t", 1, 7)


@pytest.mark.parametrize(
    ("status", "versioned", "outcome"),
    [
        (200, False, ItemOutcome.INDEXED),
        (201, True, ItemOutcome.INDEXED),
        (409, True, ItemOutcome.SUPERSEDED),
        (409, False, ItemOutcome.REJECTED),
        (400, False, ItemOutcome.REJECTED),
        (404, False, ItemOutcome.REJECTED),
        (429, False, ItemOutcome.RETRY),
        (429, True, ItemOutcome.RETRY),
        (500, False, ItemOutcome.RETRY),
        (503, True, ItemOutcome.RETRY),
        (None, False, ItemOutcome.RETRY),
    ],
)
def test_classify_item(status: int | None, versioned: bool, outcome: ItemOutcome) -> None:
    assert classify_item(status, versioned) is outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, RequestOutcome.RETRY),  # connection refused, timeout
        (429, RequestOutcome.RETRY),
        (502, RequestOutcome.RETRY),
        (401, RequestOutcome.RETRY),  # credentials get fixed; data is not dropped meanwhile
        (400, RequestOutcome.SPLIT),
        (413, RequestOutcome.SPLIT),
    ],
)
def test_classify_request(status: int | None, outcome: RequestOutcome) -> None:
    assert classify_request(status) is outcome


def _doc(i: int, version: int | None = None) -> Doc:
    return Doc("idx", f"id{i}", orjson.dumps({"n": i}), ORIGIN, item=i, version=version)


def test_split_response_sorts_items_in_request_order() -> None:
    docs = [_doc(0), _doc(1), _doc(2, version=3), _doc(3), _doc(4)]
    mapping_error = {
        "type": "document_parsing_exception",
        "reason": "failed to parse field [input_tokens] of type [integer]",
        "caused_by": {"type": "illegal_argument_exception", "reason": 'For input string: "abc"'},
    }
    items = [
        {"index": {"status": 201}},
        {"index": {"status": 400, "error": mapping_error}},
        {"index": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
        {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
        {"index": {"status": 200}},
    ]
    split = split_response(docs, items)
    assert [d.id for d in split.indexed] == ["id0", "id4"]
    assert [d.id for d in split.superseded] == ["id2"]
    assert [d.id for d in split.retry] == ["id3"]
    (rejected,) = split.rejected
    assert (rejected.doc_id, rejected.status, rejected.target_index, rejected.item) == ("id1", 400, "idx", 1)
    assert rejected.error_type == "document_parsing_exception"
    assert "input_tokens" in rejected.reason and "illegal_argument_exception" in rejected.reason
    assert rejected.original == {"n": 1} and rejected.origin == ORIGIN


def test_a_response_that_does_not_match_the_request_is_retried_whole() -> None:
    docs = [_doc(0), _doc(1)]
    split = split_response(docs, [{"index": {"status": 201}}])
    assert split.retry == docs and not split.indexed


def test_error_text_without_structure() -> None:
    assert error_text("boom") == ("unknown", "boom")


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert backoff_s(1, 100, 30_000, 0.0) == pytest.approx(0.1)
    assert backoff_s(1, 100, 30_000, 0.999) == pytest.approx(0.2, abs=1e-3)
    assert backoff_s(5, 100, 30_000, 0.0) == pytest.approx(1.6)
    assert backoff_s(50, 100, 30_000, 0.0) == pytest.approx(15.0)
    assert backoff_s(10_000, 100, 30_000, 0.999) <= 30.0


def test_bulk_body_is_ndjson_with_external_versions() -> None:
    body = bulk_body([_doc(0), _doc(1, version=9)])
    lines = body.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    assert orjson.loads(lines[0]) == {"index": {"_index": "idx", "_id": "id0"}}
    assert orjson.loads(lines[2]) == {
        "index": {"_index": "idx", "_id": "id1", "version": 9, "version_type": "external"}
    }
    assert orjson.loads(lines[3]) == {"n": 1}
