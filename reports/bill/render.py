"""The reconciliation as a terminal table, JSON and an HTML section (formatting only)."""

from __future__ import annotations

import dataclasses
import html
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from rich.table import Table

from callstream.literal import DataTable
from callstream.reports.bill.reconcile import Line, Reconciliation


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _tokens(values: dict[str, int]) -> str:
    return f"{sum(values.values()):,}" if values else "-"


def verdict(line: Line) -> str:
    if line.agrees:
        return "agrees"
    return "explained" if line.explained() else "UNEXPLAINED"


def cells(line: Line) -> list[str]:
    return [
        line.day.isoformat(),
        line.provider,
        line.model,
        ", ".join(line.billed_as) or "-",
        _tokens(line.provider_tokens),
        _tokens(line.callstream_tokens),
        f"{sum(line.token_diff.values()):+,}" if line.token_diff else "-",
        _money(line.provider_cost),
        _money(line.callstream_cost),
        "-" if line.cost_diff is None else f"{line.cost_diff:+,.4f}",
        verdict(line),
    ]


COLUMNS = [
    "day",
    "provider",
    "model",
    "billed as",
    "billed tokens",
    "callstream tokens",
    "token diff",
    "billed cost",
    "callstream cost",
    "cost diff",
    "verdict",
]


def table(result: Reconciliation) -> Table:
    out = DataTable(title="The provider's bill beside callstream's cost (UTC days)", title_justify="left")
    for i, name in enumerate(COLUMNS):
        out.add_column(name, justify="left" if i < 4 or i == 10 else "right")
    for line in result.lines:
        out.add_row(*cells(line))
    return out


def explanation_lines(result: Reconciliation) -> list[str]:
    return [
        f"{line.day} {line.provider} {line.model}: [{e.kind}] {e.text}"
        for line in result.lines
        for e in line.explanations
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_dict(result: Reconciliation) -> dict[str, Any]:
    return {
        "thresholds": _plain(result.settings.model_dump(exclude={"aliases"})),
        "lines": [_plain(dataclasses.asdict(line)) | {"verdict": verdict(line)} for line in result.lines],
        "price_suggestions": [_plain(dataclasses.asdict(s)) for s in result.suggestions],
        "disagreeing_days": [d.isoformat() for d in result.disagreeing_days],
    }


def to_json(result: Reconciliation) -> bytes:
    return orjson.dumps(to_dict(result), option=orjson.OPT_INDENT_2) + b"\n"


def html_section(result: Reconciliation) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(line)) + "</tr>" for line in result.lines
    )
    notes = "".join(f"<li>{html.escape(text)}</li>" for text in explanation_lines(result))
    return (
        "<h2>The provider's bill</h2>"
        f'<table id="table-bill"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        f"<ul class='notes' id='bill-explanations'>{notes}</ul>"
    )
