"""`callstream report` and `callstream report savings`: read, compute, format. No arithmetic here."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from callstream.errors import CallstreamError
from callstream.literal import data_console, escaped

report_app = typer.Typer(
    help="Cost analysis people can read: spend, latency, errors, waste and savings over a time range.",
    invoke_without_command=True,
)


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class By(StrEnum):
    model = "model"
    provider = "provider"
    service = "service"
    user = "user"
    day = "day"
    hour = "hour"


SINCE = typer.Option(None, "--since", help="Start: ISO date or time (in --tz unless it has an offset)")
UNTIL = typer.Option(None, "--until", help="End (exclusive); default now")
LAST = typer.Option(None, "--last", help="Length back from --until: 90m, 24h, 7d, 2w (default 7d)")
TZ = typer.Option(None, "--tz", help="IANA time zone for days, hours and weekdays (default UTC)")
FORMAT = typer.Option(Format.table, "--format", help="table (terminal), json or csv")
HTML = typer.Option(None, "--html", help="Also write a self-contained HTML report with charts to this file")


def _context(tz: str | None, since: str | None, until: str | None, last: str | None) -> dict[str, Any]:
    """Settings, the range, an Elasticsearch reader and the dated price lookup (the stream's catalogue)."""
    import logging

    from callstream import logs
    from callstream.errors import require

    # A report is for people: no info logs (the catalogue's), no client tracebacks before the one-line reason.
    logs.configure(logs.LogSettings(level="WARNING"))
    logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)
    require("report", "elasticsearch")
    from callstream.reports.reader import Reader
    from callstream.reports.settings import ReportSettings
    from callstream.reports.timeplan import resolve_range
    from callstream.settings import ElasticsearchSettings
    from callstream.streams.catalogue import load_catalogue
    from callstream.streams.settings import StreamSettings

    settings = ReportSettings()
    span = resolve_range(
        since,
        until,
        last or (None if since else settings.default_last),
        tz or settings.time_zone,
        int(time.time() * 1000),
    )
    es = ElasticsearchSettings()
    catalogue = load_catalogue(StreamSettings())
    return {
        "settings": settings,
        "span": span,
        "reader": Reader(es.client(), es.index_prefix, settings),
        "price_at": catalogue.lookup,
    }


def _console() -> Console:
    """Wide enough for the tables when the output goes to a file or a pipe (rich's default is 80)."""
    console = data_console()
    return console if console.is_terminal else data_console(width=160)


def _fail(exc: Exception) -> None:
    typer.echo(f"callstream report: {exc}", err=True)
    raise typer.Exit(2)


@report_app.callback()
def report(
    ctx: typer.Context,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    last: str | None = LAST,
    tz: str | None = TZ,
    by: By = typer.Option(By.model, "--by", help="Group the main table by this"),
    output: Format = FORMAT,
    html: Path | None = HTML,
    top: int | None = typer.Option(None, "--top", help="Rows of the top users, sessions, services, calls"),
    waste_ratio: float | None = typer.Option(
        None, "--waste-ratio", help="Input/output ratio called wasteful"
    ),
    hit_rate: float | None = typer.Option(None, "--hit-rate", help="What-if prompt-cache hit rate (0..1)"),
    savings_from: str | None = typer.Option(None, "--savings-from", help="Savings scenario: model to move"),
    savings_to: str | None = typer.Option(None, "--savings-to", help="Savings scenario: model to move to"),
    share: float | None = typer.Option(None, "--share", help="Savings scenario: share of traffic moved"),
    budgets_file: Path | None = typer.Option(
        None, "--budgets", help="Budgets file (default: CALLSTREAM_BUDGETS_FILE, else the shipped example)"
    ),
    no_budgets: bool = typer.Option(False, "--no-budgets", help="Leave the budgets section out"),
) -> None:
    """Spend, tokens, latency and errors by model, provider, service, user, day or hour; top users,
    sessions and services; hourly and weekday patterns; errors with sample messages; wasteful
    requests; reported vs computed cost; a savings scenario and prompt caching; budgets with their
    forecast."""
    if ctx.invoked_subcommand:
        return
    from callstream.budgets import load_budgets
    from callstream.reports.build import SavingsRequest, build_report
    from callstream.reports.terminal import groups_csv, render, to_json

    try:
        budgets = None if no_budgets else load_budgets(budgets_file)
        c = _context(tz, since, until, last)
        settings = c["settings"]
        updates = {"top_n": top, "waste_ratio_threshold": waste_ratio}
        settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
        c["reader"].settings = settings
        scenario = None
        if savings_from or savings_to:
            if not (savings_from and savings_to):
                raise CallstreamError("give both --savings-from and --savings-to")
            scenario = SavingsRequest(
                savings_from, savings_to, Fraction(str(share or settings.savings_share))
            )
        console = data_console(stderr=True)
        with console.status("reading aggregates and calls"):
            result = build_report(
                c["reader"],
                c["span"],
                by.value,
                c["price_at"],
                settings,
                scenario,
                caching_hit_rate=hit_rate,
                budgets=budgets,
            )
    except CallstreamError as exc:
        _fail(exc)
        return
    if output is Format.json:
        sys.stdout.buffer.write(to_json(result))
    elif output is Format.csv:
        sys.stdout.write(groups_csv(result))
    else:
        render(result, _console())
    if html:
        try:
            from callstream.reports.html import write_html
        except CallstreamError as exc:  # plotly missing: the `report` extra
            _fail(exc)
            return
        from callstream.reports.bill.cli import html_sections

        try:
            extra = html_sections(c)  # the providers' bills, where imported
        except CallstreamError as exc:
            data_console(stderr=True).print(f"bill section left out: {escaped(exc)}")
            extra = ()
        write_html(result, html, extra)
        data_console(stderr=True).print(f"HTML report: {escaped(html.resolve())}")


