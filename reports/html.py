"""The report as one self-contained HTML file: plotly.js, styles and data inline, no network when opened.

Charts are plotly figures built from the Report (formatting only). After each chart is drawn, a
small inline script records on its element what plotly actually plotted (`data-values`) and how
many traces it drew (`data-drawn`), and the body gets `data-charts-rendered` when all are done:
what the browser test reads back to check every chart against the JSON report.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from callstream.errors import require
from callstream.reports.model import Report
from callstream.reports.terminal import BUDGET_COLUMNS, budget_cells, count, group_cost, money, ms, pct
from callstream.settings import ensure_private_dir

go = require("report", "plotly.graph_objects")
pio = require("report", "plotly.io")
offline = require("report", "plotly.offline")

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933;
background:#fafbfc}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#52606d;font-size:13px} .notes{color:#52606d;font-size:12px;margin:6px 0 0 0;padding-left:18px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
.card{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:8px}
.chart{height:380px}
table{border-collapse:collapse;font-size:13px;background:#fff}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f5f7fa}
.kpis{display:flex;gap:12px;margin:12px 0}
.kpi{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:8px 14px}
.kpi b{display:block;font-size:20px}
"""

RENDER_SCRIPT = """
(function(){
  var specs = JSON.parse(document.getElementById('chart-specs').textContent);
  var pending = specs.length, drawn = 0;
  function done(){ if(--pending === 0){ document.body.setAttribute('data-charts-rendered', String(drawn)); } }
  if(pending === 0){ document.body.setAttribute('data-charts-rendered', '0'); }
  specs.forEach(function(spec){
    var el = document.getElementById(spec.id);
    Plotly.newPlot(el, spec.figure.data, spec.figure.layout, {displayModeBar:false, responsive:true})
      .then(function(gd){
        var values = gd.data.map(function(t){
          return {name: t.name || '', x: t.x || t.labels || null, y: t.y || t.values || null};
        });
        el.setAttribute('data-values', JSON.stringify(values));
        el.setAttribute('data-drawn', String(gd.querySelectorAll('.trace, .slice').length));
        drawn += 1; done();
      }, function(err){ el.setAttribute('data-error', String(err)); done(); });
  });
})();
"""


def plain(text: str) -> str:
    """A name from the data as plotly must get it: plotly reads trace names, labels, ticks and
    titles as limited HTML (`<a href>`, `<b>`, `<br>`), and shows entities as their characters, so
    escaped text is shown exactly as written."""
    return html.escape(text, quote=False)


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 15}},
        "margin": {"l": 60, "r": 20, "t": 48, "b": 48},
        "legend": {"orientation": "h", "y": -0.18},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        **extra,
    }


def figures(report: Report) -> dict[str, Any]:
    """Chart id -> plotly figure, for the charts the data allows (an empty range draws none)."""
    out: dict[str, Any] = {}
    models = [m.key for m in report.models]
    if report.over_time:
        series: dict[str, dict[str, tuple[float, float | None]]] = defaultdict(dict)
        buckets: list[str] = []
        for point in report.over_time:
            if point.bucket not in buckets:
                buckets.append(point.bucket)
            series[point.key][point.bucket] = (point.cost_usd, point.error_rate)
        category = {"type": "category"}
        spend = go.Figure(
            layout=_layout(f"Spend per {report.over_time_by} by model (USD)", barmode="stack", xaxis=category)
        )
        errors = go.Figure(
            layout=_layout(
                f"Error rate per {report.over_time_by} by model", yaxis={"tickformat": ".1%"}, xaxis=category
            )
        )
        for model in models:
            if model not in series:
                continue
            xs = [b for b in buckets if b in series[model]]
            spend.add_bar(name=plain(model), x=xs, y=[series[model][b][0] for b in xs])
            rated = [b for b in xs if series[model][b][1] is not None]
            errors.add_scatter(
                name=plain(model), x=rated, y=[series[model][b][1] for b in rated], mode="lines+markers"
            )
        out["chart-spend-over-time"] = spend
        out["chart-error-rate-over-time"] = errors
    priced = [m for m in report.models if m.cost_pico > 0]
    if priced:
        share = go.Figure(layout=_layout("Share of spend by model"))
        share.add_pie(
            labels=[plain(m.key) for m in priced], values=[m.cost_usd for m in priced], hole=0.45, sort=False
        )
        out["chart-share-of-spend"] = share
    with_latency = [m for m in report.models if m.latency_ms.p50 is not None]
    if with_latency:
        latency = go.Figure(
            layout=_layout("Latency percentiles by model (ms, merged sketches)", barmode="group")
        )
        for name in ("p50", "p90", "p95", "p99"):
            latency.add_bar(
                name=name,
                x=[plain(m.key) for m in with_latency],
                y=[getattr(m.latency_ms, name) for m in with_latency],
            )
        out["chart-latency-by-model"] = latency
    for attribution in report.attribution:
        if attribution.dimension in ("user", "service") and attribution.rows:
            rows = list(reversed(attribution.rows))
            top = go.Figure(
                layout=_layout(
                    f"Top {attribution.dimension}s by cost (USD)",
                    margin={"l": 140, "r": 20, "t": 48, "b": 40},
                )
            )
            top.add_bar(
                name="cost", x=[r.cost_usd for r in rows], y=[plain(r.key) for r in rows], orientation="h"
            )
            out[f"chart-top-{attribution.dimension}s"] = top
    if report.savings and report.savings.days:
        s = report.savings
        savings = go.Figure(
            layout=_layout(
                f"Savings scenario: {s.share:.0%} of {plain(s.from_model)} to {plain(s.to_model)} (USD)",
                barmode="group",
                xaxis={"type": "category"},
            )
        )
        days = [d.day for d in s.days]
        savings.add_bar(name="current", x=days, y=[d.current_usd for d in s.days])
        savings.add_bar(name="simulated", x=days, y=[d.simulated_usd for d in s.days])
        out["chart-savings"] = savings
    return out


