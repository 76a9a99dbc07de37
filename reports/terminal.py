"""The report as terminal tables (rich), JSON or CSV. Formatting only: every number comes from the Report."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from callstream.literal import DataTable, escaped, literal
from callstream.reports.model import Attribution, Caching, GroupRow, Report, Savings


def money(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def count(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def group_cost(row: GroupRow) -> str:
    """A group's cost, or "unpriced" when none of its calls had a price: never a silent $0."""
    return "unpriced" if row.requests and row.unpriced_requests == row.requests else money(row.cost_usd)


def _table(title: str, columns: Iterable[str], left: int = 1) -> Table:
    table = DataTable(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < left else "right")
    return table


def groups_tables(report: Report) -> list[Table]:
    """Two tables per grouping, so that each fits a terminal: volume and cost, then latency."""
    rows = [*report.groups, report.total]
    cost = _table(
        f"By {report.group_by}: volume and cost",
        [
            report.group_by,
            "requests",
            "errors",
            "error rate",
            "input tok",
            "output tok",
            "cache-read tok",
            "reasoning tok",
            "cost (USD)",
            "unpriced",
            "$/1k tok",
            "share",
        ],
    )
    latency = _table(
        f"By {report.group_by}: latency (ms, over the whole range)",
        [report.group_by, "requests", "mean", "p50", "p90", "p95", "p99", "max", "percentiles"],
    )
    for row in rows:
        last = bool(report.groups) and row is report.groups[-1]
        cost.add_row(
            row.key,
            count(row.requests),
            count(row.errors),
            pct(row.error_rate),
            count(row.tokens.input),
            count(row.tokens.output),
            count(row.tokens.cache_read_input),
            count(row.tokens.reasoning_output),
            group_cost(row),
            count(row.unpriced_requests),
            money(row.cost_per_1k_tokens_usd, 5),
            pct(row.share_of_spend, 1),
            end_section=last,
        )
        lat = row.latency_ms
        latency.add_row(
            row.key,
            count(row.requests),
            ms(lat.mean),
            ms(lat.p50),
            ms(lat.p90),
            ms(lat.p95),
            ms(lat.p99),
            ms(lat.max),
            row.percentiles,
            end_section=last,
        )
    return [cost, latency]


def attribution_table(attribution: Attribution) -> Table:
    name = attribution.dimension
    title = f"Top {name}s by cost (of about {attribution.distinct_keys} {name}s)"
    table = _table(title, [attribution.dimension, "requests", "errors", "cost", "share", "model mix"])
    for row in attribution.rows:
        mix = ", ".join(f"{m.model} {pct(m.share_of_cost, 0)}" for m in row.models[:3])
        table.add_row(
            row.key,
            count(row.requests),
            count(row.errors),
            money(row.cost_usd),
            pct(row.share_of_spend, 1),
            mix,
        )
    return table


def savings_tables(savings: Savings) -> list[Any]:
    out: list[Any] = [
        f"[bold]Savings: {escaped(savings.from_model)} -> {escaped(savings.to_model)}[/] "
        f"(source: {escaped(savings.source)})"
    ]
    out += [literal(f"  - {a}") for a in savings.assumptions]
    if not savings.days and not savings.excluded:
        out.append(literal(f"  no calls of {savings.from_model} in this range"))
    table = _table("Per day", ["day", "requests", "moved", "current", "simulated", "savings"])
    for day in [*savings.days, savings.total]:
        table.add_row(
            day.day,
            count(day.requests),
            count(day.moved_requests),
            money(day.current_usd),
            money(day.simulated_usd),
            money(day.savings_usd),
        )
    out.append(table)
    if savings.target_prices:
        out.append(literal("  target prices used: " + ", ".join(savings.target_prices)))
    out += [f"  [yellow]left out:[/] {escaped(e)}" for e in savings.excluded]
    return out


def caching_table(view: Caching) -> list[Any]:
    table = _table(
        f"Prompt caching (what-if hit rate {view.hit_rate:.0%})",
        ["model", "input tok", "cache-read tok", "hit rate", "saved", f"saved at {view.hit_rate:.0%}"],
    )
    for row in view.rows:
        table.add_row(
            row.model,
            count(row.input_tokens),
            count(row.cache_read_input_tokens),
            pct(row.hit_rate, 1),
            money(row.saved_usd) if row.priced else "unpriced",
            money(row.saved_at_rate_usd) if row.priced else "unpriced",
        )
    return [table, *(literal(f"  - {n}") for n in view.notes)]


