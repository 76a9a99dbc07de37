"""`callstream bill import`, `callstream report bill`, `callstream export focus`: read, compute, format."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import typer

from callstream.errors import CallstreamError
from callstream.literal import data_console, escaped

bill_app = typer.Typer(
    no_args_is_help=True, help="The providers' usage and cost exports, imported for reconciliation."
)
export_app = typer.Typer(no_args_is_help=True, help="callstream's cost in the formats other tools read.")


class Provider(StrEnum):
    openai = "openai"
    anthropic = "anthropic"
    google = "google"
    aws = "aws"
    generic = "generic"


class Output(StrEnum):
    table = "table"
    json = "json"


class FocusBy(StrEnum):
    service = "service"
    user = "user"


def _client() -> tuple[Any, str]:
    from callstream.errors import require

    require("report", "elasticsearch")
    from callstream.settings import ElasticsearchSettings

    es = ElasticsearchSettings()
    return es.client(), es.index_prefix


def _fail(command: str, exc: Exception) -> None:
    typer.echo(f"callstream {command}: {exc}", err=True)
    raise typer.Exit(2)


@bill_app.command("import")
def import_command(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Export files"),
    provider: Provider = typer.Option(
        ..., "--provider", help="Whose export: openai, anthropic, google, aws, generic"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Parse and report, write nothing"),
) -> None:
    """Import provider usage/cost exports into `<prefix>-bill-YYYY.MM`: idempotent (re-importing a
    file changes nothing); an amended file replaces the rows of the days it covers. Unreadable rows
    are listed with their line (or JSON path) and the exit status is 1 when there were any."""
    from callstream.reports.bill.formats import BillFormatError, parse
    from callstream.reports.bill.store import BillStoreError, import_rows

    console = data_console(stderr=True)
    any_bad = False
    client = None
    try:
        for path in files:
            try:
                result = parse(provider.value, path.read_bytes())
            except BillFormatError as exc:
                raise CallstreamError(f"{path}: {exc}") from None
            days = sorted({r.day for r in result.rows})
            span = f"{days[0]}..{days[-1]}" if days else "no days"
            console.print(
                f"{escaped(path)}: {result.format}, {len(result.rows)} rows ({span}), "
                f"{result.unreadable} unreadable, {result.skipped} of other services skipped"
            )
            for problem in result.problems:
                console.print(f"  {path}: {problem}", markup=False)
            if result.unreadable > len(result.problems):
                console.print(f"  ... and {result.unreadable - len(result.problems)} more")
            any_bad = any_bad or result.unreadable > 0
            if dry_run or not result.rows:
                continue
            if client is None:
                client, prefix = _client()
                from callstream.settings import ElasticsearchSettings
                from callstream.sinks import index_templates

                index_templates.apply(client, ElasticsearchSettings())
            outcome = import_rows(client, prefix, result.rows, path.name, result.format, datetime.now(UTC))
            console.print(
                f"  imported: {outcome.written} written, {outcome.unchanged} unchanged, "
                f"{outcome.deleted} deleted ({outcome.slices} provider-days replaced)"
            )
    except (CallstreamError, BillStoreError, OSError) as exc:
        _fail("bill import", exc)
    finally:
        if client is not None:
            client.close()
    if any_bad:
        raise typer.Exit(1)


def build_reconciliation(reader: Any, first_day: date, last_day: date, price_at: Any) -> Any:
    """Bill rows and 1-day model aggregates of [first_day, last_day], reconciled."""
    from callstream.reports.bill.reconcile import BillSettings, day_start_ms, reconcile, usage_by_day
    from callstream.reports.bill.store import read_rows
    from callstream.reports.timeplan import Window

    rows = read_rows(reader.client, reader.prefix, first_day, last_day)
    n_days = (last_day - first_day).days + 1
    windows = [Window(day_start_ms(first_day + timedelta(days=i)), "1d") for i in range(n_days)]
    usage = usage_by_day(reader.aggregates("model", windows))
    return reconcile(rows, usage, price_at, BillSettings())


def day_range(span: Any) -> tuple[date, date]:
    first = datetime.fromtimestamp(span.start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp((span.end_ms - 1) / 1000, UTC).date()
    return first, last


def html_sections(context: dict[str, Any]) -> tuple[str, ...]:
    """The bill's section for `callstream report --html`, when bill rows cover the report's days."""
    from callstream.reports.bill.render import html_section

    first, last = day_range(context["span"])
    result = build_reconciliation(context["reader"], first, last, context["price_at"])
    return (html_section(result),) if result.lines else ()


def report_bill(context: dict[str, Any], output: Output, suggest: Path | None) -> None:
    from callstream.reports.bill.corrections import override_file
    from callstream.reports.bill.render import explanation_lines, table, to_json

    first, last = day_range(context["span"])
    with data_console(stderr=True).status("reading the bill and the daily aggregates"):
        result = build_reconciliation(context["reader"], first, last, context["price_at"])
    if output is Output.json:
        sys.stdout.buffer.write(to_json(result))
    else:
        console = data_console() if data_console().is_terminal else data_console(width=200)
        console.print(f"[bold]callstream report bill[/] {first} to {last} (UTC days)")
        if not result.lines:
            console.print("no imported bill rows in this range (callstream bill import FILE --provider ...)")
        console.print(table(result))
        for text in explanation_lines(result):
            console.print(f"- {text}", markup=False, highlight=False)
        bad = result.disagreeing_days
        console.print(f"days beyond the thresholds: {', '.join(map(str, bad)) if bad else 'none'}")
    if suggest is not None:
        suggest.write_bytes(
            orjson.dumps(override_file(result.suggestions, context["price_at"]), option=orjson.OPT_INDENT_2)
        )
        data_console(stderr=True).print(
            f"price overrides suggested by the bill: {escaped(suggest.resolve())}"
        )


@export_app.command("focus")
def focus_command(
    month: str = typer.Option(..., "--month", help="UTC month, YYYY-MM"),
    by: FocusBy = typer.Option(FocusBy.service, "--by", help="Allocate to services or to users"),
    output: Path | None = typer.Option(None, "--output", "-o", help="CSV file (default: stdout)"),
    account_id: str = typer.Option("callstream", "--account-id", help="BillingAccountId to write"),
    account_name: str = typer.Option("callstream", "--account-name", help="BillingAccountName to write"),
) -> None:
    """callstream's computed cost of a month as FOCUS 1.0 CSV rows: one per UTC day, model and
    service (or user), with Tags {service|user, model}."""
    from callstream.reports.bill import focus
    from callstream.reports.reader import Reader, focus_cells
    from callstream.reports.settings import ReportSettings
    from callstream.reports.timeplan import TimeRange

    try:
        start, end = focus.month_bounds(month)
    except ValueError as exc:
        _fail("export focus", exc)
        return
    client, prefix = _client()
    try:
        reader = Reader(client, prefix, ReportSettings())
        span = TimeRange(int(start.timestamp() * 1000), int(end.timestamp() * 1000))
        records = focus_cells(reader, span, by.value)
    except CallstreamError as exc:
        _fail("export focus", exc)
        return
    finally:
        client.close()
    cells = [
        focus.CostCell(
            date.fromisoformat(r["day"]),
            r["key"],
            r["model"],
            r["provider"],
            r["requests"],
            r["tokens"],
            r["cost_pico"],
        )
        for r in records
    ]
    text = focus.to_csv(focus.rows(cells, month, by.value, account_id, account_name))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        data_console(stderr=True).print(f"{len(cells)} FOCUS rows: {escaped(output.resolve())}")