@report_app.command("savings")
def savings_command(
    from_model: str = typer.Option(..., "--from", help="Model whose traffic would move"),
    to_model: str = typer.Option(..., "--to", help="Model it would move to"),
    share: float | None = typer.Option(
        None, "--share", help="Share of the selected traffic that moves (0..1]"
    ),
    service: str | None = typer.Option(None, "--service", help="Only calls of this service"),
    user: str | None = typer.Option(None, "--user", help="Only calls of this user"),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    last: str | None = LAST,
    tz: str | None = TZ,
    hit_rate: float | None = typer.Option(None, "--hit-rate", help="What-if prompt-cache hit rate (0..1)"),
    output: Format = FORMAT,
) -> None:
    """Re-price the selected traffic's recorded tokens with the target model's dated prices, per day
    and in total, with the assumptions; and what prompt caching saved and would save."""
    from callstream.reports.build import SavingsRequest, build_caching, build_savings
    from callstream.reports.terminal import caching_table, savings_csv, savings_tables, to_json

    try:
        c = _context(tz, since, until, last)
        settings = c["settings"]
        share_value = Fraction(str(share if share is not None else settings.savings_share))
        if not 0 < share_value <= 1:
            raise CallstreamError(f"--share must be within (0, 1], got {share}")
        filters = {k: v for k, v in (("service", service), ("user", user)) if v}
        request = SavingsRequest(from_model.lower(), to_model.lower(), share_value, filters)
        rate = Fraction(str(hit_rate if hit_rate is not None else settings.caching_hit_rate))
        with data_console(stderr=True).status("reading aggregates"):
            result = build_savings(c["reader"], c["span"], request, c["price_at"])
            view = build_caching(c["reader"], c["span"], c["price_at"], rate, filtered=bool(filters))
    except CallstreamError as exc:
        _fail(exc)
        return
    if output is Format.json:
        sys.stdout.buffer.write(to_json(result))
    elif output is Format.csv:
        sys.stdout.write(savings_csv(result))
    else:
        console = _console()
        console.print(f"[bold]callstream report savings[/] {escaped(c['span'].describe())}")
        for item in [*savings_tables(result), *caching_table(view)]:
            console.print(item)


@report_app.command("bill")
def bill_command(
    since: str | None = SINCE,
    until: str | None = UNTIL,
    last: str | None = typer.Option(None, "--last", help="Length back from --until (default 30d)"),
    output: str = typer.Option("table", "--format", help="table (terminal) or json"),
    suggest_overrides: Path | None = typer.Option(
        None, "--suggest-overrides", help="Write the prices the bill implies as a dated override file"
    ),
) -> None:
    """The providers' imported bills beside callstream's cost, per provider, model and UTC day: the
    differences in tokens and money and their explanations (price, token kind, alias, coverage,
    currency, rounding). Thresholds: CALLSTREAM_BILL_* (docs/bill.md)."""
    from callstream.reports.bill.cli import Output, report_bill

    try:
        c = _context("UTC", since, until, last or (None if since else "30d"))
        report_bill(c, Output(output), suggest_overrides)
    except (CallstreamError, ValueError) as exc:
        _fail(exc)
