"""`callstream alert`: the alert worker, and the commands around it.

callstream alert                       run an alert worker (start several to share the partitions)
callstream alert check                 validate the rules and budgets files against the settings
callstream alert list [--since 24h]    open and recent alerts, from Elasticsearch
callstream alert silence RULE --for 2h [--key gpt-4.1] [--comment ...]
callstream alert silences              silences in force
callstream alert unsilence ID          end a silence now
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from callstream import logs
from callstream.errors import CallstreamError
from callstream.literal import DataTable, data_console, escaped
from callstream.settings import ElasticsearchSettings, KafkaSettings

alert_app = typer.Typer(
    help="Alerts over the stream's window aggregates: the worker, open alerts, silences.",
    invoke_without_command=True,
    no_args_is_help=False,
)
log = logs.get(__name__)


def _config(rules: Path | None, budgets: Path | None, **overrides: Any) -> Any:
    from callstream.alerts.config import load_config
    from callstream.alerts.settings import AlertSettings

    settings = AlertSettings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        return load_config(settings, rules, budgets)
    except CallstreamError as exc:
        typer.echo(f"callstream alert: {exc}", err=True)
        raise typer.Exit(2) from None


@alert_app.callback()
def alert(
    ctx: typer.Context,
    rules: Path | None = typer.Option(None, help="Rules file (default: CALLSTREAM_ALERT_RULES_FILE)"),
    budgets: Path | None = typer.Option(None, help="Budgets file (default: CALLSTREAM_BUDGETS_FILE)"),
    metrics_port: int | None = typer.Option(None, help="Port of /metrics and /healthz (0: any free port)"),
    web_port: int | None = typer.Option(None, help="Port of faust's web server (bound to loopback)"),
    group_instance_id: str | None = typer.Option(None, help="Static group membership id, one per process"),
) -> None:
    """Run an alert worker (a faust-streaming app; stops on SIGTERM), or one of the commands below."""
    ctx.obj = {"rules": rules, "budgets": budgets}
    if ctx.invoked_subcommand is not None:
        return
    config = _config(
        rules, budgets, metrics_port=metrics_port, web_port=web_port, group_instance_id=group_instance_id
    )
    from callstream.alerts.app import create_app
    from callstream.streams import frame

    frame.use_uvloop()
    for rule in config.logged_only:
        log.warning("rule notifies no receiver, only the log and Elasticsearch", rule=rule)
    kafka = KafkaSettings()
    app, worker = create_app(config, kafka)
    rules_file = str(rules or config.settings.rules_file)
    frame.run(app, kafka, "alert", lambda: dict(worker.counters.__dict__), rules_file=rules_file)


@alert_app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate the rules and budgets files (and the receivers they need) without starting anything."""
    config = _config(ctx.obj["rules"], ctx.obj["budgets"])
    console = _console()
    table = DataTable(title=f"alert rules (days and months in {config.budgets.timezone})")
    for column in ("rule", "type", "severity", "notifies"):
        table.add_column(column)
    for rule in config.rules.rules:
        table.add_row(rule.name, rule.type, rule.severity, ", ".join(config.targets(rule)))
    console.print(table)
    for budget in config.budgets.budgets:
        scope = "all calls" if budget.scope == "all" else f"{budget.scope}={budget.key}"
        levels = "/".join(f"{level:g}" for level in budget.warn_at_percent)
        console.print(
            f"budget {escaped(budget.name)}: {budget.amount_usd:,.2f} USD per {budget.period}, "
            f"{escaped(scope)}, {levels}%"
        )


def _since(text: str) -> timedelta:
    from callstream.alerts.silences import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@alert_app.command("list")
