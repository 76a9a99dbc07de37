"""`callstream report` against what the real pipeline wrote: generated calls go through Kafka, the
stream and sink workers (separate processes) into Elasticsearch, and every figure of the report
(the JSON output of the command) equals ground truth computed here from the generated calls:
counts, tokens and costs exactly, percentiles within the sketch's stated relative error.

One pipeline run serves the whole module (it is the slow part); each test reads the same data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from callstream import topics
from callstream.producers import synthetic
from callstream.producers.contract import RawCallEvent
from callstream.producers.loadgen import publish
from callstream.settings import ElasticsearchSettings
from callstream.sinks import index_templates
from callstream.streams.sketch import RELATIVE_ACCURACY
from tests.backend import Servers
from tests.ground_truth import SEED_PRICES, compare, exact_quantile, expected_error_type, expected_windows
from tests.pipeline import Pipeline, new_pipeline, wait_for

pytestmark = pytest.mark.integration

START = datetime(2026, 5, 4, 14, 20, tzinfo=UTC)  # 23:20 in Seoul: the calls cross local midnight
COUNT = 6000
RATE_PER_S = 1.0
SINCE, UNTIL = "2026-05-04T14:00:00Z", "2026-05-04T17:00:00Z"
REPO = Path(__file__).resolve().parents[2]


def model_of(event: RawCallEvent) -> str:
    """The generated traffic names each model canonically in its request; a success may carry a
    dated response name, which falls into the same model."""
    return event.request_model.lower()


def cost_pico(event: RawCallEvent) -> int | None:
    """The ELK tutorial gateway: one price per token kind, in pico-dollars (1 $/Mtok = 10^6 pico/token)."""
    price = SEED_PRICES.get(model_of(event))
    if price is None:
        return None
    value = (event.input_tokens + event.output_tokens) * price * 1_000_000
    assert value.denominator == 1
    return int(value)


def with_reported_costs(events: list[RawCallEvent]) -> list[RawCallEvent]:
    """Every fourth call reports a cost 10% above the computed one (unpriced calls report $0.001)."""
    out = []
    for i, event in enumerate(events):
        if i % 4 == 0:
            pico = cost_pico(event)
            reported = round(pico * 1.1 / 1e12, 9) if pico is not None else 0.001
            event = event.model_copy(update={"reported_cost_usd": reported})
        out.append(event)
    return out


@pytest.fixture(scope="module")
def data(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, list[RawCallEvent]]]:
    tmp = tmp_path_factory.mktemp("report")
    pipeline = new_pipeline(servers, tmp)  # type: ignore[arg-type]
    events = with_reported_costs(synthetic.generate(COUNT, seed=2026, start=START, rate_per_s=RATE_PER_S))
    es_settings = ElasticsearchSettings(url=servers.es_url, index_prefix=pipeline.prefix)
    es = es_settings.client()
    index_templates.apply(es, es_settings)  # the report reads the production mappings
    try:
        pipeline.start_stream_worker()
        pipeline.start("sink", name="sink")
        assert publish(pipeline.kafka, pipeline.topic(topics.RAW), events).failed_messages == 0
        expected = expected_windows(events)
        state: dict[str, Any] = {"problems": ["not read yet"]}

        def complete() -> bool:
            es.indices.refresh(index=f"{pipeline.prefix}-*")
            if es.count(index=f"{pipeline.prefix}-calls-*")["count"] < COUNT:
                return False
            docs = es.search(index=f"{pipeline.prefix}-aggregates-*", size=10_000)["hits"]["hits"]
            state["problems"] = compare(expected, {d["_id"]: d["_source"] for d in docs})
            return not state["problems"]

        wait_for(
            complete, 240, interval_s=2, describe=lambda: "\n".join(state["problems"][:10]) + pipeline.logs()
        )
        pipeline.stop_all()
        yield pipeline, events
    finally:
        pipeline.stop_all()
        es.close()


def run_report(pipeline: Pipeline, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ) | {
        "CALLSTREAM_ES_URL": pipeline.servers.es_url,
        "CALLSTREAM_ES_INDEX_PREFIX": pipeline.prefix,
        "CALLSTREAM_STREAM_PRICE_PROFILE": "gateway",
    }
    result = subprocess.run(
        [sys.executable, "-m", "callstream.cli", "report", *args],
        env=env,
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result


def report_json(pipeline: Pipeline, *args: str) -> dict[str, Any]:
    return orjson.loads(run_report(pipeline, *args, "--format", "json").stdout)


def within_sketch_error(got: float | None, values: list[float], q: float) -> bool:
    want = exact_quantile(values, q)
    return got is not None and abs(got - want) <= RELATIVE_ACCURACY * want + 1e-9


def local_label(event: RawCallEvent, zone: str, by: str) -> str:
    local = event.event_time.astimezone(ZoneInfo(zone))
    if by == "day":
        return local.date().isoformat()
    return local.replace(minute=0, second=0, microsecond=0).isoformat(timespec="minutes")


def test_per_model_figures_equal_ground_truth(data: tuple[Pipeline, list[RawCallEvent]]) -> None:
    pipeline, events = data
    report = report_json(pipeline, "--since", SINCE, "--until", UNTIL, "--tz", "Asia/Seoul")
    by_model: dict[str, list[RawCallEvent]] = defaultdict(list)
    for event in events:
        by_model[model_of(event)].append(event)
    total_pico = sum(cost_pico(e) or 0 for e in events)
    assert report["total"]["requests"] == COUNT
    assert report["total"]["cost_pico"] == total_pico
    rows = {row["key"]: row for row in report["models"]}
    assert set(rows) == set(by_model)
    for model, calls in by_model.items():
        row = rows[model]
        errors = [e for e in calls if expected_error_type(e) is not None]
        pico = sum(cost_pico(e) or 0 for e in calls)
        assert row["requests"] == len(calls), model
        assert row["errors"] == len(errors), model
        assert row["error_rate"] == pytest.approx(len(errors) / len(calls))
        assert row["tokens"]["input"] == sum(e.input_tokens for e in calls)
        assert row["tokens"]["output"] == sum(e.output_tokens for e in calls)
        assert row["tokens"]["cache_read_input"] == sum(e.cache_read_input_tokens for e in calls)
        assert row["tokens"]["reasoning_output"] == sum(e.reasoning_output_tokens for e in calls)
        assert row["cost_pico"] == pico, model
        assert row["share_of_spend"] == pytest.approx(pico / total_pico)
        if model in SEED_PRICES:
            assert row["unpriced_requests"] == 0
            assert row["cost_per_1k_tokens_usd"] == pytest.approx(float(SEED_PRICES[model]) / 1000)
        else:
            assert row["unpriced_requests"] == len(calls)
            assert row["cost_per_1k_tokens_usd"] is None
        latencies = [e.duration_ms for e in calls]
        assert row["latency_ms"]["mean"] == pytest.approx(sum(latencies) / len(latencies), rel=1e-9)
        assert (row["latency_ms"]["min"], row["latency_ms"]["max"]) == (min(latencies), max(latencies))
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
            assert within_sketch_error(row["latency_ms"][name], latencies, q), (model, name)
    # Errors by model and category, with the generator's messages as samples.
    messages = {status or kind: message for _, status, kind, message in synthetic.FAILURES}
    for error_row in report["errors"]:
        calls = by_model[error_row["model"]]
        want: dict[str, int] = defaultdict(int)
        for event in calls:
            category = expected_error_type(event)
            if category:
                want[category] += 1
        assert {c["category"]: c["count"] for c in error_row["categories"]} == want
        for category in error_row["categories"]:
            sample = category["samples"][0]["message"]
            assert sample in messages.values()


def test_days_and_hours_in_other_time_zones(data: tuple[Pipeline, list[RawCallEvent]]) -> None:
    pipeline, events = data
    for zone, by, sizes in (
        ("Asia/Seoul", "day", {"1h"}),
        ("Asia/Kolkata", "hour", {"1m"}),
        ("UTC", "hour", {"1h"}),
    ):
        report = report_json(pipeline, "--since", SINCE, "--until", UNTIL, "--tz", zone, "--by", by)
        want: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for event in events:
            cell = want[local_label(event, zone, by)]
            cell[0] += 1
            cell[1] += cost_pico(event) or 0
        got = {g["key"]: [g["requests"], g["cost_pico"]] for g in report["groups"] if g["requests"]}
        assert got == dict(want), (zone, by)
        assert set(report["windows_used"]) == sizes, (zone, report["windows_used"])
        assert any(("1m" in n or "1h" in n) and "read from window aggregates" in n for n in report["notes"])
    seoul = report_json(pipeline, "--since", SINCE, "--until", UNTIL, "--tz", "Asia/Seoul")
    hours: dict[str, int] = defaultdict(int)
    for event in events:
        hours[f"{event.event_time.astimezone(ZoneInfo('Asia/Seoul')).hour:02d}"] += 1
    assert {r["slot"]: r["requests"] for r in seoul["patterns"]["hour_of_day"] if r["requests"]} == dict(
        hours
    )
    weekdays = {r["slot"]: r["requests"] for r in seoul["patterns"]["weekday"] if r["requests"]}
    assert weekdays == {
        "Mon": sum(1 for e in events if local_label(e, "Asia/Seoul", "day") == "2026-05-04"),
        "Tue": sum(1 for e in events if local_label(e, "Asia/Seoul", "day") == "2026-05-05"),
    }


def test_attribution_waste_and_reconciliation(data: tuple[Pipeline, list[RawCallEvent]]) -> None:
    pipeline, events = data
    report = report_json(pipeline, "--since", SINCE, "--until", UNTIL, "--tz", "Asia/Seoul", "--top", "5")
    total_pico = sum(cost_pico(e) or 0 for e in events)
    attribution = {a["dimension"]: a for a in report["attribution"]}
    for dimension, attr in (("user", "user_id"), ("session", "session_id"), ("service", "service_name")):
        spend: dict[str, int] = defaultdict(int)
        mix: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for event in events:
            key = getattr(event, attr)
            spend[key] += cost_pico(event) or 0
            mix[key][model_of(event)] += cost_pico(event) or 0
        ranked = sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        rows = attribution[dimension]["rows"]
        assert [(r["key"], r["cost_pico"]) for r in rows] == ranked, dimension
        for row in rows:
            assert row["share_of_spend"] == pytest.approx(row["cost_pico"] / total_pico)
            assert {m["model"]: m["cost_pico"] for m in row["models"]} == dict(mix[row["key"]])
        assert attribution[dimension]["cost_pico_outside_top"] == total_pico - sum(c for _, c in ranked)

    wasteful = [e for e in events if e.output_tokens > 0 and e.input_tokens > 10 * e.output_tokens]
    waste = report["waste"]
    assert waste["complete"] and waste["calls"] == len(wasteful)
    assert waste["cost_pico"] == sum(cost_pico(e) or 0 for e in wasteful)
    top = sorted(wasteful, key=lambda e: (-(cost_pico(e) or 0), e.event_id))[:5]
    assert [c["event_id"] for c in waste["top_calls"]] == [e.event_id for e in top]
    assert [c["session_id"] for c in waste["top_calls"]] == [e.session_id for e in top]

    reported: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0.0, 0, 0, 0.0])
    for event in events:
        if event.reported_cost_usd is None:
            continue
        cell = reported[(model_of(event), local_label(event, "Asia/Seoul", "day"))]
        cell[0] += 1
        pico = cost_pico(event)
        if pico is None:
            cell[3] += 1
            cell[4] += event.reported_cost_usd
        else:
            cell[1] += event.reported_cost_usd
            cell[2] += pico
    rows = {(r["model"], r["day"]): r for r in report["reconciliation"]["rows"]}
    assert set(rows) == set(reported)
    for key, (calls, usd, pico, unpriced, unpriced_usd) in reported.items():
        row = rows[key]
        assert row["calls_with_reported"] == calls
        assert row["computed_pico"] == pico
        assert row["reported_usd"] == pytest.approx(usd, abs=1e-6)
        assert row["reported_unpriced_calls"] == unpriced
        assert row["reported_unpriced_usd"] == pytest.approx(unpriced_usd, abs=1e-6)
        if pico:
            assert row["drift_ratio"] == pytest.approx(0.1, abs=1e-4)


def test_savings_equal_a_hand_computation(data: tuple[Pipeline, list[RawCallEvent]]) -> None:
    pipeline, events = data
    deepseek = SEED_PRICES["deepseek-v3.2"] * 1_000_000  # pico per token, every kind alike

    def expected(selected: list[RawCallEvent]) -> tuple[int, int]:
        current = sum(cost_pico(e) or 0 for e in selected)
        target = sum((e.input_tokens + e.output_tokens) * deepseek for e in selected)
        simulated = current + Fraction(1, 2) * (target - current)
        return current, round(simulated)

    gpt = [e for e in events if model_of(e) == "gpt-4.1"]
    args = [
        "savings",
        "--from",
        "gpt-4.1",
        "--to",
        "deepseek-v3.2",
        "--share",
        "0.5",
        "--since",
        SINCE,
        "--until",
        UNTIL,
    ]
    result = orjson.loads(run_report(pipeline, *args, "--format", "json").stdout)
    current, simulated = expected(gpt)
    assert (result["total"]["current_pico"], result["total"]["simulated_pico"]) == (current, simulated)
    assert result["total"]["requests"] == len(gpt)
    assert result["target_prices"] == ["gateway:deepseek-v3.2@2025-01-01"]
    assert [d["day"] for d in result["days"]] == ["2026-05-04"]

    support = [e for e in gpt if e.service_name == "support-bot"]
    filtered = orjson.loads(
        run_report(pipeline, *args, "--service", "support-bot", "--format", "json").stdout
    )
    current, simulated = expected(support)
    assert (filtered["total"]["current_pico"], filtered["total"]["simulated_pico"]) == (current, simulated)
    assert filtered["source"].startswith("calls index")

    # The terminal output names its assumptions.
    table = run_report(pipeline, *args).stdout.decode()
    assert "the rest keep their recorded cost" in table and "Prompt caching" in table


def test_unpriced_and_empty_ranges_read_clearly(data: tuple[Pipeline, list[RawCallEvent]]) -> None:
    pipeline, events = data
    acme = [e for e in events if model_of(e) == "acme-experimental-1"]
    result = orjson.loads(
        run_report(
            pipeline,
            "savings",
            "--from",
            "acme-experimental-1",
            "--to",
            "gpt-4.1",
            "--since",
            SINCE,
            "--until",
            UNTIL,
            "--format",
            "json",
        ).stdout
    )
    assert result["total"]["requests"] == 0
    assert result["excluded"] and all("no price" in e for e in result["excluded"])
    assert sum(int(e.rsplit("(", 1)[1].split()[0]) for e in result["excluded"]) == len(acme)

    table = run_report(pipeline, "--since", SINCE, "--until", UNTIL).stdout.decode()
    assert "unpriced" in table

    empty = report_json(pipeline, "--since", "2020-01-01", "--until", "2020-01-02")
    assert empty["total"]["requests"] == 0 and empty["groups"] == []
    assert empty["notes"][0] == "no calls in this range"
    text = run_report(pipeline, "--since", "2020-01-01", "--until", "2020-01-02").stdout.decode()
    assert "no calls in this range" in text
    nothing = run_report(pipeline, "--since", "2020-01-01", "--until", "2020-01-01")
    assert b"no calls in this range" in nothing.stdout
    bad = run_report(pipeline, "--since", "2020-01-02", "--until", "2020-01-01", check=False)
    assert bad.returncode == 2 and b"ends before it starts" in bad.stderr


# -- the HTML report in a real browser -------------------------------------------------------------

CHARTS = {
    "chart-spend-over-time",
    "chart-error-rate-over-time",
    "chart-share-of-spend",
    "chart-latency-by-model",
    "chart-top-users",
    "chart-top-services",
    "chart-savings",
}
ARTIFACTS = REPO / ".callstream" / "artifacts"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Headless, offline (every host name resolves to nothing), with a fresh profile."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, timeout=180)


class PageReader(HTMLParser):
    """The chart elements' attributes, the body's, and the cells of the page's tables."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = defaultdict(list)
        self.svgs = 0
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = values
        if values.get("id", "").startswith("chart-") and tag == "div":
            self.charts[values["id"]] = values
        if tag == "svg" and "main-svg" in values.get("class", ""):
            self.svgs += 1
        if tag == "table":
            self._table = values.get("id")
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag == "td" and self._table:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        if tag == "table":
            self._table = None


