"""The Kibana alert rules (infra/alerts/*.json) and their provisioner (infra/kibana/provision.py).

The rule parameters are checked against the constraints of Kibana's `.es-query` rule type
(x-pack stack_alerts es_query rule_type_params), their fields against the document contracts
and, where the sink's templates are available, against the index mappings.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import httpx
import orjson
import pytest

from callstream.infra.kibana import provision
from callstream.infra.kibana.provision import AlertSettings, Connector
from callstream.streams.contract import Dimension, WindowSize
from tests.unit.test_infra_kibana import field_exists

RULES = provision.rule_files()
EXPECTED = {
    "callstream-error-rate",
    "callstream-slow-p95",
    "callstream-daily-cost",
    "callstream-unpriced-models",
    "callstream-stream-deadletters",
    "callstream-sink-deadletters",
}
INDEX_CONTRACT = {
    "callstream-aggregates-*": "aggregate",
    "callstream-deadletter-*": "deadletter",
    "callstream-sink-deadletter-*": "sink_deadletter",
}
COMPARATORS = {">", ">=", "<", "<=", "between", "notBetween"}
AGG_TYPES = {"count", "avg", "sum", "min", "max"}
MAX_GROUPS = 1000


def dsl(rule: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(rule["params"]["esQuery"])


def query_fields(node: Any) -> list[tuple[str, str, Any]]:
    """(clause, field, value) of every term / range clause in a query DSL tree."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("term", "range") and isinstance(value, dict):
                found += [(key, field, spec) for field, spec in value.items()]
            else:
                found += query_fields(value)
    elif isinstance(node, list):
        for item in node:
            found += query_fields(item)
    return found


def test_the_rule_set() -> None:
    assert set(RULES) == EXPECTED


