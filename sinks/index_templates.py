"""Elasticsearch index templates, aliases and retention for everything the sink writes.

Composable templates with explicit mappings (`dynamic: strict`: a document with an unknown field
or a wrong type is refused and dead-lettered instead of silently widening the mapping):

- `{prefix}-calls-*` (daily, by event time) with the filtered alias `{prefix}-calls-failed`
  (request_status: error), which replaces a separate errors index without writing twice;
- `{prefix}-aggregates-*` (monthly per window size), the latency sketch stored but not indexed;
- `{prefix}-deadletter-*` (the stream's dead letters) and `{prefix}-sink-deadletter-*` (the sink's);
- `{prefix}-bill-YYYY.MM` (monthly, by billed day) for the providers' usage and cost rows
  `callstream bill import` writes (one document per day, provider, export kind, model and token
  kind; `_id` derived from those);
- `{prefix}-alerts-*` for alert documents (`dynamic: false`: their schema belongs to the alerting
  code, so unknown fields are kept in _source without being indexed, never refused).

Money in USD is `double` (sums of many calls are exact to well under a cent; `scaled_float` would
need the mapper-extras module, which not every Elasticsearch 8 node has). Exact sums use the
integer pico-dollars the stream computes (`cost_pico`, a `long`, on every call).

Retention is an ILM delete phase per family, attached where the server has ILM. Rollover is not
used on purpose: daily indices named by event time keep `_id` dedup working for re-sent events.
"""

from __future__ import annotations

from typing import Any

from callstream import logs
from callstream.settings import ElasticsearchSettings
from callstream.sinks.settings import SinkSettings

log = logs.get(__name__)

USD = {"type": "double"}
KEYWORD = {"type": "keyword", "ignore_above": 1024}
TEXT_WITH_KEYWORD = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}}
DATE = {"type": "date"}
INTEGER = {"type": "integer"}
LONG = {"type": "long"}
FLOAT = {"type": "float"}
DOUBLE = {"type": "double"}
BOOLEAN = {"type": "boolean"}
NOT_INDEXED = {"type": "object", "enabled": False}

CALLS_PROPERTIES: dict[str, Any] = {
    "schema_version": {"type": "short"},
    "event_id": KEYWORD,
    "event_time": DATE,
    "operation_name": KEYWORD,
    "provider_name": KEYWORD,
    "request_model": KEYWORD,
    "response_model": KEYWORD,
    "input_tokens": INTEGER,
    "output_tokens": INTEGER,
    "cache_read_input_tokens": INTEGER,
    "cache_creation_input_tokens": INTEGER,
    "reasoning_output_tokens": INTEGER,
    "total_tokens": INTEGER,
    "duration_ms": FLOAT,
    "time_to_first_token_ms": FLOAT,
    "streamed": BOOLEAN,
    "usage": KEYWORD,
    "status_code": {"type": "short"},
    "error_type": KEYWORD,
    "error_message": TEXT_WITH_KEYWORD,
    "server_address": KEYWORD,
    "service_name": KEYWORD,
    "environment": KEYWORD,
    "user_id": KEYWORD,
    "session_id": KEYWORD,
    "reported_cost_usd": USD,
    "metadata": {"type": "flattened"},
    "model": KEYWORD,
    "model_version": KEYWORD,
    "provider": KEYWORD,
    "model_family": KEYWORD,
    "latency_category": KEYWORD,
    "request_status": KEYWORD,
    "error_category": KEYWORD,
    "priced": BOOLEAN,
    "unpriced_reason": KEYWORD,
    "price_id": KEYWORD,
    "cost_usd": USD,
    "input_cost_usd": USD,
    "output_cost_usd": USD,
    "cost_per_token_usd": DOUBLE,  # a price, not an amount: far below a nano-dollar
    "cost_pico": LONG,  # exact integer pico-dollars, for sums that must reconcile
    "time_bucket": DATE,
    # A malformed address from a caller's metadata must not cost the whole event.
    "client_ip": {"type": "ip", "ignore_malformed": True},
    "late": BOOLEAN,
}

