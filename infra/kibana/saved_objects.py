"""The Kibana saved objects of callstream, written as code and exported to `callstream.ndjson`.

Lens state is verbose and easy to get subtly wrong by hand (a formula column needs its hidden
helper columns), so the objects are built here and the ndjson is generated from them:

    python -m callstream.infra.kibana.saved_objects > infra/kibana/callstream.ndjson

A unit test fails when the committed file and this module disagree.

Every aggregate panel reads the window aggregate documents that the stream publishes and the
sink upserts (one document per window and key, newest version wins). Their percentiles are
precomputed per window by the stream (mergeable sketches), so no panel needs a server-side
percentiles aggregation; a panel over many minutes shows the worst minute (max of the per-minute
values), which is what an operator looking for slow periods needs. Ratios are ratios of sums:
error rate = sum(errors) / sum(requests) over the documents in the bucket.

The objects carry the migration versions of Kibana 8.8/8.9 exports; Kibana 8.15 migrates them on
import.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}
PANEL_VERSION = "8.9.0"

# One-minute aggregates of one dimension: each call is counted exactly once per dimension, so a
# sum over documents of one dimension and one window size never double-counts.
PER_MODEL_MINUTES = 'dimension : "model" and window_size : "1m"'
PER_FAMILY_MINUTES = 'dimension : "model_family" and window_size : "1m"'
PER_PROVIDER_MINUTES = 'dimension : "provider" and window_size : "1m"'

LAYER = "layer1"


DEFAULT_INDEX_PREFIX = "callstream"


@dataclass(frozen=True)
class DataView:
    id: str
    title: str
    time_field: str
    name: str
    contract: str  # which model's fields its documents have (checked by the unit tests)

    def for_prefix(self, prefix: str) -> str:
        """The index pattern for another index prefix (`CALLSTREAM_ES_INDEX_PREFIX`)."""
        return prefix + self.title.removeprefix(DEFAULT_INDEX_PREFIX)


AGGREGATES = DataView(
    "callstream-aggregates",
    "callstream-aggregates-*",
    "window_start",
    "callstream window aggregates",
    "aggregate",
)
CALLS = DataView("callstream-calls", "callstream-calls-*", "event_time", "callstream calls", "call")
CALLS_FAILED = DataView(
    "callstream-calls-failed", "callstream-calls-failed", "event_time", "callstream failed calls", "call"
)
DEADLETTER = DataView(
    "callstream-deadletter",
    "callstream-deadletter-*",
    "detected_at",
    "callstream stream dead letters",
    "deadletter",
)
SINK_DEADLETTER = DataView(
    "callstream-sink-deadletter",
    "callstream-sink-deadletter-*",
    "detected_at",
    "callstream sink dead letters",
    "sink_deadletter",
)
DATA_VIEWS = [AGGREGATES, CALLS, CALLS_FAILED, DEADLETTER, SINK_DEADLETTER]

USD = {"id": "number", "params": {"decimals": 2}}
PERCENT = {"id": "percent", "params": {"decimals": 2}}
MILLISECONDS = {"id": "number", "params": {"decimals": 0}}
# Field formats of the data views: a single call costs fractions of a cent.
COST_PATTERN = {"aggregate": "$0,0.0000", "call": "$0,0.000000"}


# -- columns of a Lens form-based layer ----------------------------------------------------------


def date_histogram(field: str) -> dict[str, Any]:
    return {
        "label": field,
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        # Aggregates are one per minute: empty rows would draw false zeros between them.
        "params": {"interval": "auto", "includeEmptyRows": False, "dropPartials": False},
    }


def top_values(field: str, size: int, order_by: str | None, label: str) -> dict[str, Any]:
    order: dict[str, Any] = (
        {"type": "column", "columnId": order_by} if order_by else {"type": "alphabetical", "fallback": True}
    )
    return {
        "label": label,
        "dataType": "string",
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": order,
            "orderDirection": "desc" if order_by else "asc",
            "otherBucket": False,
            "missingBucket": False,
        },
        "customLabel": True,
    }


def metric(operation: str, field: str, label: str, fmt: dict[str, Any] | None = None) -> dict[str, Any]:
    """sum / max / min / average of a numeric field, or count (field `___records___`)."""
    column: dict[str, Any] = {
        "label": label,
        "dataType": "number",
        "operationType": operation,
        "sourceField": field,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True} | ({"format": fmt} if fmt else {}),
        "customLabel": True,
    }
    return column


def count(label: str) -> dict[str, Any]:
    return metric("count", "___records___", label)


def ratio_formula(
    column_id: str,
    label: str,
    numerator: tuple[str, str],
    denominator: tuple[str, str],
    fmt: dict[str, Any],
    scale: int | None = None,
) -> dict[str, dict[str, Any]]:
    """A Lens formula `op(a) / op(b)` (times `scale`, if given) with the helper columns Lens keeps
    next to it.

    Lens stores a formula as the formula column plus hidden parts: one column per aggregation
    (`<id>X0`, `<id>X1`) and a math column (`<id>X2`) that divides them.
    """
    text = f"{numerator[0]}({numerator[1]}) / {denominator[0]}({denominator[1]})"
    if scale is not None:
        text += f" * {scale}"
    part_label = f"Part of {label}"
    x0, x1, x2 = f"{column_id}X0", f"{column_id}X1", f"{column_id}X2"
    parts = {
        x0: metric(numerator[0], numerator[1], part_label) | {"params": {"emptyAsNull": False}},
        x1: metric(denominator[0], denominator[1], part_label) | {"params": {"emptyAsNull": False}},
    }
    math = {
        "label": part_label,
        "dataType": "number",
        "operationType": "math",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"tinymathAst": _math_ast(x0, x1, text, scale)},
        "references": [x0, x1],
        "customLabel": True,
    }
    formula = {
        "label": label,
        "dataType": "number",
        "operationType": "formula",
        "isBucketed": False,
        "scale": "ratio",
        "params": {"formula": text, "isFormulaBroken": False, "format": fmt},
        "references": [x2],
        "customLabel": True,
    }
    return {column_id: formula, **parts, x2: math}


def _math_ast(x0: str, x1: str, text: str, scale: int | None) -> dict[str, Any]:
    divide = {"type": "function", "name": "divide", "args": [x0, x1]}
    location = {"location": {"min": 0, "max": len(text)}, "text": text}
    if scale is None:
        return divide | location
    return {"type": "function", "name": "multiply", "args": [divide, scale]} | location


ERROR_RATE = ("sum", "errors"), ("sum", "requests")
COST_PER_1K_TOKENS = ("sum", "cost_usd"), ("sum", "tokens.total")
USD_PER_1K = {"id": "number", "params": {"decimals": 5}}

# Hourly aggregates of one dimension: for ranges of weeks or months, where minutes are too many
# (and past the 1m windows' retention). Hours, not days: a UTC day is not a local day.
PER_MODEL_HOURS = 'dimension : "model" and window_size : "1h"'
PRICED_MODEL_HOURS = PER_MODEL_HOURS + " and unpriced_requests : 0"


# -- Lens objects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lens:
    id: str
    title: str
    description: str
    data_view: DataView
    query: str
    columns: dict[str, dict[str, Any]]
    visualization_type: str
    visualization: dict[str, Any]

    def saved_object(self) -> dict[str, Any]:
        state = {
            "datasourceStates": {
                "formBased": {
                    "layers": {
                        LAYER: {
                            "columns": self.columns,
                            "columnOrder": list(self.columns),
                            "incompleteColumns": {},
                        }
                    }
                }
            },
            "visualization": self.visualization,
            "query": {"query": self.query, "language": "kuery"},
            "filters": [],
            "internalReferences": [],
            "adHocDataViews": {},
        }
        return _saved(
            "lens",
            self.id,
            {
                "title": self.title,
                "description": self.description,
                "visualizationType": self.visualization_type,
                "state": state,
            },
            [
                {
                    "type": "index-pattern",
                    "id": self.data_view.id,
                    "name": f"indexpattern-datasource-layer-{LAYER}",
                }
            ],
        )


def xy(
    series_type: str, x: str, accessors: list[str], split: str | None = None, y_title: str | None = None
) -> dict[str, Any]:
    layer: dict[str, Any] = {
        "layerId": LAYER,
        "layerType": "data",
        "seriesType": series_type,
        "xAccessor": x,
        "accessors": accessors,
    }
    if split:
        layer["splitAccessor"] = split
    visualization: dict[str, Any] = {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "fittingFunction": "Linear",
        "preferredSeriesType": series_type,
        "layers": [layer],
    }
    if y_title:
        visualization["yTitle"] = y_title
    return visualization


def single_metric(accessor: str) -> dict[str, Any]:
    return {"layerId": LAYER, "layerType": "data", "metricAccessor": accessor}


def table(columns: list[str], sort_by: str) -> dict[str, Any]:
    return {
        "layerId": LAYER,
        "layerType": "data",
        "columns": [{"columnId": c, "isTransposed": False} for c in columns],
        "sorting": {"columnId": sort_by, "direction": "desc"},
    }


def lenses() -> list[Lens]:
    t = date_histogram("window_start")
    by_model = top_values("key", 10, "requests", "Model")
    return [
        Lens(
            "callstream-total-cost",
            "Total cost (USD)",
            "Sum of cost_usd over the one-minute per-model aggregates. Unpriced calls add nothing: see "
            "'Unpriced requests'.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {"cost": metric("sum", "cost_usd", "Total cost (USD)", USD)},
            "lnsMetric",
            single_metric("cost"),
        ),
        Lens(
            "callstream-requests",
            "Requests",
            "Calls of every outcome (successes, HTTP errors, timeouts, exceptions).",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {"requests": metric("sum", "requests", "Requests")},
            "lnsMetric",
            single_metric("requests"),
        ),
        Lens(
            "callstream-error-rate",
            "Error rate",
            "sum(errors) / sum(requests): the share of failed calls, not an average of status codes or of "
            "per-minute rates.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            ratio_formula("rate", "Error rate", *ERROR_RATE, PERCENT),
            "lnsMetric",
            single_metric("rate"),
        ),
        Lens(
            "callstream-unpriced",
            "Unpriced requests",
            "Calls whose model had no known price at event time: their cost is unknown, not zero.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {"unpriced": metric("sum", "unpriced_requests", "Unpriced requests")},
            "lnsMetric",
            single_metric("unpriced"),
        ),
        Lens(
            "callstream-latency-p95-by-model",
            "Response time p95 by model (ms)",
            "Per-minute p95 latency from the stream's sketches; over a longer bucket, the worst minute.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {
                "time": t,
                "model": top_values("key", 10, "p95", "Model"),
                "p95": metric("max", "latency_ms.p95", "p95 latency (ms, worst minute)", MILLISECONDS),
            },
            "lnsXY",
            xy("line", "time", ["p95"], "model", "ms"),
        ),
        Lens(
            "callstream-latency-p99-by-model",
            "Response time p99 by model (ms)",
            "Per-minute p99 latency from the stream's sketches; over a longer bucket, the worst minute.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {
                "time": t,
                "model": top_values("key", 10, "p99", "Model"),
                "p99": metric("max", "latency_ms.p99", "p99 latency (ms, worst minute)", MILLISECONDS),
            },
            "lnsXY",
            xy("line", "time", ["p99"], "model", "ms"),
        ),
        Lens(
            "callstream-error-rate-by-model",
            "Error rate by model",
            "sum(errors) / sum(requests) per model and time bucket.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {
                "time": t,
                "model": top_values("key", 10, None, "Model"),
                **ratio_formula("rate", "Error rate", *ERROR_RATE, PERCENT),
            },
            "lnsXY",
            xy("line", "time", ["rate"], "model", "error rate"),
        ),
        Lens(
            "callstream-requests-by-model",
            "Requests by model",
            "Calls per time bucket, stacked by model.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {"time": t, "model": by_model, "requests": metric("sum", "requests", "Requests")},
            "lnsXY",
            xy("bar_stacked", "time", ["requests"], "model"),
        ),
        Lens(
            "callstream-tokens-by-model",
            "Token usage by model",
            "Input and output tokens (cached input is part of input, reasoning is part of output).",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {
                "model": top_values("key", 10, "input", "Model"),
                "input": metric("sum", "tokens.input", "Input tokens"),
                "output": metric("sum", "tokens.output", "Output tokens"),
            },
            "lnsXY",
            xy("bar_horizontal_stacked", "model", ["input", "output"], None, "tokens"),
        ),
        Lens(
            "callstream-cost-by-family",
            "Cost trend by model family (USD)",
            "Sum of cost_usd per time bucket over the model-family aggregates.",
            AGGREGATES,
            PER_FAMILY_MINUTES,
            {
                "time": t,
                "family": top_values("key", 10, "cost", "Model family"),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
            },
            "lnsXY",
            xy("area_stacked", "time", ["cost"], "family", "USD"),
        ),
        Lens(
            "callstream-cost-by-provider",
            "Cost trend by provider (USD)",
            "Sum of cost_usd per time bucket over the provider aggregates.",
            AGGREGATES,
            PER_PROVIDER_MINUTES,
            {
                "time": t,
                "provider": top_values("key", 10, "cost", "Provider"),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
            },
            "lnsXY",
            xy("bar_stacked", "time", ["cost"], "provider", "USD"),
        ),
        Lens(
            "callstream-top-error-types",
            "Top error types",
            "Failed calls by error category (rate_limit_exceeded, timeout, provider_server_error, ...) "
            "and model.",
            CALLS,
            'request_status : "error"',
            {
                "category": top_values("error_category", 10, "calls", "Error category"),
                "model": top_values("model", 5, "calls", "Model"),
                "calls": count("Failed calls"),
            },
            "lnsXY",
            xy("bar_horizontal_stacked", "category", ["calls"], "model"),
        ),
        Lens(
            "callstream-model-summary",
            "Models: volume, errors, cost, tokens, latency",
            "Sums over the one-minute per-model aggregates in the time range. Latency: p50 is the mean "
            "of the per-minute p50s, p95 and p99 are the worst minute.",
            AGGREGATES,
            PER_MODEL_MINUTES,
            {
                "model": top_values("key", 50, "requests", "Model"),
                "requests": metric("sum", "requests", "Requests"),
                "errors": metric("sum", "errors", "Errors"),
                **ratio_formula("rate", "Error rate", *ERROR_RATE, PERCENT),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
                "unpriced": metric("sum", "unpriced_requests", "Unpriced"),
                "input": metric("sum", "tokens.input", "Input tokens"),
                "output": metric("sum", "tokens.output", "Output tokens"),
                "cache_read": metric("sum", "tokens.cache_read_input", "Cache-read tokens"),
                "reasoning": metric("sum", "tokens.reasoning_output", "Reasoning tokens"),
                "p50": metric("average", "latency_ms.p50", "p50 ms (mean of minutes)", MILLISECONDS),
                "p95": metric("max", "latency_ms.p95", "p95 ms (worst minute)", MILLISECONDS),
                "p99": metric("max", "latency_ms.p99", "p99 ms (worst minute)", MILLISECONDS),
            },
            "lnsDatatable",
            table(
                [
                    "model",
                    "requests",
                    "errors",
                    "rate",
                    "cost",
                    "unpriced",
                    "input",
                    "output",
                    "cache_read",
                    "reasoning",
                    "p50",
                    "p95",
                    "p99",
                ],
                sort_by="requests",
            ),
        ),
        Lens(
            "callstream-cost-by-model-long-range",
            "Cost by model, long range (USD, hourly aggregates)",
            "Sum of cost_usd over the hourly per-model aggregates: for weeks and months (1m aggregates "
            "expire sooner). Buckets are in the browser's time zone; a bucket of a day or more is "
            "a union of whole hours.",
            AGGREGATES,
            PER_MODEL_HOURS,
            {
                "time": t,
                "model": top_values("key", 10, "cost", "Model"),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
            },
            "lnsXY",
            xy("bar_stacked", "time", ["cost"], "model", "USD"),
        ),
        Lens(
            "callstream-latency-p95-long-range",
            "Response time p95 by model, long range (ms, worst hour)",
            "Per-hour p95 latency from the stream's sketches (hourly aggregates); over a longer bucket, the "
            "worst hour. `callstream report` merges the sketches for the p95 of a whole range.",
            AGGREGATES,
            PER_MODEL_HOURS,
            {
                "time": t,
                "model": top_values("key", 10, "p95", "Model"),
                "p95": metric("max", "latency_ms.p95", "p95 latency (ms, worst hour)", MILLISECONDS),
            },
            "lnsXY",
            xy("line", "time", ["p95"], "model", "ms"),
        ),
        Lens(
            "callstream-cost-per-1k-tokens",
            "Cost per 1k tokens by model (USD)",
            "sum(cost_usd) / sum(tokens.total) * 1000 over the hourly per-model aggregates, hours with "
            "unpriced calls left out (their tokens have no cost to divide).",
            AGGREGATES,
            PRICED_MODEL_HOURS,
            {
                "model": top_values("key", 20, "tokens", "Model"),
                "tokens": metric("sum", "tokens.total", "Tokens"),
                **ratio_formula("per1k", "Cost per 1k tokens (USD)", *COST_PER_1K_TOKENS, USD_PER_1K, 1000),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
            },
            "lnsDatatable",
            table(["model", "per1k", "cost", "tokens"], sort_by="per1k"),
        ),
        Lens(
            "callstream-top-users",
            "Top users by cost",
            "Users by the sum of their calls' cost (calls index: the stream keeps no per-user aggregates "
            "here), with their calls and tokens.",
            CALLS,
            "",
            {
                "user": top_values("user_id", 20, "cost", "User"),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
                "calls": count("Calls"),
                "tokens": metric("sum", "total_tokens", "Tokens"),
            },
            "lnsDatatable",
            table(["user", "cost", "calls", "tokens"], sort_by="cost"),
        ),
        Lens(
            "callstream-top-services",
            "Top services by cost",
            "Services by the sum of their calls' cost (calls index), with their calls and tokens.",
            CALLS,
            "",
            {
                "service": top_values("service_name", 20, "cost", "Service"),
                "cost": metric("sum", "cost_usd", "Cost (USD)", USD),
                "calls": count("Calls"),
                "tokens": metric("sum", "total_tokens", "Tokens"),
            },
            "lnsDatatable",
            table(["service", "cost", "calls", "tokens"], sort_by="cost"),
        ),
        Lens(
            "callstream-stream-deadletters",
            "Stream dead letters",
            "Inputs the stream rejected (invalid JSON, schema violations), kept with the reason.",
            DEADLETTER,
            "",
            {"time": date_histogram("detected_at"), "letters": count("Dead letters")},
            "lnsXY",
            xy("bar_stacked", "time", ["letters"]),
        ),
        Lens(
            "callstream-sink-deadletters",
            "Sink dead letters",
            "Documents Elasticsearch refused, kept with the reason.",
            SINK_DEADLETTER,
            "",
            {"time": date_histogram("detected_at"), "letters": count("Dead letters")},
            "lnsXY",
            xy("bar_stacked", "time", ["letters"]),
        ),
    ]


# Dashboard grid: 48 columns wide. (lens id, x, y, w, h)
LAYOUT = [
    ("callstream-total-cost", 0, 0, 12, 6),
    ("callstream-requests", 12, 0, 12, 6),
    ("callstream-error-rate", 24, 0, 12, 6),
    ("callstream-unpriced", 36, 0, 12, 6),
    ("callstream-latency-p95-by-model", 0, 6, 24, 12),
    ("callstream-latency-p99-by-model", 24, 6, 24, 12),
    ("callstream-error-rate-by-model", 0, 18, 24, 12),
    ("callstream-requests-by-model", 24, 18, 24, 12),
    ("callstream-tokens-by-model", 0, 30, 24, 12),
    ("callstream-cost-by-family", 24, 30, 24, 12),
    ("callstream-cost-by-provider", 0, 42, 24, 12),
    ("callstream-top-error-types", 24, 42, 24, 12),
    ("callstream-model-summary", 0, 54, 48, 14),
    ("callstream-stream-deadletters", 0, 68, 24, 8),
    ("callstream-sink-deadletters", 24, 68, 24, 8),
    ("callstream-cost-by-model-long-range", 0, 76, 24, 12),
    ("callstream-latency-p95-long-range", 24, 76, 24, 12),
    ("callstream-cost-per-1k-tokens", 0, 88, 16, 12),
    ("callstream-top-users", 16, 88, 16, 12),
    ("callstream-top-services", 32, 88, 16, 12),
]
DASHBOARD_ID = "callstream-overview"


def dashboard() -> dict[str, Any]:
    panels, references = [], []
    for index, (lens_id, x, y, w, h) in enumerate(LAYOUT, start=1):
        panel_index = f"p{index}"
        panels.append(
            {
                "version": PANEL_VERSION,
                "type": "lens",
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
                "panelIndex": panel_index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{panel_index}",
            }
        )
        references.append({"name": f"{panel_index}:panel_{panel_index}", "type": "lens", "id": lens_id})
    attributes = {
        "title": "callstream: LLM API calls",
        "description": "Latency, tokens, cost and errors of LLM API calls (callstream window aggregates).",
        "panelsJSON": _json(panels),
        "optionsJSON": _json(
            {
                "useMargins": True,
                "syncColors": True,
                "syncCursor": True,
                "syncTooltips": True,
                "hidePanelTitles": False,
            }
        ),
        "timeRestore": True,
        "timeFrom": "now-1h",
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 30_000},
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": _json({"query": {"query": "", "language": "kuery"}, "filter": []})
        },
        "version": 1,
    }
    return _saved("dashboard", DASHBOARD_ID, attributes, references)


def data_view(view: DataView, prefix: str = DEFAULT_INDEX_PREFIX) -> dict[str, Any]:
    name = view.name if prefix == DEFAULT_INDEX_PREFIX else f"{view.name} ({prefix})"
    attributes = {"title": view.for_prefix(prefix), "name": name, "timeFieldName": view.time_field}
    if view.contract in COST_PATTERN:
        attributes["fieldFormatMap"] = _json(
            {"cost_usd": {"id": "number", "params": {"pattern": COST_PATTERN[view.contract]}}}
        )
    return _saved("index-pattern", view.id, attributes, [])


def saved_objects(prefix: str = DEFAULT_INDEX_PREFIX) -> Iterator[dict[str, Any]]:
    """Data views first, then visualizations, then the dashboard: the order an import resolves.

    The data views read `prefix`'s indices; object ids stay the same, so one Kibana space holds
    the objects of one prefix (provision into a space per prefix to keep several)."""
    for view in DATA_VIEWS:
        yield data_view(view, prefix)
    for lens in lenses():
        yield lens.saved_object()
    yield dashboard()


def ndjson(prefix: str = DEFAULT_INDEX_PREFIX) -> bytes:
    return b"".join(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) + b"\n" for obj in saved_objects(prefix))


def _saved(
    kind: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": object_id,
        "managed": False,
        "references": references,
        "type": kind,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[kind],
    }


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


if __name__ == "__main__":
    sys.stdout.buffer.write(ndjson(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_INDEX_PREFIX))
