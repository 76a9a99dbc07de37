"""Imported bill rows in Elasticsearch: `{prefix}-bill-YYYY.MM`, one document per row.

Idempotent by construction: a row's `_id` is derived from its day, provider, dataset (usage,
cost, or both), model and token kind, so importing the same file twice writes the same documents.
An import *replaces* what the index held for each (provider, dataset, day) the file covers: rows
the amended file no longer has are deleted, changed rows overwritten, equal rows left untouched
(so re-importing an unchanged file changes nothing, not even a document version).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from callstream.errors import CallstreamError
from callstream.reports.bill.rows import BillRow

SLICE_FIELDS = ("provider", "dataset", "day")
CONTENT_FIELDS = ("day", "provider", "dataset", "model", "token_kind", "quantity", "cost_decimal", "currency")
MAX_ROWS_PER_QUERY = 10_000


class BillStoreError(CallstreamError):
    """Elasticsearch refused a bill import or query."""


@dataclass(frozen=True)
class ImportOutcome:
    written: int
    unchanged: int
    deleted: int
    slices: int  # (provider, dataset, day) replaced


def index_name(prefix: str, day: date) -> str:
    return f"{prefix}-bill-{day:%Y.%m}"


def doc_id(row: BillRow) -> str:
    return hashlib.sha256("|".join(row.key()).encode()).hexdigest()[:32]


def to_doc(row: BillRow, source_file: str, source_format: str, imported_at: datetime) -> dict[str, Any]:
    return {
        "day": row.day.isoformat(),
        "provider": row.provider,
        "dataset": row.dataset,
        "model": row.model,
        "token_kind": row.token_kind,
        "quantity": row.quantity,
        "cost": float(row.cost) if row.cost is not None else None,
        "cost_decimal": str(row.cost) if row.cost is not None else None,
        "currency": row.currency,
        "source_file": source_file,
        "source_format": source_format,
        "imported_at": imported_at.astimezone(UTC).isoformat(),
    }


def from_doc(doc: dict[str, Any]) -> BillRow:
    cost = doc.get("cost_decimal")
    return BillRow(
        day=date.fromisoformat(str(doc["day"])[:10]),
        provider=doc["provider"],
        model=doc["model"],
        token_kind=doc["token_kind"],
        quantity=doc.get("quantity"),
        cost=Decimal(cost) if cost is not None else None,
        currency=doc["currency"],
        dataset=doc["dataset"],
    )


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(
        str(a.get(f))[: 10 if f == "day" else None] == str(b.get(f))[: 10 if f == "day" else None]
        for f in CONTENT_FIELDS
    )


def plan(
    existing: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> tuple[list[str], list[str], int]:
    """(ids to write, ids to delete, unchanged count): the pure part of an import."""
    write = [i for i, doc in new.items() if i not in existing or not _same(existing[i], doc)]
    delete = [i for i in existing if i not in new]
    return write, delete, len(new) - len(write)


def _search(client: Any, index: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    from elasticsearch import ApiError, TransportError

    try:
        response = client.search(
            index=index, query=query, size=MAX_ROWS_PER_QUERY, ignore_unavailable=True, allow_no_indices=True
        )
    except (ApiError, TransportError) as exc:
        raise BillStoreError(f"Elasticsearch could not answer a query on {index}: {exc}") from exc
    hits = response["hits"]["hits"]
    if len(hits) >= MAX_ROWS_PER_QUERY:
        raise BillStoreError(f"more than {MAX_ROWS_PER_QUERY} bill rows in one query: use a shorter range")
    return [{"_id": h["_id"], "_index": h["_index"], **h["_source"]} for h in hits]


def import_rows(
    client: Any, prefix: str, rows: Iterable[BillRow], source_file: str, source_format: str, now: datetime
) -> ImportOutcome:
    from elasticsearch import ApiError, TransportError

    rows = list(rows)
    new = {doc_id(r): (r, to_doc(r, source_file, source_format, now)) for r in rows}
    slices = {(r.provider, r.dataset, r.day.isoformat()) for r in rows}
    existing: dict[str, dict[str, Any]] = {}
    if slices:
        days = sorted({s[2] for s in slices})
        query = {
            "bool": {
                "filter": [
                    {"terms": {"provider": sorted({s[0] for s in slices})}},
                    {"terms": {"dataset": sorted({s[1] for s in slices})}},
                    {"range": {"day": {"gte": days[0], "lte": days[-1]}}},
                ]
            }
        }
        for doc in _search(client, f"{prefix}-bill-*", query):
            if (doc["provider"], doc["dataset"], str(doc["day"])[:10]) in slices:
                existing[doc["_id"]] = doc
    write, delete, unchanged = plan(existing, {i: d for i, (_, d) in new.items()})
    operations: list[dict[str, Any]] = []
    for i in write:
        row, doc = new[i]
        operations += [{"index": {"_index": index_name(prefix, row.day), "_id": i}}, doc]
    for i in delete:
        operations.append({"delete": {"_index": existing[i]["_index"], "_id": i}})
    if operations:
        try:
            response = client.bulk(operations=operations, refresh="wait_for")
        except (ApiError, TransportError) as exc:
            raise BillStoreError(f"Elasticsearch refused the bill import: {exc}") from exc
        if response.get("errors"):
            failed = [
                item for item in response["items"] for op in item.values() if op.get("status", 200) >= 300
            ]
            if failed:
                raise BillStoreError(f"{len(failed)} bill rows were refused, e.g. {str(failed[0])[:300]}")
    return ImportOutcome(len(write), unchanged, len(delete), len(slices))


def read_rows(client: Any, prefix: str, first_day: date, last_day: date) -> list[BillRow]:
    """Every imported row of the days [first_day, last_day]."""
    query = {"range": {"day": {"gte": first_day.isoformat(), "lte": last_day.isoformat()}}}
    return [from_doc(doc) for doc in _search(client, f"{prefix}-bill-*", query)]