@pytest.mark.parametrize("rule_id", sorted(EXPECTED))
def test_rule_is_a_valid_es_query_rule(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert rule["rule_type_id"] == ".es-query" and rule["consumer"] == "stackAlerts"
    assert re.fullmatch(r"\d+[smhd]", rule["schedule"]["interval"])
    params = rule["params"]
    assert params["timeWindowSize"] >= 1 and params["timeWindowUnit"] in {"s", "m", "h", "d"}
    assert params["thresholdComparator"] in COMPARATORS
    expected_thresholds = 2 if params["thresholdComparator"] in {"between", "notBetween"} else 1
    assert len(params["threshold"]) == expected_thresholds
    assert 0 <= params["size"] <= 10_000
    aggregation = params.get("aggType", "count")
    assert aggregation in AGG_TYPES
    if aggregation != "count":
        assert params["aggField"]
    if params.get("groupBy", "all") == "top":
        assert params["termField"] and 1 <= params["termSize"] <= MAX_GROUPS
    if params["searchType"] == "esQuery":
        assert params["index"] and params["timeField"]
        assert "query" in dsl(rule)
        assert "esqlQuery" not in params
    else:
        assert params["searchType"] == "esqlQuery"
        assert params["esqlQuery"]["esql"].startswith("FROM ")
        assert (params["threshold"], params["thresholdComparator"]) == ([0], ">"), (
            "ES|QL rules fire on any row"
        )
    for action in rule["actions"]:
        assert action["id"] == provision.SERVER_LOG_CONNECTOR and action["group"] == "query matched"
        assert action["params"]["message"]


@pytest.mark.parametrize(
    "rule_id", sorted(r for r in EXPECTED if RULES[r]["params"]["searchType"] == "esQuery")
)
def test_dsl_rule_fields_exist(rule_id: str) -> None:
    params = RULES[rule_id]["params"]
    (index,) = params["index"]
    contract = INDEX_CONTRACT[index]
    fields = [params["timeField"], params.get("aggField"), params.get("termField")]
    clauses = query_fields(dsl(RULES[rule_id]))
    fields += [field for _, field, _ in clauses]
    for field in filter(None, fields):
        assert field_exists(field, contract), f"{rule_id}: {field}"
    literals = {"dimension": typing.get_args(Dimension), "window_size": typing.get_args(WindowSize)}
    for clause, field, value in clauses:
        if clause == "term" and field in literals:
            assert value in literals[field]


def test_error_rate_rule_math() -> None:
    """sum(errors) / sum(requests) over the 1m per-model documents of the window, per model."""
    rule = RULES["callstream-error-rate"]
    esql = " ".join(rule["params"]["esqlQuery"]["esql"].split())
    assert esql.startswith("FROM callstream-aggregates-* | ")
    assert 'WHERE dimension == "model" AND window_size == "1m"' in esql
    assert "STATS errors_5m = SUM(errors), requests_5m = SUM(requests) BY key" in esql
    # Integer division would make every rate below 100% zero.
    assert "EVAL error_rate_5m = TO_DOUBLE(errors_5m) / requests_5m" in esql
    assert "WHERE requests_5m >= 50 AND error_rate_5m > 0.05" in esql
    assert (
        rule["params"]["timeField"],
        rule["params"]["timeWindowSize"],
        rule["params"]["timeWindowUnit"],
    ) == (
        "window_start",
        5,
        "m",
    )
    for field in ("dimension", "window_size", "errors", "requests", "key"):
        assert field_exists(field, "aggregate")


def test_slow_rule_math() -> None:
    """p95 above 5000 ms in each of the 3 complete minutes before the current one, per model."""
    params = RULES["callstream-slow-p95"]["params"]
    clauses = {(c, f): v for c, f, v in query_fields(dsl(RULES["callstream-slow-p95"]))}
    assert clauses[("range", "latency_ms.p95")] == {"gt": 5000}
    assert clauses[("range", "window_start")] == {"gte": "now-3m/m", "lt": "now/m"}
    assert (params["groupBy"], params["termField"], params["aggType"]) == ("top", "key", "count")
    assert (params["thresholdComparator"], params["threshold"]) == (">=", [3])
    # The rule's own time window must contain the three minutes: now-5m < floor(now) - 3m.
    assert (params["timeWindowSize"], params["timeWindowUnit"]) == (5, "m")


def test_daily_cost_rule_math() -> None:
    params = RULES["callstream-daily-cost"]["params"]
    clauses = {(c, f): v for c, f, v in query_fields(dsl(RULES["callstream-daily-cost"]))}
    assert clauses[("term", "dimension")] == "model", "one dimension only, or each call counts three times"
    assert clauses[("term", "window_size")] == "1m"
    assert clauses[("range", "window_start")] == {"gte": "now/d"}
    assert (params["aggType"], params["aggField"], params["groupBy"]) == ("sum", "cost_usd", "all")
    assert (params["thresholdComparator"], params["threshold"]) == (">", [100])
    assert (params["timeWindowSize"], params["timeWindowUnit"]) == (24, "h")


def test_unpriced_and_deadletter_rules() -> None:
    unpriced = RULES["callstream-unpriced-models"]["params"]
    assert (unpriced["aggType"], unpriced["aggField"], unpriced["termField"]) == (
        "sum",
        "unpriced_requests",
        "key",
    )
    assert (unpriced["thresholdComparator"], unpriced["threshold"]) == (">", [0])
    for rule_id, time_field in (
        ("callstream-stream-deadletters", "detected_at"),
        ("callstream-sink-deadletters", "detected_at"),
    ):
        params = RULES[rule_id]["params"]
        assert params["timeField"] == time_field
        assert (params["aggType"], params["thresholdComparator"], params["threshold"]) == ("count", ">", [0])
        assert params["excludeHitsFromPreviousRun"] is True, "only new dead letters count"


def test_fields_are_mapped_as_the_rules_and_panels_use_them() -> None:
    """Terms need keyword, time windows need date, sums and ranges need numbers: in the sink's mappings."""
    index_templates = pytest.importorskip("callstream.sinks.index_templates")
    if not hasattr(index_templates, "templates"):
        pytest.skip("callstream.sinks.index_templates defines no templates() yet")
    from callstream.settings import ElasticsearchSettings
    from callstream.sinks.settings import SinkSettings

    templates = index_templates.templates(ElasticsearchSettings(), SinkSettings())
    by_pattern = {
        p: body["template"]["mappings"] for body in templates.values() for p in body["index_patterns"]
    }

    def mapped_type(pattern: str, field: str) -> str:
        properties = by_pattern[pattern]["properties"]
        *parents, leaf = field.split(".")
        for parent in parents:
            properties = properties[parent]["properties"]
        return str(properties[leaf]["type"])

    numeric = {"long", "integer", "short", "double", "float", "scaled_float"}
    for rule_id, rule in RULES.items():
        params = rule["params"]
        patterns = params.get("index") or ["callstream-aggregates-*"]
        for pattern in patterns:
            assert mapped_type(pattern, params["timeField"]) == "date", rule_id
            if params.get("termField"):
                assert mapped_type(pattern, params["termField"]) == "keyword", rule_id
            if params.get("aggField"):
                assert mapped_type(pattern, params["aggField"]) in numeric, rule_id
            if params["searchType"] == "esQuery":
                for clause, field, _ in query_fields(dsl(rule)):
                    expected = {"keyword"} if clause == "term" else numeric | {"date"}
                    assert mapped_type(pattern, field) in expected, f"{rule_id}: {field}"
    for field in ("dimension", "window_size", "key"):
        assert mapped_type("callstream-aggregates-*", field) == "keyword"
    for field in ("errors", "requests", "cost_usd", "unpriced_requests", "latency_ms.p95", "tokens.input"):
        assert mapped_type("callstream-aggregates-*", field) in numeric
    assert mapped_type("callstream-calls-*", "error_category") == "keyword"

    from callstream.infra.kibana import saved_objects

    operation_types = {"terms": {"keyword"}, "date_histogram": {"date"}, "sum": numeric, "max": numeric}
    operation_types["average"] = numeric
    for lens in saved_objects.lenses():
        for column_id, column in lens.columns.items():
            field = column.get("sourceField")
            if field and field != "___records___":
                assert mapped_type(lens.data_view.title, field) in operation_types[column["operationType"]], (
                    f"{lens.id}.{column_id}: {field}"
                )


# -- provisioner: pure parts ---------------------------------------------------------------------


def test_only_the_server_log_without_configuration() -> None:
    assert [c.id for c in provision.connectors(AlertSettings())] == [provision.SERVER_LOG_CONNECTOR]


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_WEBHOOK_URL", "EMAIL_TO", "EMAIL_FROM", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURE"):
        monkeypatch.setenv(f"CALLSTREAM_ALERT_{name}", "")
    settings = AlertSettings()
    assert settings.smtp_port == 587
    assert [c.id for c in provision.connectors(settings)] == [provision.SERVER_LOG_CONNECTOR]