def render(report: Report, console: Console) -> None:
    console.print(f"[bold]callstream report[/] {escaped(report.range.description)}")
    console.print(
        literal("windows read: " + ", ".join(f"{n} x {size}" for size, n in report.windows_used.items()))
        if report.windows_used
        else "windows read: none"
    )
    for note in report.notes:
        console.print(literal(f"  - {note}"))
    for table in groups_tables(report):
        console.print(table)
    for attribution in report.attribution:
        if attribution.rows:
            console.print(attribution_table(attribution))
    if report.patterns and report.patterns.hour_of_day:
        table = _table(
            f"Hour of day ({report.range.time_zone})",
            ["hour", "hours in range", "requests/hour", "cost/hour", "error rate", "p50 ms", "p95 ms"],
        )
        for row in report.patterns.hour_of_day:
            table.add_row(
                row.slot,
                count(row.occurrences),
                count(row.requests_per_occurrence),
                money(row.cost_usd_per_occurrence),
                pct(row.error_rate),
                ms(row.latency_p50_ms),
                ms(row.latency_p95_ms),
            )
        console.print(table)
        table = _table(
            f"Weekday ({report.range.time_zone})",
            ["weekday", "days in range", "requests/day", "cost/day", "error rate", "p95 ms"],
        )
        for row in report.patterns.weekday:
            table.add_row(
                row.slot,
                count(row.occurrences),
                count(row.requests_per_occurrence),
                money(row.cost_usd_per_occurrence),
                pct(row.error_rate),
                ms(row.latency_p95_ms),
            )
        console.print(table)
    if any(e.errors for e in report.errors):
        table = _table(
            "Errors by model and category", ["model", "category", "count", "rate", "sample message"]
        )
        for model_row in report.errors:
            for cat in model_row.categories:
                sample = cat.samples[0].message if cat.samples else ""
                table.add_row(model_row.model, cat.category, count(cat.count), pct(cat.rate), sample[:60])
        console.print(table)
    if report.waste:
        w = report.waste
        console.print(
            f"[bold]Wasteful requests[/] (input/output tokens > {w.threshold:g}): {w.calls:,} of "
            f"{w.scanned_calls:,} candidate calls, {money(w.cost_usd)} ({pct(w.share_of_spend, 1)} of spend)"
            + ("" if w.complete else " [yellow](scan stopped at its limit)[/]")
        )
        if w.top_calls:
            table = _table(
                "Most expensive wasteful calls", ["event", "model", "in", "out", "ratio", "cost", "session"]
            )
            for c in w.top_calls:
                table.add_row(
                    c.event_id,
                    c.model,
                    count(c.input_tokens),
                    count(c.output_tokens),
                    f"{c.ratio:.1f}",
                    money(c.cost_usd, 6),
                    c.session_id or "-",
                )
            console.print(table)
    if report.reconciliation and report.reconciliation.total:
        table = _table(
            "Reported vs computed cost",
            ["model", "day", "calls w/ reported", "reported", "computed", "drift", "drift %", "unpriced"],
            left=2,
        )
        for r in [*report.reconciliation.rows, report.reconciliation.total]:
            table.add_row(
                r.model,
                r.day,
                count(r.calls_with_reported),
                money(r.reported_usd),
                money(r.computed_usd),
                money(r.drift_usd),
                pct(r.drift_ratio),
                count(r.reported_unpriced_calls),
            )
        console.print(table)
    else:
        console.print("Reported vs computed cost: no call in the range carries a reported cost")
    if report.savings:
        for item in savings_tables(report.savings):
            console.print(item)
    if report.caching and report.caching.rows:
        for item in caching_table(report.caching):
            console.print(item)
    if report.budgets:
        console.print(budgets_table(report))


def budget_cells(report: Report) -> list[list[str]]:
    """The budgets section's rows as text (the terminal and the HTML page show the same cells)."""
    return [
        [
            b.name,
            b.scope if b.key is None else f"{b.scope} {b.key}",
            f"{b.period_label} ({b.time_zone})",
            money(b.amount_usd, 2),
            money(b.spent_usd, 2),
            f"{b.spent_percent:.1f}%",
            "-" if b.level_percent is None else f"{b.level_percent:g}%",
            f"{b.elapsed_percent:.1f}%",
            money(b.forecast_usd, 2),
            f"{b.forecast_percent:.1f}%",
        ]
        for b in report.budgets
    ]


BUDGET_COLUMNS = [
    "budget",
    "for",
    "period",
    "amount",
    "spent",
    "spent %",
    "warning",
    "elapsed",
    "forecast",
    "fc %",
]


def budgets_table(report: Report) -> Table:
    table = _table("Budgets (the period containing the range's end)", BUDGET_COLUMNS, left=3)
    for cells in budget_cells(report):
        table.add_row(*cells)
    return table


def to_json(model: Any) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"


GROUP_COLUMNS = [
    "key",
    "requests",
    "successes",
    "errors",
    "error_rate",
    "tokens_input",
    "tokens_output",
    "tokens_cache_read_input",
    "tokens_cache_creation_input",
    "tokens_reasoning_output",
    "cost_pico",
    "cost_usd",
    "unpriced_requests",
    "cost_per_1k_tokens_usd",
    "share_of_spend",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
]


def groups_csv(report: Report) -> str:
    """The grouped table (`--by`), one row per group, then the total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: a CR or LF in a name is then quoted
    writer.writerow([report.group_by if c == "key" else c for c in GROUP_COLUMNS])
    for row in [*report.groups, report.total]:
        lat = row.latency_ms
        t = row.tokens
        writer.writerow(
            [
                row.key,
                row.requests,
                row.successes,
                row.errors,
                row.error_rate,
                t.input,
                t.output,
                t.cache_read_input,
                t.cache_creation_input,
                t.reasoning_output,
                row.cost_pico,
                row.cost_usd,
                row.unpriced_requests,
                row.cost_per_1k_tokens_usd,
                row.share_of_spend,
                lat.mean,
                lat.p50,
                lat.p90,
                lat.p95,
                lat.p99,
            ]
        )
    return out.getvalue()


def savings_csv(savings: Savings) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: a CR or LF in a name is then quoted
    writer.writerow(
        ["day", "requests", "moved_requests", "current_pico", "simulated_pico", "savings_pico", "savings_usd"]
    )
    for d in [*savings.days, savings.total]:
        writer.writerow(
            [
                d.day,
                d.requests,
                d.moved_requests,
                d.current_pico,
                d.simulated_pico,
                d.savings_pico,
                d.savings_usd,
            ]
        )
    return out.getvalue()
