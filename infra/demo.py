"""`callstream demo`: the main job end to end on local servers (embedded by default, or real).

Local Kafka + Elasticsearch up (`--engine embedded|real`, infra/local_servers.py), topics and
templates, a stream worker, a sink worker and an alert worker (default rules, notifying a webhook
receiver on loopback in this process) as separate processes, synthetic traffic through the load
generator plus a short incident (a burst of failed calls to one model), then a per-model table read
back from Elasticsearch and the alerts the webhook received. Everything it starts, it stops (the
servers too, unless asked to keep them).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from callstream import topics
from callstream.alerts.receiver import WebhookReceiver
from callstream.infra import local_servers
from callstream.infra.processes import start_worker, stop_process
from callstream.infra.setup import setup
from callstream.literal import DataTable, data_console
from callstream.producers import synthetic
from callstream.producers.contract import RawCallEvent
from callstream.producers.loadgen import publish
from callstream.progress import progress as progress_display
from callstream.settings import ElasticsearchSettings

DEMO_DATA_DIR = Path(".callstream/demo")
INCIDENT_MODEL, INCIDENT_CALLS = "gemini-2.5-flash", 600


@dataclass
class ModelRow:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    p95_ms: list[float] = field(default_factory=list)


@dataclass
class DemoReport:
    events: int
    invalid: int
    wall_s: float
    call_docs: int
    aggregate_docs: int
    deadletter_docs: int
    models: dict[str, ModelRow]
    engine: str = local_servers.DEFAULT_ENGINE  # the servers it ran on
    html_report: Path | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # events the webhook received


def _count(es: Any, index: str) -> int:
    try:
        es.indices.refresh(index=index)
        return int(es.count(index=index)["count"])
    except Exception:  # index not created yet
        return 0


def _model_rows(es: Any, prefix: str) -> dict[str, ModelRow]:
    """Per-model totals from the daily aggregate documents (one per model and day)."""
    index = f"{prefix}-aggregates-1d-*"
    es.indices.refresh(index=index)
    hits = es.search(
        index=index,
        query={"bool": {"filter": [{"term": {"dimension": "model"}}, {"term": {"window_size": "1d"}}]}},
        size=10_000,
    )["hits"]["hits"]
    rows: dict[str, ModelRow] = defaultdict(ModelRow)
    for hit in hits:
        doc = hit["_source"]
        row = rows[doc["key"]]
        row.requests += doc["requests"]
        row.errors += doc["errors"]
        row.input_tokens += doc["tokens"]["input"]
        row.output_tokens += doc["tokens"]["output"]
        row.cost_usd += doc["cost_usd"]
        row.unpriced += doc["unpriced_requests"]
        if doc["latency_ms"]["p95"] is not None:
            row.p95_ms.append(doc["latency_ms"]["p95"])
    return dict(rows)


def run_demo(
    events: int = 50_000,
    keep_servers: bool = False,
    data_dir: Path = DEMO_DATA_DIR,
    timeout_s: float = 600,
    console: Console | None = None,
    engine: str = local_servers.DEFAULT_ENGINE,
) -> DemoReport:
    console = console or data_console(stderr=True)
    started = time.monotonic()
    srv = local_servers.up(
        data_dir, local_servers.free_port(), local_servers.free_port(), fresh=True, engine_name=engine
    )
    console.print(f"[bold]servers[/] {srv.engine} engine: Kafka {srv.bootstrap_servers}, {srv.es_url}")
    workers: list[subprocess.Popen[bytes]] = []
    receiver = WebhookReceiver().start()
    try:
        kafka = srv.kafka_settings()
        es_settings = srv.es_settings()
        setup(kafka, es_settings)
        # The demo's traffic is the ELK tutorial gateway's: its workers price with the gateway profile.
        env = (
            dict(os.environ)
            | srv.env()
            | {"PYTHONUNBUFFERED": "1", "CALLSTREAM_STREAM_PRICE_PROFILE": "gateway"}
        )
        log_dir = srv.data_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        workers.append(
            start_worker(
                ["stream", "--web-port", str(local_servers.free_port())], env, log_dir / "stream.log"
            )
        )
        workers.append(start_worker(["sink"], env, log_dir / "sink.log"))
        alert_env = env | {
            "CALLSTREAM_ALERT_WEBHOOK_URL": f"{receiver.url}/webhook",
            "CALLSTREAM_ALERT_DATA_DIR": str(srv.data_dir / "alert"),
            "CALLSTREAM_ALERT_METRICS_PORT": "0",
            "CALLSTREAM_ALERT_WEB_PORT": str(local_servers.free_port()),
        }
        workers.append(start_worker(["alert"], alert_env, log_dir / "alert.log"))
        _wait_for_text(log_dir / "alert.log", "alert state loaded", workers[-1], timeout_s)
        console.print(f"[bold]workers[/] stream, sink and alert started; logs in {log_dir}")

        invalid = [bad for bad, _ in synthetic.invalid_inputs()]
        with progress_display(console=console) as progress:
            produced = progress.add_task("loadgen: events to Kafka", total=events)
            report = publish(
                kafka,
                kafka.topic(topics.RAW),
                synthetic.iter_events(events, seed=int(time.time())),
                on_progress=lambda n: progress.advance(produced, n),
            )
            publish(kafka, kafka.topic(topics.RAW), invalid)
            publish(kafka, kafka.topic(topics.RAW), _incident(INCIDENT_MODEL, INCIDENT_CALLS))
            if report.failed_messages:
                raise RuntimeError(
                    f"{report.failed_messages} messages were not delivered: {report.errors[:3]}"
                )
            indexed = progress.add_task("stream + sink: documents in Elasticsearch", total=events)
            es = es_settings.client()
            deadline = time.monotonic() + timeout_s
            while True:
                done = _count(es, f"{es_settings.index_prefix}-calls-*")
                progress.update(indexed, completed=done)
                rows = _model_rows(es, es_settings.index_prefix) if done >= events else {}
                if done >= events and sum(r.requests for r in rows.values()) >= events:
                    break
                for worker in workers:
                    if worker.poll() is not None:
                        raise RuntimeError(f"a worker exited early (rc={worker.returncode}); see {log_dir}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {done}/{events} documents after {timeout_s}s; see {log_dir}")
                time.sleep(0.5)
        console.print(
            f"waiting for the alert on the incident ({INCIDENT_CALLS} failed calls to {INCIDENT_MODEL})"
        )
        receiver.wait(lambda r: any(e["key"] == INCIDENT_MODEL for _, e in r.events()), 120)
        prefix = es_settings.index_prefix
        result = DemoReport(
            events=events,
            invalid=len(invalid),
            wall_s=time.monotonic() - started,
            call_docs=_count(es, f"{prefix}-calls-*"),
            aggregate_docs=_count(es, f"{prefix}-aggregates-*"),
            deadletter_docs=_count(es, f"{prefix}-deadletter-*"),
            models=rows,
            engine=srv.engine,
            alerts=[event for _, event in receiver.events()],
        )
        es.close()
        result.html_report = write_report_html(es_settings, srv.data_dir / "report.html", console)
        return result
    finally:
        for worker in workers:
            stop_process(worker)
        receiver.close()
        if keep_servers:
            console.print("[bold]servers kept running[/]; point callstream at them with:")
            for key, value in srv.env().items():
                console.print(f"  export {key}={value}")
            console.print(f"stop them with: callstream local down --data-dir {srv.data_dir}")
        else:
            local_servers.down(srv.data_dir)
            console.print("local servers stopped")


def _incident(model: str, count: int) -> list[RawCallEvent]:
    """A burst of failed calls to one model, now: the error-rate rule's 5% is crossed at once."""
    now = datetime.now(UTC)
    return [
        RawCallEvent(
            event_id=f"incident-{now.timestamp():.0f}-{i}",
            event_time=now,
            request_model=model,
            duration_ms=30_000.0,
            status_code=None,
            error_type="timeout",
            error_message="Request timed out",
            service_name="support-bot",
        )
        for i in range(count)
    ]


