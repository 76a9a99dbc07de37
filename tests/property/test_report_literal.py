"""Data is never markup: hypothesis-drawn names and messages (rich markup, escape sequences, HTML)
go through the report's terminal tables, JSON, CSV and HTML page; each shows them as written, and
none crashes."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callstream.literal import data_console, shown
from callstream.reports.html import plain, render_html
from callstream.reports.model import (
    Attribution,
    AttributionRow,
    ErrorCategory,
    ErrorModelRow,
    ErrorSample,
    GroupRow,
    RangeInfo,
    Report,
    TimePoint,
)
from callstream.reports.terminal import groups_csv, render, to_json
from callstream.streams.contract import LatencySummary, TokenSums
from tests.hostile import ESCAPE_SEQUENCES, MARKUP_TEXT

AT = datetime(2026, 3, 1, tzinfo=UTC)
text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)
hostile = st.one_of(
    st.sampled_from(MARKUP_TEXT + ESCAPE_SEQUENCES),
    st.lists(st.sampled_from(MARKUP_TEXT + ESCAPE_SEQUENCES + ("gpt", " ", "-")), min_size=2, max_size=5).map(
        "".join
    ),
    text,
)


def row(key: str, requests: int = 3) -> GroupRow:
    return GroupRow(
        key=key,
        requests=requests,
        successes=requests - 1,
        errors=1,
        error_rate=1 / requests,
        tokens=TokenSums(input=100, output=10, total=110),
        cost_pico=10**10,
        cost_usd=0.01,
        unpriced_requests=0,
        cost_per_1k_tokens_usd=0.09,
        share_of_spend=0.5,
        latency_ms=LatencySummary(min=1.0, max=9.0, mean=5.0, p50=5.0, p90=8.0, p95=8.5, p99=9.0),
    )


def report_of(names: list[str], users: list[str], messages: list[str]) -> Report:
    groups = [row(name) for name in names]
    return Report(
        generated_at=AT,
        range=RangeInfo(start=AT, end=AT, time_zone="UTC", description="a day"),
        group_by="model",
        over_time_by="day",
        windows_used={"1d": 1},
        notes=[f"note about {names[0]}"],
        total=row("total", 3 * len(names)),
        models=groups,
        groups=groups,
        over_time=[
            TimePoint(
                bucket="2026-03-01",
                start=AT,
                key=name,
                requests=3,
                errors=1,
                error_rate=1 / 3,
                cost_pico=10**10,
                cost_usd=0.01,
            )
            for name in names
        ],
        attribution=[
            Attribution(
                dimension="user",
                source="aggregates",
                distinct_keys=len(users),
                rows=[
                    AttributionRow(
                        key=user,
                        requests=1,
                        errors=0,
                        cost_pico=10**10,
                        cost_usd=0.01,
                        share_of_spend=0.1,
                        unpriced_requests=0,
                        input_tokens=1,
                        output_tokens=1,
                        latency_mean_ms=1.0,
                        models=[],
                    )
                    for user in users
                ],
                cost_pico_outside_top=0,
            )
        ],
        patterns=None,
        errors=[
            ErrorModelRow(
                model=names[0],
                requests=3,
                errors=len(messages),
                error_rate=1.0,
                categories=[
                    ErrorCategory(
                        category="server_error", count=1, rate=0.3, samples=[ErrorSample(message=m, count=1)]
                    )
                    for m in messages
                ],
            )
        ],
        waste=None,
        reconciliation=None,
        savings=None,
        caching=None,
    )


class Cells(HTMLParser):
    """The text of each table cell, and the chart-data block, of the HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


SPECS = re.compile(r"<script type='application/json' id='chart-specs'>(.*?)</script>", re.S)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(hostile, min_size=1, max_size=3, unique=True),
    users=st.lists(hostile, min_size=1, max_size=2, unique=True),
    messages=st.lists(hostile, min_size=1, max_size=2),
)
def test_names_and_messages_are_shown_as_written_in_every_output(
    names: list[str], users: list[str], messages: list[str]
) -> None:
    report = report_of(names, users, messages)

    out = io.StringIO()
    render(report, data_console(file=out, width=10_000, color_system=None, force_terminal=False))
    table = out.getvalue()
    for value in [*names, *users, *(m[:60] for m in messages)]:
        assert shown(value).strip() in table, value  # (a cell loses its outer spaces)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", table)  # no escape sequence reaches it
    render(report, data_console(file=io.StringIO(), width=80, force_terminal=True))  # never a MarkupError

    parsed = orjson.loads(to_json(report))
    assert [g["key"] for g in parsed["groups"]] == names
    assert [s["message"] for c in parsed["errors"][0]["categories"] for s in c["samples"]] == messages

    rows = list(csv.reader(io.StringIO(groups_csv(report), newline="")))
    assert [r[0] for r in rows[1:-1]] == names

    page = render_html(report)
    (block,) = SPECS.findall(page)
    assert not set("<>&") & set(block)  # nothing in the data block can end it or open a comment
    figures = {spec["id"]: spec["figure"] for spec in orjson.loads(block)}
    assert [t["name"] for t in figures["chart-spend-over-time"]["data"]] == [plain(n) for n in names]
    assert figures["chart-top-users"]["data"][0]["y"] == [plain(u) for u in reversed(users)]
    assert all(html.unescape(plain(n)) == n for n in names)  # plotly shows the entities as characters
    cells = Cells()
    cells.feed(page[page.index("<body>") :])  # after plotly.js, which is no data
    assert [c for c in cells.cells if c in names] == [c for c in cells.cells if c in set(names)]
    assert set(names) <= set(cells.cells)