def list_alerts(
    since: str = typer.Option("24h", help="How far back to show events (30m, 24h, 7d, ...)"),
    limit: int = typer.Option(50, help="Most recent events to show"),
) -> None:
    """Open alerts and recent alert events, from callstream-alerts-* in Elasticsearch."""
    es_settings = ElasticsearchSettings()
    start = datetime.now(UTC) - _since(since)
    events = recent_events(es_settings, start)
    console = _console()
    open_alerts = open_from(events)
    table = DataTable(title=f"open alerts ({len(open_alerts)})")
    for column in ("fired at", "severity", "rule", "for", "value", "threshold", "message"):
        table.add_column(column, overflow="fold")
    for event in open_alerts:
        table.add_row(
            event["fired_at"],
            event["severity"],
            event["rule"],
            _subject(event),
            _number(event.get("value")),
            _number(event.get("threshold")),
            event["message"],
        )
    console.print(table)
    recent = DataTable(
        title=f"alert events since {start.isoformat(timespec='seconds')} ({len(events)}; newest first)"
    )
    for column in ("at", "kind", "rule", "for", "notified", "message"):
        recent.add_column(column, overflow="fold")
    for event in events[:limit]:
        notified = "silenced" if event.get("silenced") else ("yes" if event.get("notified") else "no")
        recent.add_row(event["at"], event["kind"], event["rule"], _subject(event), notified, event["message"])
    console.print(recent)


def recent_events(es_settings: ElasticsearchSettings, start: datetime) -> list[dict[str, Any]]:
    """Alert events since `start`, newest first (none when the index does not exist yet)."""
    client = es_settings.client()
    index = f"{es_settings.index_prefix}-alerts-*"
    try:
        result = client.search(
            index=index,
            query={"range": {"at": {"gte": start.isoformat()}}},
            sort=[{"at": {"order": "desc"}}],
            size=10_000,
            ignore_unavailable=True,
            allow_no_indices=True,
        )
    finally:
        client.close()
    return [hit["_source"] for hit in result["hits"]["hits"]]


def open_from(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest event of every alert whose newest event is not a resolution (events newest first)."""
    newest: dict[str, dict[str, Any]] = {}
    for event in events:
        newest.setdefault(event["alert_id"], event)
    return sorted((e for e in newest.values() if e["state"] == "firing"), key=lambda e: e["fired_at"])


def _subject(event: dict[str, Any]) -> str:
    subject = "all calls" if event["dimension"] == "all" else f"{event['dimension']}={event['key']}"
    return subject + (f" ({event['budget']})" if event.get("budget") else "")


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:,.4g}"


@alert_app.command("silence")
def silence(
    rule: str = typer.Argument(..., help="Rule name, or '*' for every rule"),
    duration: str = typer.Option(..., "--for", help="How long: 30m, 2h, 1d, 1h30m"),
    key: str | None = typer.Option(None, help="Only this model, provider, service, user, ..."),
    dimension: str | None = typer.Option(None, help="Only keys of this dimension (model, provider, ...)"),
    comment: str = typer.Option("", help="Why (shown by `callstream alert silences`)"),
) -> None:
    """Silence a rule (for one key, or all) for a while: firings are recorded, not sent."""
    from callstream.alerts.silences import new_silence, publish

    try:
        created = new_silence(rule, _since(duration), key, dimension, comment, _user())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    publish(KafkaSettings(), created)
    typer.echo(f"silence {created.id}: {rule}{' ' + key if key else ''} until {created.ends_at.isoformat()}")


@alert_app.command("unsilence")
def unsilence(silence_id: str = typer.Argument(..., help="The id `callstream alert silences` shows")) -> None:
    """End a silence now."""
    from callstream.alerts.silences import publish, read_all

    kafka = KafkaSettings()
    found = {s.id: s for s in read_all(kafka).all()}
    if silence_id not in found:
        typer.echo(f"no silence {silence_id}", err=True)
        raise typer.Exit(1)
    publish(kafka, found[silence_id].model_copy(update={"ends_at": datetime.now(UTC)}))
    typer.echo(f"silence {silence_id} ended")


@alert_app.command("silences")
def silences(all_: bool = typer.Option(False, "--all", help="Also the silences that are over")) -> None:
    """Silences in force (or all of them)."""
    from callstream.alerts.silences import read_all

    now = datetime.now(UTC)
    table = DataTable(title="silences")
    for column in ("id", "rule", "key", "from", "until", "by", "comment"):
        table.add_column(column)
    for s in read_all(KafkaSettings()).all():
        if all_ or s.active(now):
            table.add_row(
                s.id,
                s.rule,
                s.key or "*",
                s.starts_at.isoformat(timespec="seconds"),
                s.ends_at.isoformat(timespec="seconds"),
                s.created_by,
                s.comment,
            )
    _console().print(table)


def _console() -> Console:
    """Tables fit the terminal; in a pipe they are not cut to 80 columns."""
    return data_console() if data_console().is_terminal else data_console(width=200)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return ""
