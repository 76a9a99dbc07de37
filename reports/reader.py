"""Every Elasticsearch query a report makes, and nothing else: answers become plain records.

Only what noida-db (the local and CI server) supports is used: `terms`, `date_range`, `sum`, `avg`,
`cardinality` and `range` aggregations, and documents paged with `search_after`; no `percentiles`,
`composite` or pipeline aggregations. Percentiles come from the aggregates' sketches instead.

Exactness: window aggregates are read as documents (their sketches are needed anyway). From the
calls index, per-key sums of `cost_pico` and token counts come from `sum` aggregations, which
Elasticsearch computes in double precision: exact while a bucket's sum stays below 2^53 (about
$9,007 in pico-dollars, 9e15 tokens). Reported costs are summed from the index's scaled floats
(nano-dollar resolution). Top-N terms on a multi-shard index are Elasticsearch's usual estimate,
with `terms_shard_size` candidates per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from callstream import logs
from callstream.errors import CallstreamError
from callstream.reports.calls import CallGroup, CallSample, ModelUse, ReconcileCell
from callstream.reports.savings import UsageSlice
from callstream.reports.settings import ReportSettings
from callstream.reports.timeplan import Bucket, TimeRange, Window, iso_utc, runs

log = logs.get(__name__)


class ReportQueryError(CallstreamError):
    """Elasticsearch refused or could not answer a query (wrong mapping, server down, ...)."""


INT32_MAX = 2**31 - 1  # Elasticsearch `integer` fields

# Report attribute -> field of the calls index.
CALL_FIELDS = {
    "user": "user_id",
    "session": "session_id",
    "service": "service_name",
    "model": "model",
    "provider": "provider",
}
TOKEN_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_creation": "cache_creation_input_tokens",
    "reasoning": "reasoning_output_tokens",
}
SAMPLE_FIELDS = [
    "event_id",
    "event_time",
    "model",
    "input_tokens",
    "output_tokens",
    "cost_pico",
    "session_id",
    "user_id",
    "service_name",
]


def _sums() -> dict[str, Any]:
    aggs: dict[str, Any] = {"cost": {"sum": {"field": "cost_pico"}}}
    for name, field in TOKEN_FIELDS.items():
        aggs[name] = {"sum": {"field": field}}
    aggs["priced"] = {"terms": {"field": "priced", "size": 2}}
    return aggs


def _int(agg: Mapping[str, Any] | None) -> int:
    value = (agg or {}).get("value")
    return round(value) if value is not None else 0


def _false_count(agg: Mapping[str, Any]) -> int:
    """Documents in the `false` bucket of a boolean terms aggregation (key false, 0 or 'false')."""
    for bucket in agg.get("buckets", []):
        if bucket["key"] in (False, 0) or bucket.get("key_as_string") == "false":
            return int(bucket["doc_count"])
    return 0


def _key_count(agg: Mapping[str, Any], key: str) -> int:
    return sum(int(b["doc_count"]) for b in agg.get("buckets", []) if b["key"] == key)


def _time_filter(field: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return {"range": {field: {"gte": iso_utc(start_ms), "lt": iso_utc(end_ms)}}}


def model_filter(model: str) -> dict[str, Any]:
    """A model by its name or its family: after the stream names a call's model once (request and
    response merged), the calls keep the dated variant while aggregates use the merged name."""
    return {
        "bool": {
            "should": [{"term": {"model": model}}, {"term": {"model_family": model}}],
            "minimum_should_match": 1,
        }
    }


class Reader:
    """Reads one index prefix's aggregates and calls. `client` is an `elasticsearch.Elasticsearch`."""

    def __init__(self, client: Any, index_prefix: str, settings: ReportSettings | None = None) -> None:
        self.client = client
        self.prefix = index_prefix
        self.settings = settings or ReportSettings()

    @property
    def calls_index(self) -> str:
        return f"{self.prefix}-calls-*"

    def aggregates_index(self, size: str = "*") -> str:
        return f"{self.prefix}-aggregates-{size}-*"

    def _search(self, index: str, **body: Any) -> dict[str, Any]:
        from elasticsearch import ApiError, TransportError

        try:
            response = self.client.search(index=index, ignore_unavailable=True, allow_no_indices=True, **body)
        except (ApiError, TransportError) as exc:
            raise ReportQueryError(
                f"Elasticsearch could not answer a report query on {index}: {exc}"
            ) from exc
        return dict(response)

    # -- window aggregates -----------------------------------------------------------------------

    def window_sizes(self, span: TimeRange) -> dict[str, set[str]]:
        """Which dimensions have aggregates in the range, and in which window sizes."""
        if span.empty:
            return {}
        response = self._search(
            self.aggregates_index(),
            size=0,
            query=_time_filter("window_start", span.start_ms, span.end_ms),
            aggs={
                "dimensions": {
                    "terms": {"field": "dimension", "size": 100},
                    "aggs": {"sizes": {"terms": {"field": "window_size", "size": 10}}},
                }
            },
        )
        return {
            b["key"]: {s["key"] for s in b["sizes"]["buckets"]}
            for b in response.get("aggregations", {}).get("dimensions", {}).get("buckets", [])
        }

    def aggregates(
        self, dimension: str, windows: list[Window], keys: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The aggregate documents of `dimension` (and `keys`, if given) in the planned windows."""
        limit = self.settings.max_ranges_per_query
        for size, spans in runs(windows).items():
            for first in range(0, len(spans), limit):
                chunk = spans[first : first + limit]
                filters: list[dict[str, Any]] = [
                    {"term": {"dimension": dimension}},
                    {"term": {"window_size": size}},
                ]
                if keys is not None:
                    filters.append({"terms": {"key": keys}})
                query = {
                    "bool": {
                        "filter": filters,
                        "should": [_time_filter("window_start", a, b) for a, b in chunk],
                        "minimum_should_match": 1,
                    }
                }
                yield from self._pages(self.aggregates_index(size), query, ["window_start", "doc_id"])

    def _pages(
        self, index: str, query: dict[str, Any], sort_fields: list[str], source: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": self.settings.page_size_docs,
                "query": query,
                "sort": [{f: "asc"} for f in sort_fields],
            }
            if source is not None:
                body["source"] = source
            if after is not None:
                body["search_after"] = after
            hits = self._search(index, **body)["hits"]["hits"]
            for hit in hits:
                yield hit["_source"]
            if len(hits) < self.settings.page_size_docs:
                return
            after = hits[-1]["sort"]

    # -- calls ---------------------------------------------------------------------------------

    def _calls_query(
        self, span: TimeRange, filters: Mapping[str, str] | None = None, *more: dict[str, Any]
    ) -> dict[str, Any]:
        clauses = [_time_filter("event_time", span.start_ms, span.end_ms), *more]
        for name, value in (filters or {}).items():
            clauses.append({"term": {CALL_FIELDS.get(name, name): value}})
        return {"bool": {"filter": clauses}}

    def call_overview(self, span: TimeRange, attributes: Iterable[str]) -> tuple[int, dict[str, int | None]]:
        """The range's total cost of calls, and the approximate number of distinct keys of each
        attribute, in one request."""
        names = list(attributes)
        if span.empty:
            return 0, dict.fromkeys(names, 0)
        aggs: dict[str, Any] = {"cost": {"sum": {"field": "cost_pico"}}}
        for name in names:
            aggs[f"distinct_{name}"] = {"cardinality": {"field": CALL_FIELDS[name]}}
        found = self._search(self.calls_index, size=0, query=self._calls_query(span), aggs=aggs).get(
            "aggregations", {}
        )
        distinct = {}
        for name in names:
            value = found.get(f"distinct_{name}", {}).get("value")
            distinct[name] = int(value) if value is not None else None
        return _int(found.get("cost")), distinct

    def call_groups(
        self, span: TimeRange, distinct: Mapping[str, int | None], top_n: int
    ) -> dict[str, list[CallGroup]]:
        """Per attribute (user, session, ...), its keys with their sums and model mix, in one request.

        Up to `exact_terms_max_keys` keys (by `distinct`, from `call_overview`) every key is fetched
        and ranked by the report: exact on any number of shards. Beyond, Elasticsearch ranks by cost
        and returns the top `top_n`, with `terms_shard_size` candidates per shard."""
        if span.empty:
            return {name: [] for name in distinct}
        aggs: dict[str, Any] = {}
        for name, count in distinct.items():
            keys = int(count or 0) * 11 // 10 + 100
            size = keys if keys <= self.settings.exact_terms_max_keys else top_n
            aggs[name] = {
                "terms": {
                    "field": CALL_FIELDS[name],
                    "size": size,
                    "shard_size": max(self.settings.terms_shard_size, size),
                    "order": {"cost": "desc"},
                },
                "aggs": {
                    **_sums(),
                    "status": {"terms": {"field": "request_status", "size": 2}},
                    "latency": {"avg": {"field": "duration_ms"}},
                    "models": {
                        "terms": {"field": "model", "size": 20, "order": {"cost": "desc"}},
                        "aggs": {"cost": {"sum": {"field": "cost_pico"}}},
                    },
                },
            }
        found = self._search(self.calls_index, size=0, query=self._calls_query(span), aggs=aggs).get(
            "aggregations", {}
        )
        return {name: [_call_group(b) for b in found.get(name, {}).get("buckets", [])] for name in distinct}

    def cost_per_key(self, span: TimeRange, attribute: str) -> dict[str, int]:
        """Cost of the calls in `span` per key of `attribute` (service, user), in pico-dollars, up to
        `exact_terms_max_keys` keys by cost: budgets need the current hour, which the stream's 1h
        and 1d service and user aggregates do not hold until it ends."""
        if span.empty:
            return {}
        aggs = {
            "keys": {
                "terms": {
                    "field": CALL_FIELDS[attribute],
                    "size": self.settings.exact_terms_max_keys,
                    "shard_size": max(self.settings.terms_shard_size, self.settings.exact_terms_max_keys),
                    "order": {"cost": "desc"},
                },
                "aggs": {"cost": {"sum": {"field": "cost_pico"}}},
            }
        }
        found = self._search(self.calls_index, size=0, query=self._calls_query(span), aggs=aggs)
        buckets = found.get("aggregations", {}).get("keys", {}).get("buckets", [])
        return {str(b["key"]): _int(b["cost"]) for b in buckets}

    def error_samples(
        self, span: TimeRange, per_category: int
    ) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """The most frequent error messages per (model, error category)."""
        if span.empty or per_category == 0:
            return {}
        response = self._search(
            self.calls_index,
            size=0,
            query=self._calls_query(span, None, {"term": {"request_status": "error"}}),
            aggs={
                "models": {
                    "terms": {"field": "model", "size": 200},
                    "aggs": {
                        "categories": {
                            "terms": {"field": "error_category", "size": 50},
                            "aggs": {
                                "messages": {
                                    "terms": {"field": "error_message.keyword", "size": per_category}
                                }
                            },
                        }
                    },
                }
            },
        )
        out: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for m in response.get("aggregations", {}).get("models", {}).get("buckets", []):
            for c in m["categories"]["buckets"]:
                out[(m["key"], c["key"])] = [
                    (msg["key"], int(msg["doc_count"])) for msg in c["messages"]["buckets"]
                ]
        return out

    def waste_candidates(self, span: TimeRange, threshold: float) -> tuple[list[CallSample], int, bool]:
        """Calls that may have an input/output ratio above `threshold`, paged; the core keeps those
        that do. Stops after `waste_scan_max_calls` candidates and says so."""
        if span.empty:
            return [], 0, True
        # Output in [2^k, 2^(k+1)) and input above threshold * 2^k: a superset of the wasteful
        # calls (ratios above threshold / 2 at worst) that a plain range query can express.
        bands = [
            {
                "bool": {
                    "filter": [
                        {"range": {"output_tokens": {"gte": 2**k, "lt": 2 ** (k + 1)}}},
                        {"range": {"input_tokens": {"gt": threshold * 2**k}}},
                    ]
                }
            }
            for k in range(31)
            # input_tokens is an `integer` field: Elasticsearch refuses a bound beyond its range
            # (noida-db did not), and no call can exceed such a bound anyway.
            if threshold * 2**k < INT32_MAX
        ]
        query = self._calls_query(span, None, {"bool": {"should": bands, "minimum_should_match": 1}})
        limit = self.settings.waste_scan_max_calls
        samples: list[CallSample] = []
        for doc in self._pages(self.calls_index, query, ["event_time", "event_id"], SAMPLE_FIELDS):
            if len(samples) >= limit:
                return samples, len(samples), False
            samples.append(
                CallSample(
                    event_id=doc["event_id"],
                    event_time_ms=_epoch_ms(doc["event_time"]),
                    model=doc["model"],
                    input_tokens=doc["input_tokens"],
                    output_tokens=doc["output_tokens"],
                    cost_pico=doc.get("cost_pico") or 0,
                    session_id=doc.get("session_id"),
                    user_id=doc.get("user_id"),
                    service_name=doc.get("service_name"),
                )
            )
        return samples, len(samples), True

    def reconcile_cells(self, span: TimeRange, days: list[Bucket]) -> list[ReconcileCell]:
        """Per model and local day: calls, and sums of reported and computed cost over the calls
        that carry a reported cost, split by whether callstream priced them."""
        if span.empty or not days:
            return []
        response = self._search(
            self.calls_index,
            size=0,
            query=self._calls_query(span),
            aggs={
                "models": {
                    "terms": {"field": "model", "size": 500},
                    "aggs": {
                        "days": {
                            "date_range": {
                                "field": "event_time",
                                "ranges": [
                                    {"key": d.label, "from": iso_utc(d.start_ms), "to": iso_utc(d.end_ms)}
                                    for d in days
                                ],
                            },
                            "aggs": {
                                "reported": {
                                    "range": {
                                        "field": "reported_cost_usd",
                                        "ranges": [{"key": "yes", "from": 0}],
                                    },
                                    "aggs": {
                                        "priced": {
                                            "terms": {"field": "priced", "size": 2},
                                            "aggs": {
                                                "usd": {"sum": {"field": "reported_cost_usd"}},
                                                "cost": {"sum": {"field": "cost_pico"}},
                                            },
                                        }
                                    },
                                }
                            },
                        }
                    },
                }
            },
        )
        cells = []
        for m in response.get("aggregations", {}).get("models", {}).get("buckets", []):
            for d in m["days"]["buckets"]:
                priced = {"true": (0, 0.0, 0), "false": (0, 0.0, 0)}
                for r in d["reported"]["buckets"]:
                    for p in r["priced"]["buckets"]:
                        name = (
                            "false" if p["key"] in (False, 0) or p.get("key_as_string") == "false" else "true"
                        )
                        priced[name] = (int(p["doc_count"]), float(p["usd"]["value"] or 0.0), _int(p["cost"]))
                cells.append(
                    ReconcileCell(
                        model=m["key"],
                        day=d["key"],
                        calls=int(d["doc_count"]),
                        reported_priced_calls=priced["true"][0],
                        reported_priced_usd=priced["true"][1],
                        computed_priced_pico=priced["true"][2],
                        reported_unpriced_calls=priced["false"][0],
                        reported_unpriced_usd=priced["false"][1],
                    )
                )
        return cells

    def usage_slices(
        self, model: str, windows: list[Window], filters: Mapping[str, str], span: TimeRange
    ) -> list[UsageSlice]:
        """Token and cost sums of one model's calls matching `filters`, per planned window."""
        if span.empty or not windows:
            return []
        by_key = {f"{w.size}|{w.start_ms}": w for w in windows}
        response = self._search(
            self.calls_index,
            size=0,
            query=self._calls_query(span, filters, model_filter(model)),
            aggs={
                "models": {
                    "terms": {"field": "model", "size": 100},
                    "aggs": {
                        "windows": {
                            "date_range": {
                                "field": "event_time",
                                "ranges": [
                                    {"key": key, "from": iso_utc(w.start_ms), "to": iso_utc(w.end_ms)}
                                    for key, w in by_key.items()
                                ],
                            },
                            "aggs": _sums(),
                        }
                    },
                }
            },
        )
        slices = []
        for m in response.get("aggregations", {}).get("models", {}).get("buckets", []):
            for b in m["windows"]["buckets"]:
                if not b["doc_count"]:
                    continue
                slices.append(
                    UsageSlice(
                        model=m["key"],
                        window=by_key[b["key"]],
                        requests=int(b["doc_count"]),
                        **_usage(b),
                    )
                )
        return slices


def _usage(b: Mapping[str, Any]) -> dict[str, int]:
    """A bucket's cost, unpriced count and tokens, read from the sub-aggregations of `_sums`."""
    usage = {field: _int(b[name]) for name, field in TOKEN_FIELDS.items()}
    return usage | {"cost_pico": _int(b["cost"]), "unpriced": _false_count(b["priced"])}


def _call_group(b: Mapping[str, Any]) -> CallGroup:
    return CallGroup(
        key=str(b["key"]),
        requests=int(b["doc_count"]),
        errors=_key_count(b["status"], "error"),
        **_usage(b),
        latency_mean_ms=b["latency"].get("value"),
        models={m["key"]: ModelUse(int(m["doc_count"]), _int(m["cost"])) for m in b["models"]["buckets"]},
    )


def _epoch_ms(value: Any) -> int:
    from datetime import datetime

    if isinstance(value, int | float):
        return int(value)
    return round(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


def focus_cells_query(days: list[tuple[str, int, int]], field: str, max_keys: int) -> dict[str, Any]:
    """Calls per UTC day, `field` (service or user; calls without one under the key ''), model and
    provider, with their cost and tokens: what the FOCUS export allocates."""
    return {
        "days": {
            "date_range": {
                "field": "event_time",
                "ranges": [{"key": label, "from": iso_utc(a), "to": iso_utc(b)} for label, a, b in days],
            },
            "aggs": {
                "keys": {
                    "terms": {"field": field, "size": max_keys, "missing": ""},
                    "aggs": {
                        "models": {
                            "terms": {"field": "model", "size": 500},
                            "aggs": {
                                "providers": {
                                    "terms": {"field": "provider", "size": 10},
                                    "aggs": {
                                        "cost": {"sum": {"field": "cost_pico"}},
                                        "tokens": {"sum": {"field": "total_tokens"}},
                                    },
                                }
                            },
                        }
                    },
                }
            },
        }
    }


def focus_cells(reader: Reader, span: TimeRange, attribute: str) -> list[dict[str, Any]]:
    """`focus_cells_query`'s answer as records: day, key, model, provider, requests, tokens, cost_pico."""
    if span.empty:
        return []
    days = []
    start = span.start_ms
    while start < span.end_ms:
        end = min(start + 86_400_000, span.end_ms)
        days.append((iso_utc(start)[:10], start, end))
        start = end
    found = reader._search(
        reader.calls_index,
        size=0,
        query=reader._calls_query(span),
        aggs=focus_cells_query(days, CALL_FIELDS[attribute], reader.settings.exact_terms_max_keys),
    ).get("aggregations", {})
    out = []
    for d in found.get("days", {}).get("buckets", []):
        for k in d["keys"]["buckets"]:
            for m in k["models"]["buckets"]:
                for p in m["providers"]["buckets"]:
                    out.append(
                        {
                            "day": d["key"],
                            "key": str(k["key"]) or None,
                            "model": m["key"],
                            "provider": p["key"],
                            "requests": int(p["doc_count"]),
                            "tokens": _int(p["tokens"]),
                            "cost_pico": _int(p["cost"]),
                        }
                    )
    return out