AGGREGATES_PROPERTIES: dict[str, Any] = {
    "doc_id": KEYWORD,
    "version": LONG,
    "dimension": KEYWORD,
    "key": KEYWORD,
    "provider": KEYWORD,
    "model_family": KEYWORD,
    "window_size": KEYWORD,
    "window_start": DATE,
    "window_end": DATE,
    "requests": LONG,
    "successes": LONG,
    "errors": LONG,
    "error_rate": DOUBLE,
    # Open-ended error types, each a count (see the dynamic template below).
    "errors_by_type": {"type": "object", "dynamic": True},
    "tokens": {
        "properties": {
            name: LONG
            for name in (
                "input",
                "output",
                "cache_read_input",
                "cache_creation_input",
                "reasoning_output",
                "total",
            )
        }
    },
    "cost_usd": USD,
    "unpriced_requests": LONG,
    "usage_missing_requests": LONG,
    "cost_pico": LONG,
    "late_events": LONG,
    "latency_ms": {
        "properties": {name: DOUBLE for name in ("min", "max", "mean", "p50", "p90", "p95", "p99")}
    },
    "latency_sketch": NOT_INDEXED,  # merged by code, never searched
}

AGGREGATES_DYNAMIC_TEMPLATES = [
    {"errors_by_type_counts": {"path_match": "errors_by_type.*", "mapping": LONG}}
]


DEADLETTER_PROPERTIES: dict[str, Any] = {
    "reason": TEXT_WITH_KEYWORD,
    "stage": KEYWORD,
    "source_topic": KEYWORD,
    "source_partition": INTEGER,
    "source_offset": LONG,
    "batch_index": INTEGER,
    "source_file": KEYWORD,
    "source_line": LONG,
    "original_bytes": LONG,
    "original_truncated": BOOLEAN,
    "detected_at": DATE,
    "original": {"type": "text"},  # the input as text, bounded and scrubbed: searchable
}

# The sink's own dead letters: the same shape, plus what Elasticsearch said about the document.
SINK_DEADLETTER_PROPERTIES: dict[str, Any] = DEADLETTER_PROPERTIES | {
    "error_type": KEYWORD,
    "status": {"type": "short"},
    "target_index": KEYWORD,
    "doc_id": KEYWORD,
    "message_timestamp": DATE,
}

ALERTS_PROPERTIES: dict[str, Any] = {
    "event_id": KEYWORD,
    "kind": KEYWORD,
    "at": DATE,
    "episode": INTEGER,
    "level": DOUBLE,
    "rule_type": KEYWORD,
    "budget": KEYWORD,
    "silenced": BOOLEAN,
    "notified": BOOLEAN,
    "undelivered": KEYWORD,
    "alert_id": KEYWORD,
    "rule": KEYWORD,
    "severity": KEYWORD,
    "state": KEYWORD,
    "dimension": KEYWORD,
    "key": KEYWORD,
    "window_size": KEYWORD,
    "window_start": DATE,
    "window_end": DATE,
    "fired_at": DATE,
    "resolved_at": DATE,
    "value": DOUBLE,
    "threshold": DOUBLE,
    "message": TEXT_WITH_KEYWORD,
    "channels": KEYWORD,
}


# A provider's bill, normalised (callstream.reports.bill.rows.BillRow): money as the exact decimal
# string the export stated and as a double for sums.
BILL_PROPERTIES: dict[str, Any] = {
    "day": DATE,
    "provider": KEYWORD,
    "dataset": KEYWORD,
    "model": KEYWORD,
    "token_kind": KEYWORD,
    "quantity": LONG,
    "cost": DOUBLE,
    "cost_decimal": KEYWORD,
    "currency": KEYWORD,
    "source_file": KEYWORD,
    "source_format": KEYWORD,
    "imported_at": DATE,
}


def ilm_policy(delete_after_days: int) -> dict[str, Any]:
    """Hot until deleted; no rollover (daily/monthly indices are named by event time)."""
    return {
        "phases": {
            "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
            "delete": {"min_age": f"{delete_after_days}d", "actions": {"delete": {}}},
        }
    }