def test_slack_and_email_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_ALERT_SLACK_WEBHOOK_URL", "https://hooks.example/T/B/x")
    monkeypatch.setenv("CALLSTREAM_ALERT_EMAIL_TO", "ops@example.com, oncall@example.com")
    monkeypatch.setenv("CALLSTREAM_ALERT_EMAIL_FROM", "callstream@example.com")
    monkeypatch.setenv("CALLSTREAM_ALERT_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("CALLSTREAM_ALERT_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("CALLSTREAM_ALERT_SMTP_PASSWORD", "secret")
    settings = AlertSettings()
    found = {c.type_id: c for c in provision.connectors(settings)}
    assert set(found) == {".server-log", ".slack", ".email"}
    assert found[".slack"].secrets == {"webhookUrl": "https://hooks.example/T/B/x"}
    email = found[".email"]
    assert email.config == {
        "service": "other",
        "from": "callstream@example.com",
        "host": "smtp.example.com",
        "port": 587,
        "secure": False,
        "hasAuth": True,
    }
    assert email.secrets == {"user": "mailer", "password": "secret"}

    rule = provision.with_actions(RULES["callstream-daily-cost"], list(found.values()), settings)
    by_connector = {a["id"]: a for a in rule["actions"]}
    assert set(by_connector) == {
        provision.SERVER_LOG_CONNECTOR,
        provision.SLACK_CONNECTOR,
        provision.EMAIL_CONNECTOR,
    }
    message = by_connector[provision.SERVER_LOG_CONNECTOR]["params"]["message"]
    assert by_connector[provision.SLACK_CONNECTOR]["params"] == {"message": message}
    assert by_connector[provision.EMAIL_CONNECTOR]["params"]["to"] == [
        "ops@example.com",
        "oncall@example.com",
    ]
    assert all(a["group"] == "query matched" for a in rule["actions"])
    assert len(RULES["callstream-daily-cost"]["actions"]) == 1, "the packaged rule is not modified"


def test_half_configured_email_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_ALERT_EMAIL_TO", "ops@example.com")
    with pytest.raises(ValueError, match="CALLSTREAM_ALERT_EMAIL_FROM, CALLSTREAM_ALERT_SMTP_HOST"):
        AlertSettings()


def test_index_prefix_is_rewritten() -> None:
    cost = provision.with_index_prefix(RULES["callstream-daily-cost"], "llm")
    assert cost["params"]["index"] == ["llm-aggregates-*"]
    rate = provision.with_index_prefix(RULES["callstream-error-rate"], "llm")
    assert rate["params"]["esqlQuery"]["esql"].startswith("FROM llm-aggregates-*")
    assert (
        provision.with_index_prefix(RULES["callstream-daily-cost"], "callstream")
        == RULES["callstream-daily-cost"]
    )


def test_update_body_leaves_out_what_cannot_change() -> None:
    body = provision.rule_update_body(RULES["callstream-slow-p95"])
    assert set(body) == {"name", "tags", "schedule", "params", "actions"}


# -- provisioner: the HTTP conversation, against an in-memory Kibana --------------------------------


class FakeKibana:
    """Just enough of Kibana's HTTP API: status, saved objects import, connectors, rules."""

    def __init__(self, license_allows: set[str]) -> None:
        self.license_allows = license_allows
        self.connectors: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.imports: list[bytes] = []
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.calls.append(f"{method} {path}")
        assert request.headers["kbn-xsrf"]
        if path == "/api/status":
            return httpx.Response(200, json={"status": {"overall": {"level": "available"}}})
        if path == "/api/saved_objects/_import" and method == "POST":
            assert request.url.params["overwrite"] == "true"
            self.imports.append(request.read())
            return httpx.Response(200, json={"success": True, "successCount": 21})
        for prefix, store in (
            ("/api/actions/connector/", self.connectors),
            ("/api/alerting/rule/", self.rules),
        ):
            if path.startswith(prefix):
                key = path.removeprefix(prefix)
                body = orjson.loads(request.read()) if request.content else None
                if method == "GET":
                    return httpx.Response(200, json=store[key]) if key in store else httpx.Response(404)
                if method == "POST" and key in store:
                    return httpx.Response(409)
                if method == "PUT" and key not in store:
                    return httpx.Response(404)
                refused = store is self.connectors and method == "POST"
                if refused and body["connector_type_id"] not in self.license_allows:
                    return httpx.Response(
                        403, text="Action type is disabled: your basic license does not support it"
                    )
                if store is self.rules and method == "PUT":
                    assert "rule_type_id" not in body and "consumer" not in body
                store[key] = (store.get(key) or {}) | body
                return httpx.Response(200, json=store[key])
        return httpx.Response(404)


def run(fake: FakeKibana, alerts: AlertSettings, prefix: str = "callstream") -> dict[str, Any]:
    with httpx.Client(
        base_url="http://kibana.test", transport=httpx.MockTransport(fake), headers={"kbn-xsrf": "t"}
    ) as c:
        return provision.provision(c, alerts, prefix, ready_timeout_s=1)


def test_provision_creates_then_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_ALERT_SLACK_WEBHOOK_URL", "https://hooks.example/x")
    fake = FakeKibana(license_allows={".server-log", ".slack", ".email"})
    first = run(fake, AlertSettings())
    assert first["rules"] == dict.fromkeys(sorted(EXPECTED), "created")
    assert first["connectors"] == [provision.SERVER_LOG_CONNECTOR, provision.SLACK_CONNECTOR]
    assert fake.imports and b"callstream-overview" in fake.imports[0]
    assert all(len(rule["actions"]) == 2 for rule in fake.rules.values())
    second = run(fake, AlertSettings())
    assert second["rules"] == dict.fromkeys(sorted(EXPECTED), "updated")
    assert len(fake.rules) == len(EXPECTED) and len(fake.connectors) == 2


def test_provision_on_a_basic_license_keeps_the_server_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSTREAM_ALERT_SLACK_WEBHOOK_URL", "https://hooks.example/x")
    fake = FakeKibana(license_allows={".server-log"})
    summary = run(fake, AlertSettings())
    assert summary["connectors"] == [provision.SERVER_LOG_CONNECTOR]
    for rule in fake.rules.values():
        assert [a["id"] for a in rule["actions"]] == [provision.SERVER_LOG_CONNECTOR]


def test_provision_reports_a_failed_import() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/status":
            return httpx.Response(200, json={"status": {"overall": {"level": "available"}}})
        return httpx.Response(
            200, json={"success": False, "errors": [{"id": "x", "error": {"type": "conflict"}}]}
        )

    with (
        httpx.Client(base_url="http://kibana.test", transport=httpx.MockTransport(broken)) as client,
        pytest.raises(provision.ProvisionError, match="conflict"),
    ):
        provision.provision(client, AlertSettings(), "callstream", ready_timeout_s=1)


def test_connector_bodies() -> None:
    connector = Connector("c", ".slack", "n", secrets={"webhookUrl": "u"})
    assert connector.create_body() == {
        "name": "n",
        "connector_type_id": ".slack",
        "config": {},
        "secrets": {"webhookUrl": "u"},
    }
    assert "connector_type_id" not in connector.update_body()


def test_what_kibana_says_back_is_scrubbed_before_it_is_logged_or_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/tokenpart0123456789"
    monkeypatch.setenv("CALLSTREAM_ALERT_SLACK_WEBHOOK_URL", url)
    monkeypatch.setenv("CALLSTREAM_ALERT_EMAIL_TO", "ops@example.com")
    monkeypatch.setenv("CALLSTREAM_ALERT_EMAIL_FROM", "alerts@example.com")
    monkeypatch.setenv("CALLSTREAM_ALERT_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("CALLSTREAM_ALERT_SMTP_USERNAME", "alerts")
    monkeypatch.setenv("CALLSTREAM_ALERT_SMTP_PASSWORD", "smtp-pa55word-1")

    def echoing(request: httpx.Request) -> httpx.Response:  # an error that repeats the connector
        if request.url.path == "/api/status":
            return httpx.Response(200, json={"status": {"overall": {"level": "available"}}})
        if request.url.path.startswith("/api/saved_objects"):
            return httpx.Response(200, json={"success": True, "successCount": 1})
        if request.method == "GET":
            return httpx.Response(404)
        return httpx.Response(400, text=f"bad request: {request.content.decode()}")

    with (
        httpx.Client(base_url="http://kibana.test", transport=httpx.MockTransport(echoing)) as client,
        pytest.raises(provision.ProvisionError) as caught,
    ):
        provision.provision(client, AlertSettings(), "callstream", ready_timeout_s=1)
    message = str(caught.value)
    assert "HTTP 400" in message and "tokenpart0123456789" not in message and "T0123ABCD/B0" not in message
    emailed = provision.connectors(AlertSettings())[-1]
    response = httpx.Response(403, text=f"license: {orjson.dumps(emailed.create_body()).decode()}")
    assert "smtp-pa55word-1" not in provision.said(response, 300, emailed.secret_values())
