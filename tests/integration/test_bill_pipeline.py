"""`callstream bill import` and `callstream report bill` against what the pipeline wrote.

Generated calls go through Kafka, the stream and sink workers into Elasticsearch; provider exports
are then generated from the same calls' ground truth (computed here), in four providers' formats,
with planted differences: OpenAI charged gpt-4.1 input at $2/Mtok (the gateway sheet in force says
$8) and billed a day callstream never saw; Anthropic names the model `claude-4.5-sonnet` and counts
cached tokens as input; Google and the generic CSV agree. Each difference must be explained exactly,
re-importing must change nothing, and a malformed file must give a readable error.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from callstream import topics
from callstream.producers import synthetic
from callstream.producers.contract import RawCallEvent
from callstream.producers.loadgen import publish
from callstream.settings import ElasticsearchSettings
from tests.backend import Servers
from tests.ground_truth import SEED_PRICES, compare, expected_windows
from tests.pipeline import Pipeline, new_pipeline, wait_for

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)
DAY, UNSEEN_DAY = "2026-11-17", "2026-11-16"
DAY_S = 1794873600  # 2026-11-17T00:00:00Z
COUNT = 1500
REPO = Path(__file__).resolve().parents[2]


def truth(events: list[RawCallEvent]) -> dict[str, dict[str, int]]:
    """Tokens per model and exclusive kind, straight from the generated calls."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in events:
        t = out[e.request_model.lower()]
        t["input"] += e.input_tokens - e.cache_read_input_tokens - e.cache_creation_input_tokens
        t["cache_read"] += e.cache_read_input_tokens
        t["cache_write"] += e.cache_creation_input_tokens
        t["output"] += e.output_tokens  # reasoning included: providers bill it as output
    return out


def usd(tokens: int, per_mtok: Decimal) -> Decimal:
    return Decimal(tokens) * per_mtok / Decimal(1_000_000)