def number(text: str) -> float:
    return float(text.replace("$", "").replace(",", "").replace("%", "").strip())


BUDGETS_YAML = """
timezone: Asia/Seoul
budgets:
  - {name: seoul-day, period: day, amount_usd: 2, warn_at_percent: [50, 80, 100]}
  - {name: per-model-month, scope: model, key: "*", period: month, amount_usd: 5}
  - {name: triage-day, scope: service, key: ticket-triage, period: day, amount_usd: 1}
  - {name: nobody-day, scope: user, key: no-such-user, period: day, amount_usd: 1}
"""


def test_budgets_equal_ground_truth(data: tuple[Pipeline, list[RawCallEvent]], tmp_path: Path) -> None:
    """Spend of the Seoul day and month that contain the range's end (17:00Z = 02:00 on 5 May in
    Seoul), up to that end, per budget scope; the forecast is spend x period / elapsed."""
    pipeline, events = data
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS_YAML)
    report = report_json(pipeline, "--since", SINCE, "--until", UNTIL, "--budgets", str(budgets))
    seoul = ZoneInfo("Asia/Seoul")
    end = datetime.fromisoformat(UNTIL.replace("Z", "+00:00"))
    day_start = datetime(2026, 5, 5, tzinfo=seoul)
    month_start, month_end = datetime(2026, 5, 1, tzinfo=seoul), datetime(2026, 6, 1, tzinfo=seoul)

    def spent(since: datetime, keep: Any = lambda e: True) -> int:
        return sum(cost_pico(e) or 0 for e in events if since <= e.event_time < end and keep(e))

    rows = {(r["name"], r["key"]): r for r in report["budgets"]}
    day = rows[("seoul-day", None)]
    want = spent(day_start)
    assert want > 0 and day["spent_pico"] == want and day["period_label"] == "2026-05-05"
    elapsed = (end - day_start) / timedelta(days=1)
    assert day["elapsed_percent"] == pytest.approx(100 * elapsed)
    assert day["forecast_usd"] == pytest.approx(want / 1e12 / elapsed)
    assert day["level_percent"] == max(
        (lv for lv in (50, 80, 100) if want / 1e12 / 2 * 100 >= lv), default=None
    )

    month_rows = {key: r for (name, key), r in rows.items() if name == "per-model-month"}
    by_model: dict[str, int] = defaultdict(int)
    for event in events:
        if month_start <= event.event_time < end:  # an unpriced model is listed with $0
            by_model[model_of(event)] += cost_pico(event) or 0
    top = sorted(by_model.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert {k: r["spent_pico"] for k, r in month_rows.items()} == dict(top)
    month_share = (end - month_start) / (month_end - month_start)
    for key, row in month_rows.items():
        assert row["forecast_usd"] == pytest.approx(by_model[key] / 1e12 / month_share), key

    triage = rows[("triage-day", "ticket-triage")]
    assert triage["spent_pico"] == spent(day_start, lambda e: e.service_name == "ticket-triage") > 0
    assert rows[("nobody-day", "no-such-user")]["spent_pico"] == 0

    table = run_report(
        pipeline, "--since", SINCE, "--until", UNTIL, "--budgets", str(budgets)
    ).stdout.decode()
    assert "Budgets" in table and "seoul-day" in table and "triage-day" in table
    broken = tmp_path / "broken.yaml"
    broken.write_text("budgets:\n  - {name: x, period: week, amount_usd: 1}\n")
    failed = run_report(pipeline, "--budgets", str(broken), check=False)
    assert failed.returncode == 2
    assert "budget 'x' field period" in failed.stderr.decode()


def test_html_report_in_a_real_browser(data: tuple[Pipeline, list[RawCallEvent]], tmp_path: Path) -> None:
    binary = chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it")
    pipeline, _ = data
    page = tmp_path / "report.html"
    args = ["--since", SINCE, "--until", UNTIL, "--tz", "Asia/Seoul"]
    report = report_json(pipeline, *args, "--html", str(page))
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text, "the page must need no network"

    dom = run_chromium(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    reader = PageReader()
    reader.feed(dom.stdout.decode())
    assert set(reader.charts) == CHARTS
    assert reader.body.get("data-charts-rendered") == str(len(CHARTS)), reader.body
    assert reader.svgs >= len(CHARTS)
    drawn = {}
    for chart_id, attrs in reader.charts.items():
        assert "data-error" not in attrs, (chart_id, attrs["data-error"])
        assert int(attrs["data-drawn"]) > 0, chart_id
        drawn[chart_id] = {t["name"]: t for t in orjson.loads(attrs["data-values"])}

    # Every plotted number is the JSON report's.
    spend: dict[str, dict[str, float]] = defaultdict(dict)
    rates: dict[str, dict[str, float]] = defaultdict(dict)
    for point in report["over_time"]:
        spend[point["key"]][point["bucket"]] = point["cost_usd"]
        if point["error_rate"] is not None:
            rates[point["key"]][point["bucket"]] = point["error_rate"]
    for model, trace in drawn["chart-spend-over-time"].items():
        assert dict(zip(trace["x"], trace["y"], strict=True)) == pytest.approx(spend[model])
    for model, trace in drawn["chart-error-rate-over-time"].items():
        assert dict(zip(trace["x"], trace["y"], strict=True)) == pytest.approx(rates[model])
    assert set(drawn["chart-spend-over-time"]) == set(spend)
    (pie,) = drawn["chart-share-of-spend"].values()
    priced = {m["key"]: m["cost_usd"] for m in report["models"] if m["cost_pico"] > 0}
    assert dict(zip(pie["x"], pie["y"], strict=True)) == pytest.approx(priced)
    for name, trace in drawn["chart-latency-by-model"].items():
        want = {m["key"]: m["latency_ms"][name] for m in report["models"]}
        assert dict(zip(trace["x"], trace["y"], strict=True)) == pytest.approx(want)
    for dimension in ("user", "service"):
        (bars,) = drawn[f"chart-top-{dimension}s"].values()
        rows = next(a for a in report["attribution"] if a["dimension"] == dimension)["rows"]
        assert dict(zip(bars["y"], bars["x"], strict=True)) == pytest.approx(
            {r["key"]: r["cost_usd"] for r in rows}
        )
    savings = report["savings"]
    for name in ("current", "simulated"):
        trace = drawn["chart-savings"][name]
        want = {d["day"]: d[f"{name}_usd"] for d in savings["days"]}
        assert dict(zip(trace["x"], trace["y"], strict=True)) == pytest.approx(want)
    # The model table as the browser shows it: requests exactly, money and percentages as rounded.
    table = {row[0]: row for row in reader.tables["table-models"] if row}
    assert set(table) == {m["key"] for m in report["models"]}
    for model in report["models"]:
        cells = table[model["key"]]
        assert number(cells[1]) == model["requests"]
        if model["unpriced_requests"] == model["requests"]:  # no price at all: never shown as $0
            assert cells[3] == "unpriced"
        else:
            assert number(cells[3]) == pytest.approx(model["cost_usd"], abs=5e-5)
        assert number(cells[2]) / 100 == pytest.approx(model["error_rate"], abs=5e-5)
        assert number(cells[7]) == pytest.approx(model["latency_ms"]["p95"], abs=0.5)

    budgets = {row[0]: row for row in reader.tables["table-budgets"] if row}
    assert set(budgets) == {b["name"] for b in report["budgets"]}  # the shipped example's
    for budget in report["budgets"]:
        assert number(budgets[budget["name"]][4]) == pytest.approx(budget["spent_usd"], abs=5e-3)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report-screenshot.png"
    shot = run_chromium(
        binary,
        tmp_path / "profile-shot",
        "--window-size=1400,4200",
        f"--screenshot={screenshot}",
        page.as_uri(),
    )
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr.decode()[-2000:]
    print(f"\nHTML report screenshot: {screenshot}")