def templates(es: ElasticsearchSettings, sink: SinkSettings) -> dict[str, dict[str, Any]]:
    """Index templates by name (without ILM settings; `apply` adds those where ILM exists)."""
    p = es.index_prefix
    return {
        f"{p}-calls": {
            "index_patterns": [f"{p}-calls-*"],
            "template": {
                "mappings": {"dynamic": "strict", "properties": CALLS_PROPERTIES},
                "aliases": {f"{p}-calls-failed": {"filter": {"term": {"request_status": "error"}}}},
            },
        },
        f"{p}-aggregates": {
            "index_patterns": [f"{p}-aggregates-*"],
            "template": {
                "mappings": {
                    "dynamic": "strict",
                    "dynamic_templates": AGGREGATES_DYNAMIC_TEMPLATES,
                    "properties": AGGREGATES_PROPERTIES,
                }
            },
        },
        f"{p}-deadletter": {
            "index_patterns": [f"{p}-deadletter-*"],
            "template": {"mappings": {"dynamic": "strict", "properties": DEADLETTER_PROPERTIES}},
        },
        f"{p}-sink-deadletter": {
            "index_patterns": [f"{p}-sink-deadletter-*"],
            "template": {"mappings": {"dynamic": "strict", "properties": SINK_DEADLETTER_PROPERTIES}},
        },
        f"{p}-bill": {
            "index_patterns": [f"{p}-bill-*"],
            "template": {"mappings": {"dynamic": "strict", "properties": BILL_PROPERTIES}},
        },
        f"{p}-alerts": {
            "index_patterns": [f"{p}-alerts-*"],
            "template": {"mappings": {"dynamic": False, "properties": ALERTS_PROPERTIES}},
        },
    }


def retention_days(es: ElasticsearchSettings, sink: SinkSettings) -> dict[str, int]:
    """ILM policy name -> days, and which template uses it (same name as the template)."""
    p = es.index_prefix
    return {
        f"{p}-calls": sink.calls_retention_days,
        f"{p}-aggregates": sink.aggregates_retention_days,
        f"{p}-aggregates-1m": sink.aggregates_1m_retention_days,
        f"{p}-deadletter": sink.deadletter_retention_days,
        f"{p}-sink-deadletter": sink.deadletter_retention_days,
        f"{p}-alerts": sink.alerts_retention_days,
        f"{p}-bill": sink.bill_retention_days,
    }


def common_settings(sink: SinkSettings) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "number_of_shards": sink.index_shards,
        "refresh_interval": sink.index_refresh_interval,
    }
    if sink.index_replicas is not None:
        settings["number_of_replicas"] = sink.index_replicas
    return settings


def ilm_supported(client: Any) -> bool:
    try:
        client.ilm.get_status()
    except Exception as exc:  # noida-db answers 400 "no handler found"; a cluster without ILM 404/400
        log.info("ILM unavailable on this server: retention policies skipped", error=str(exc)[:200])
        return False
    return True


def apply(client: Any, settings: ElasticsearchSettings, sink: SinkSettings | None = None) -> None:
    """Put the component and index templates, and ILM policies where supported (idempotent)."""
    sink = sink or SinkSettings()
    p = settings.index_prefix
    with_ilm = ilm_supported(client)
    client.cluster.put_component_template(
        name=f"{p}-index-settings", template={"settings": common_settings(sink)}
    )
    policies = retention_days(settings, sink)
    daily = {f"{p}-calls", f"{p}-deadletter", f"{p}-sink-deadletter"}
    if with_ilm:
        for name, days in policies.items():
            client.ilm.put_lifecycle(name=name, policy=ilm_policy(days))
    for name, body in templates(settings, sink).items():
        body = {**body, "template": dict(body["template"])}
        if with_ilm:
            ilm: dict[str, Any] = {"index.lifecycle.name": name}
            if name in daily:
                # Daily names end in yyyy.MM.dd: age counts from the data's date, also for backfills.
                ilm["index.lifecycle.parse_origination_date"] = True
            body["template"]["settings"] = ilm
        client.indices.put_index_template(
            name=name,
            composed_of=[f"{p}-index-settings"],
            priority=200,
            meta={"managed_by": "callstream"},
            **body,
        )
    if with_ilm:
        # 1m aggregates are many and short-lived: their own template wins over the general one.
        one_minute = templates(settings, sink)[f"{p}-aggregates"]
        client.indices.put_index_template(
            name=f"{p}-aggregates-1m",
            index_patterns=[f"{p}-aggregates-1m-*"],
            composed_of=[f"{p}-index-settings"],
            priority=201,
            meta={"managed_by": "callstream"},
            template={**one_minute["template"], "settings": {"index.lifecycle.name": f"{p}-aggregates-1m"}},
        )
        log.info("index templates and ILM policies applied", retention_days=policies)
    else:
        log.info("index templates applied without retention (no ILM on this server)")