def _table(header: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def script_json(value: Any) -> str:
    """JSON for a `<script type="application/json">` block: `<`, `>` and `&` written as JSON escapes,
    so no string of the data (`</script>`, `<!--<script`) can end the block or change how it parses."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report: Report, extra_sections: tuple[str, ...] = ()) -> str:
    """`extra_sections`: HTML fragments (already escaped) appended after the report's own."""
    charts = figures(report)
    specs = [
        {"id": cid, "figure": orjson.loads(pio.to_json(fig, validate=False))} for cid, fig in charts.items()
    ]
    total = report.total
    kpis = [
        ("Requests", count(total.requests)),
        ("Cost", money(total.cost_usd, 2)),
        ("Error rate", pct(total.error_rate)),
        ("Cost per 1k tokens", money(total.cost_per_1k_tokens_usd, 5)),
        ("p95 latency", f"{ms(total.latency_ms.p95)} ms"),
    ]
    kpi_html = "".join(
        f'<div class="kpi" data-kpi="{html.escape(name)}">{html.escape(name)}'
        f"<b>{html.escape(value)}</b></div>"
        for name, value in kpis
    )
    model_rows = [
        [
            m.key,
            count(m.requests),
            pct(m.error_rate),
            group_cost(m),
            pct(m.share_of_spend, 1),
            money(m.cost_per_1k_tokens_usd, 5),
            ms(m.latency_ms.p50),
            ms(m.latency_ms.p95),
            ms(m.latency_ms.p99),
        ]
        for m in report.models
    ]
    sections = [
        "<h2>Models</h2>",
        _table(
            ["model", "requests", "error rate", "cost", "share", "$/1k tok", "p50 ms", "p95 ms", "p99 ms"],
            model_rows,
            "table-models",
        ),
    ]
    chart_html = "".join(f'<div class="card"><div class="chart" id="{cid}"></div></div>' for cid in charts)
    if report.waste:
        w = report.waste
        sections.append(
            f"<h2>Wasteful requests</h2><p class='meta'>input/output tokens above {w.threshold:g}: "
            f"{w.calls:,} calls, {html.escape(money(w.cost_usd))} "
            f"({html.escape(pct(w.share_of_spend, 1))} of spend)</p>"
        )
        sections.append(
            _table(
                ["event", "model", "input", "output", "ratio", "cost", "session"],
                [
                    [
                        c.event_id,
                        c.model,
                        count(c.input_tokens),
                        count(c.output_tokens),
                        f"{c.ratio:.1f}",
                        money(c.cost_usd, 6),
                        c.session_id or "-",
                    ]
                    for c in w.top_calls
                ],
                "table-waste",
            )
        )
    if report.reconciliation and report.reconciliation.total:
        r = report.reconciliation
        recon_rows = [*r.rows, report.reconciliation.total]
        sections.append("<h2>Reported vs computed cost</h2>")
        sections.append(
            _table(
                ["model", "day", "calls with reported", "reported", "computed", "drift", "drift %"],
                [
                    [
                        x.model,
                        x.day,
                        count(x.calls_with_reported),
                        money(x.reported_usd),
                        money(x.computed_usd),
                        money(x.drift_usd),
                        pct(x.drift_ratio),
                    ]
                    for x in recon_rows
                ],
                "table-reconciliation",
            )
        )
    if report.savings:
        s = report.savings
        sections.append(f"<h2>Savings: {html.escape(s.from_model)} to {html.escape(s.to_model)}</h2>")
        sections.append(
            "<ul class='notes'>" + "".join(f"<li>{html.escape(a)}</li>" for a in s.assumptions) + "</ul>"
        )
        sections.append(
            _table(
                ["day", "requests", "moved", "current", "simulated", "savings"],
                [
                    [
                        d.day,
                        count(d.requests),
                        count(d.moved_requests),
                        money(d.current_usd),
                        money(d.simulated_usd),
                        money(d.savings_usd),
                    ]
                    for d in [*s.days, s.total]
                ],
                "table-savings",
            )
        )
    if report.budgets:
        sections.append("<h2>Budgets</h2>")
        sections.append(_table(BUDGET_COLUMNS, budget_cells(report), "table-budgets"))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>callstream report {html.escape(report.range.description)}</title>"
        f"<style>{STYLE}</style><script>{offline.get_plotlyjs()}</script></head><body>"
        f"<h1>LLM API calls: cost, latency and errors</h1>"
        f"<div class='meta'>{html.escape(report.range.description)}; generated "
        f"{html.escape(report.generated_at.isoformat(timespec='seconds'))}</div>"
        f"<ul class='notes'>{notes}</ul><div class='kpis'>{kpi_html}</div>"
        f"<div class='grid'>{chart_html}</div>{''.join(sections)}{''.join(extra_sections)}"
        f"<script type='application/json' id='chart-specs'>{script_json(specs)}</script>"
        f"<script>{RENDER_SCRIPT}</script></body></html>"
    )


def write_html(report: Report, path: Path, extra_sections: tuple[str, ...] = ()) -> Path:
    """The page at `path`, readable by its owner only (0600: it holds user ids and costs); missing
    parent directories are made 0700."""
    if not path.parent.exists():
        ensure_private_dir(path.parent)
    page = render_html(report, extra_sections).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode on open: tighten it too
        out.write(page)
    return path