def exports(t: dict[str, dict[str, int]], tmp: Path) -> dict[str, Path]:
    gw = {m: Decimal(p.numerator) / Decimal(p.denominator) for m, p in SEED_PRICES.items()}
    g = t["gpt-4.1"]
    usage = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": DAY_S,
                "end_time": DAY_S + 86400,
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "model": "gpt-4.1-2025-04-14",
                        "input_tokens": g["input"] + g["cache_read"],
                        "input_cached_tokens": g["cache_read"],
                        "output_tokens": g["output"],
                        "num_model_requests": 1,
                    }
                ],
            },
            {
                "object": "bucket",
                "start_time": DAY_S - 86400,
                "end_time": DAY_S,
                "results": [
                    {
                        "object": "organization.usage.completions.result",
                        "model": "gpt-4.1-2025-04-14",
                        "input_tokens": 50_000,
                        "input_cached_tokens": 0,
                        "output_tokens": 0,
                    }
                ],
            },
        ],
    }
    line = "gpt-4.1-2025-04-14"
    costs = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": DAY_S,
                "end_time": DAY_S + 86400,
                "results": [
                    {
                        "object": "organization.costs.result",
                        "line_item": f"{line}, input",
                        "amount": {"value": float(usd(g["input"], Decimal(2))), "currency": "usd"},
                    },
                    {
                        "object": "organization.costs.result",
                        "line_item": f"{line}, cached input",
                        "amount": {"value": float(usd(g["cache_read"], gw["gpt-4.1"])), "currency": "usd"},
                    },
                    {
                        "object": "organization.costs.result",
                        "line_item": f"{line}, output",
                        "amount": {"value": float(usd(g["output"], gw["gpt-4.1"])), "currency": "usd"},
                    },
                ],
            },
            {
                "object": "bucket",
                "start_time": DAY_S - 86400,
                "end_time": DAY_S,
                "results": [
                    {
                        "object": "organization.costs.result",
                        "line_item": f"{line}, input",
                        "amount": {"value": 0.4, "currency": "usd"},
                    }
                ],
            },
        ],
    }
    c = t["claude-sonnet-4-5"]
    starting = {"starting_at": f"{DAY}T00:00:00Z", "ending_at": "2026-11-18T00:00:00Z"}
    a_usage = {
        "data": [
            starting
            | {
                "results": [
                    {
                        "model": "claude-4.5-sonnet",
                        "uncached_input_tokens": c["input"] + c["cache_read"],
                        "cache_read_input_tokens": 0,
                        "cache_creation": {"ephemeral_5m_input_tokens": c["cache_write"]},
                        "output_tokens": c["output"],
                    }
                ]
            }
        ]
    }
    cents = Decimal(100)
    a_cost = {
        "data": [
            starting
            | {
                "results": [
                    {
                        "model": "claude-4.5-sonnet",
                        "cost_type": "tokens",
                        "token_type": "uncached_input_tokens",
                        "currency": "USD",
                        "amount": str(usd(c["input"] + c["cache_read"], gw["claude-sonnet-4-5"]) * cents),
                    },
                    {
                        "model": "claude-4.5-sonnet",
                        "cost_type": "tokens",
                        "token_type": "output_tokens",
                        "currency": "USD",
                        "amount": str(usd(c["output"], gw["claude-sonnet-4-5"]) * cents),
                    },
                ]
            }
        ]
    }
    m = t["gemini-2.5-flash"]
    google = io.StringIO()
    w = csv.writer(google)
    w.writerow(
        [
            "service.description",
            "sku.description",
            "usage_start_time",
            "usage.amount",
            "usage.unit",
            "cost",
            "currency",
            "credits",
        ]
    )
    for sku, tokens in (("Input", m["input"]), ("Output", m["output"])):
        w.writerow(
            [
                "Vertex AI",
                f"Gemini 2.5 Flash {sku} Text Tokens",
                f"{DAY} 09:00:00 UTC",
                tokens,
                "count",
                usd(tokens, gw["gemini-2.5-flash"]),
                "USD",
                "[]",
            ]
        )
    w.writerow(["Compute Engine", "N2 core", f"{DAY} 09:00:00 UTC", 1, "hour", "0.5", "USD", ""])
    d = t["deepseek-v3.2"]
    generic = io.StringIO()
    w = csv.writer(generic)
    w.writerow(["day", "provider", "model", "token_kind", "quantity", "cost", "currency"])
    for kind in ("input", "output"):
        w.writerow(
            [DAY, "deepseek", "deepseek-v3.2", kind, d[kind], usd(d[kind], gw["deepseek-v3.2"]), "USD"]
        )
    files = {
        "openai-usage.json": orjson.dumps(usage),
        "openai-costs.json": orjson.dumps(costs),
        "anthropic-usage.json": orjson.dumps(a_usage),
        "anthropic-cost.json": orjson.dumps(a_cost),
        "google.csv": google.getvalue().encode(),
        "generic.csv": generic.getvalue().encode(),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp / name
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def data(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, list[RawCallEvent]]]:
    tmp = tmp_path_factory.mktemp("bill")
    pipeline = new_pipeline(servers, tmp)  # type: ignore[arg-type]
    events = synthetic.generate(COUNT, seed=20, start=START, rate_per_s=2.0)
    es = ElasticsearchSettings(url=servers.es_url, index_prefix=pipeline.prefix).client()
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


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ) | {
        "CALLSTREAM_ES_URL": pipeline.servers.es_url,
        "CALLSTREAM_ES_INDEX_PREFIX": pipeline.prefix,
        "CALLSTREAM_STREAM_PRICE_PROFILE": "gateway",
    }
    return subprocess.run(
        [sys.executable, "-m", "callstream.cli", *args], env=env, capture_output=True, cwd=REPO, timeout=300
    )