def _wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} never said '{text}' (rc={process.poll()}); see {path}")
        time.sleep(0.2)


def render(report: DemoReport, console: Console) -> None:
    table = DataTable(title="LLM calls per model (read back from Elasticsearch)")
    for column in (
        "model",
        "requests",
        "error rate",
        "input tokens",
        "output tokens",
        "cost (USD)",
        "p95 ms",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, row in sorted(report.models.items(), key=lambda kv: -kv[1].requests):
        cost = "unpriced" if row.unpriced == row.requests else f"{row.cost_usd:,.4f}"
        p95 = f"{max(row.p95_ms):,.0f}" if row.p95_ms else "-"
        table.add_row(
            model,
            f"{row.requests:,}",
            f"{row.errors / row.requests:.2%}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            cost,
            p95,
        )
    console.print(table)
    console.print(
        f"{report.events:,} events + {report.invalid} invalid inputs in {report.wall_s:.1f} s wall "
        f"({report.events / report.wall_s:,.0f} events/s end to end); documents written: "
        f"{report.call_docs:,} calls, {report.aggregate_docs:,} window aggregates, "
        f"{report.deadletter_docs} dead letters"
    )
    alerts = DataTable(
        title="alerts received by the webhook (default rules; callstream alert list shows them too)"
    )
    for column in ("received", "severity", "alert"):
        alerts.add_column(column)
    for event in report.alerts:
        alerts.add_row(event["kind"], event["severity"], event["message"])
    console.print(alerts if report.alerts else "[bold red]no alert received[/] (see the alert log)")
    if report.html_report:
        console.print(f"HTML report (charts, open in a browser): {report.html_report.resolve()}")


def write_report_html(es_settings: ElasticsearchSettings, path: Path, console: Console) -> Path | None:
    """`callstream report --last 1h --html` over what the demo sent: one self-contained HTML file."""
    try:
        from callstream.budgets import load_budgets
        from callstream.reports.build import build_report
        from callstream.reports.html import write_html
        from callstream.reports.reader import Reader
        from callstream.reports.settings import ReportSettings
        from callstream.reports.timeplan import resolve_range
        from callstream.streams.catalogue import load_catalogue
        from callstream.streams.settings import StreamSettings
    except ImportError as exc:  # the `report` extra is missing
        console.print(f"HTML report skipped: {exc}")
        return None
    settings = ReportSettings()
    span = resolve_range(None, None, "1h", "UTC", int(time.time() * 1000) + 60_000)  # this minute too
    es = es_settings.client()
    try:
        reader = Reader(es, es_settings.index_prefix, settings)
        prices = load_catalogue(StreamSettings(price_profile="gateway")).lookup
        report = build_report(reader, span, "model", prices, settings, budgets=load_budgets())
    finally:
        es.close()
    return write_html(report, path)
