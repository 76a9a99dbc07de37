"""The import plan: deterministic ids, unchanged rows left alone, amended rows replaced."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from callstream.reports.bill.rows import BillRow
from callstream.reports.bill.store import doc_id, from_doc, index_name, plan, to_doc

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROW = BillRow(date(2026, 11, 17), "openai", "gpt-4.1", "input", 1000, Decimal("0.002"), "USD", "usage_cost")


def docs(*rows: BillRow, at: datetime = NOW) -> dict[str, dict[str, object]]:
    return {doc_id(r): to_doc(r, "f.csv", "generic-csv", at) for r in rows}


def test_ids_are_deterministic_and_documents_round_trip() -> None:
    assert doc_id(ROW) == doc_id(BillRow(*[getattr(ROW, f) for f in ROW.__slots__]))  # type: ignore[attr-defined]
    assert doc_id(ROW) != doc_id(
        BillRow(ROW.day, "openai", "gpt-4.1", "output", 1000, None, "USD", "usage_cost")
    )
    assert from_doc(to_doc(ROW, "f.csv", "generic-csv", NOW)) == ROW
    assert index_name("cs", ROW.day) == "cs-bill-2026.11"


def test_reimport_changes_nothing_and_an_amended_file_replaces_its_rows() -> None:
    other = BillRow(ROW.day, "openai", "gpt-4.1", "output", 10, Decimal("0.00008"), "USD", "usage_cost")
    existing = docs(ROW, other)
    later = datetime(2026, 12, 2, tzinfo=UTC)
    assert plan(existing, docs(ROW, other, at=later)) == ([], [], 2)  # import time alone is no change
    amended = BillRow(ROW.day, "openai", "gpt-4.1", "input", 1200, Decimal("0.0024"), "USD", "usage_cost")
    assert plan(existing, docs(amended)) == ([doc_id(amended)], [doc_id(other)], 0)