def test_bill_import_reconcile_and_focus(data: tuple[Pipeline, list[RawCallEvent]], tmp_path: Path) -> None:
    pipeline, events = data
    t = truth(events)
    paths = exports(t, tmp_path)
    providers = {
        "openai": ["openai-usage.json", "openai-costs.json"],
        "anthropic": ["anthropic-usage.json", "anthropic-cost.json"],
        "google": ["google.csv"],
        "generic": ["generic.csv"],
    }
    for provider, names in providers.items():
        first = cli(pipeline, "bill", "import", *[str(paths[n]) for n in names], "--provider", provider)
        assert first.returncode == 0, first.stderr.decode()
        again = cli(pipeline, "bill", "import", *[str(paths[n]) for n in names], "--provider", provider)
        assert again.returncode == 0, again.stderr.decode()
        assert b" 0 written" in again.stderr and b" 0 deleted" in again.stderr, again.stderr.decode()
        assert b"0 written" not in first.stderr, first.stderr.decode()

    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"data": [{"starting_at": "x", "results": [{"model": 1}]}]')
    broken = cli(pipeline, "bill", "import", str(bad), "--provider", "anthropic")
    assert broken.returncode == 2 and b"bad.json: not JSON" in broken.stderr, broken.stderr.decode()

    report = cli(
        pipeline, "report", "bill", "--since", UNSEEN_DAY, "--until", "2026-11-18", "--format", "json"
    )
    assert report.returncode == 0, report.stderr.decode()
    result = orjson.loads(report.stdout)
    lines = {(ln["day"], ln["provider"], ln["model"]): ln for ln in result["lines"]}
    kinds = {k: [e["kind"] for e in ln["explanations"]] for k, ln in lines.items()}
    assert kinds == {
        (UNSEEN_DAY, "openai", "gpt-4.1"): ["coverage"],
        (DAY, "openai", "gpt-4.1"): ["price"],
        (DAY, "anthropic", "claude-sonnet-4-5"): ["alias", "token_kind"],
        (DAY, "google", "gemini-2.5-flash"): [],
        (DAY, "deepseek", "deepseek-v3.2"): [],
    }, kinds
    gpt = lines[(DAY, "openai", "gpt-4.1")]
    g = t["gpt-4.1"]
    assert gpt["token_diff"] == {"input": 0, "cache_read": 0, "cache_write": 0, "output": 0}
    price = gpt["explanations"][0]["detail"]
    assert price == {
        "token_kind": "input",
        "implied_usd_per_mtok": "2.000000",
        "in_force_usd_per_mtok": "8.000000",
        "price_id": "gateway:gpt-4.1@2025-01-01",
        "effect_usd": str((usd(g["input"], Decimal(6))).quantize(Decimal("0.000001"))),
    }
    assert not gpt["agrees"] and gpt["verdict"] == "explained"
    claude = lines[(DAY, "anthropic", "claude-sonnet-4-5")]
    c = t["claude-sonnet-4-5"]
    assert claude["explanations"][0]["detail"]["billed_as"] == ["claude-4.5-sonnet"]
    assert claude["explanations"][1]["detail"] == {"side": "input", "moved": {"cache_read": c["cache_read"]}}
    unseen = lines[(UNSEEN_DAY, "openai", "gpt-4.1")]
    assert unseen["explanations"][0]["detail"]["unseen_tokens"] == 50_000
    for key in ((DAY, "google", "gemini-2.5-flash"), (DAY, "deepseek", "deepseek-v3.2")):
        assert lines[key]["agrees"] and Decimal(lines[key]["cost_diff"]) == 0, lines[key]
    assert result["disagreeing_days"] == [UNSEEN_DAY, DAY]
    table = cli(pipeline, "report", "bill", "--since", UNSEEN_DAY, "--until", "2026-11-18")
    assert table.returncode == 0 and b"[price] the provider charged $2.000000/Mtok for input" in table.stdout
    (tmp_path / "report-bill.txt").write_bytes(table.stdout)
    print(table.stdout.decode())

    page = tmp_path / "report.html"
    html = cli(
        pipeline,
        "report",
        "--since",
        UNSEEN_DAY,
        "--until",
        "2026-11-18",
        "--no-budgets",
        "--html",
        str(page),
    )
    assert html.returncode == 0, html.stderr.decode()
    text = page.read_text()
    assert 'id="table-bill"' in text and "cache read tokens as input" in text

    # The wrong price flows back: the bill's implied price as an override, history replayed, and
    # the day agrees.
    overrides = tmp_path / "bill-prices.json"
    suggested = cli(
        pipeline,
        "report",
        "bill",
        "--since",
        DAY,
        "--until",
        "2026-11-18",
        "--suggest-overrides",
        str(overrides),
    )
    assert suggested.returncode == 0, suggested.stderr.decode()
    entries = orjson.loads(overrides.read_bytes())["prices"]
    assert [(e["id"], e["effective_from"], e["input"]) for e in entries] == [
        ("bill:gateway:gpt-4.1@2025-01-01", "2025-01-01T00:00:00Z", 8.0),
        ("bill:gpt-4.1@2026-11-17", "2026-11-17T00:00:00Z", 2.0),
    ]
    pipeline.start("sink", name="sink-replay")
    replay = pipeline.start(
        "replay",
        "--from",
        DAY,
        "--to",
        "2026-11-18",
        "--idle-s",
        "8",
        name="replay",
        CALLSTREAM_STREAM_PRICE_FILES=orjson.dumps([str(overrides)]).decode(),
    )
    assert replay.wait(300) == 0, pipeline.logs()
    want = (g["input"] * 2 + (g["cache_read"] + g["output"]) * 8) * 1_000_000  # pico-$
    es = ElasticsearchSettings(url=pipeline.servers.es_url, index_prefix=pipeline.prefix).client()
    try:

        def replayed() -> bool:
            es.indices.refresh(index=f"{pipeline.prefix}-aggregates-*")
            query = {
                "bool": {
                    "filter": [
                        {"term": {"dimension": "model"}},
                        {"term": {"window_size": "1d"}},
                        {"term": {"key": "gpt-4.1"}},
                    ]
                }
            }
            hits = es.search(index=f"{pipeline.prefix}-aggregates-*", query=query)["hits"]["hits"]
            return [h["_source"]["cost_pico"] for h in hits] == [want]

        wait_for(replayed, 120, interval_s=2, describe=pipeline.logs)
    finally:
        es.close()
    pipeline.stop_all()
    after = cli(pipeline, "report", "bill", "--since", DAY, "--until", "2026-11-18", "--format", "json")
    assert after.returncode == 0, after.stderr.decode()
    [gpt_after] = [ln for ln in orjson.loads(after.stdout)["lines"] if ln["model"] == "gpt-4.1"]
    assert gpt_after["agrees"] and Decimal(gpt_after["cost_diff"]) == 0, gpt_after

    focus = cli(pipeline, "export", "focus", "--month", "2026-11", "--by", "service")
    assert focus.returncode == 0, focus.stderr.decode()
    from callstream.reports.bill.focus import validate

    rows = list(csv.DictReader(io.StringIO(focus.stdout.decode())))
    assert rows and all(validate({k: v or None for k, v in r.items()}) == [] for r in rows)
    billed = sum(Decimal(r["BilledCost"]) for r in rows)
    # the calls as replayed: gpt-4.1's uncached input at the corrected $2, the rest at the gateway sheet
    exact = Decimal(want) / Decimal(10**12) + sum(
        (
            usd(e.input_tokens + e.output_tokens, Decimal(p.numerator) / Decimal(p.denominator))
            for e in events
            if (p := SEED_PRICES.get(e.request_model.lower())) is not None
            and e.request_model.lower() != "gpt-4.1"
        ),
        Decimal(0),
    )
    assert billed == exact
