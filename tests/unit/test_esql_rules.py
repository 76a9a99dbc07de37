"""The Kibana rules written in ES|QL, checked without a server (neither local engine runs ES|QL,
docs/engines.md): each query is parsed command by command, every column it reads exists at that
point (from the index template's mapping, then as the commands before it made them), with a
type that fits its use, and what it keeps is what the rule's message reads."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest

from callstream.infra.kibana.provision import rule_files
from callstream.settings import ElasticsearchSettings
from callstream.sinks import index_templates
from callstream.sinks.settings import SinkSettings

RULES = {rid: rule for rid, rule in rule_files().items() if rule["params"].get("searchType") == "esqlQuery"}
NUMERIC = {"long", "integer", "short", "double", "float", "scaled_float"}
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
FUNCTIONS = {"SUM", "COUNT", "AVG", "MAX", "MIN", "TO_DOUBLE", "ROUND"}
KEYWORDS = {"AND", "OR", "NOT", "BY", "AS", "DESC", "ASC", "NULLS", "FIRST", "LAST", "true", "false"}


def mapped_columns(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Column name -> mapping type, objects flattened to dotted names as ES|QL sees them."""
    columns = {}
    for name, mapping in properties.items():
        if "properties" in mapping:
            columns |= mapped_columns(mapping["properties"], f"{prefix}{name}.")
        elif mapping.get("enabled", True):
            columns[f"{prefix}{name}"] = mapping["type"]
    return columns


def identifiers(expression: str) -> list[str]:
    without_strings = re.sub(r'"[^"]*"', "", expression)
    return [w for w in IDENT.findall(without_strings) if w not in FUNCTIONS | KEYWORDS]


def check(esql: str, templates: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The columns the query ends with (name -> type); AssertionError naming the first problem."""
    commands = [c.strip() for c in esql.split("\n|")]
    source, _, pattern = commands[0].partition(" ")
    assert source == "FROM", commands[0]
    covering = [
        body
        for body in templates.values()
        if any(fnmatch.fnmatch(pattern.replace("*", "x"), p) for p in body["index_patterns"])
    ]
    assert len(covering) == 1, f"FROM {pattern}: no single index template covers it"
    columns = mapped_columns(covering[0]["template"]["mappings"]["properties"])

    def known(expression: str) -> None:
        for name in identifiers(expression):
            assert name in columns, f"`{name}` is not a column here (have {sorted(columns)})"

    for command in commands[1:]:
        word, _, rest = command.partition(" ")
        if word == "WHERE":
            known(rest)
            for field, _ in re.findall(r'(\w+) == "([^"]*)"', rest):
                assert columns[field] == "keyword", f"{field} compared to a string but is {columns[field]}"
        elif word == "STATS":
            aggregations, _, by = rest.partition(" BY ")
            made = {}
            for part in aggregations.split(","):
                name, _, expression = part.partition("=")
                function, argument = re.fullmatch(r"\s*(\w+)\((\w+)\)\s*", expression).groups()  # type: ignore[union-attr]
                known(argument)
                if function in {"SUM", "AVG"}:
                    assert columns[argument] in NUMERIC, f"{function}({argument}) of a {columns[argument]}"
                made[name.strip()] = "double" if function == "AVG" else columns[argument]
            known(by)
            columns = made | {
                field.strip(): columns[field.strip()] for field in by.split(",") if field.strip()
            }
        elif word == "EVAL":
            name, _, expression = rest.partition("=")
            known(expression)
            columns[name.strip()] = "double"
        elif word == "RENAME":
            old, _, new = rest.partition(" AS ")
            known(old)
            columns[new.strip()] = columns.pop(old.strip())
        elif word == "KEEP":
            kept = [c.strip() for c in rest.split(",")]
            known(" ".join(kept))
            columns = {c: columns[c] for c in kept}
        elif word == "SORT":
            known(rest)
        else:
            raise AssertionError(f"command {word} is not checked here: extend check()")
    return columns


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    return index_templates.templates(ElasticsearchSettings(), SinkSettings())


def test_there_is_an_esql_rule() -> None:
    assert set(RULES) == {"callstream-error-rate"}


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_the_query_reads_only_mapped_columns(rule_id: str, templates: dict[str, dict[str, Any]]) -> None:
    rule = RULES[rule_id]
    columns = check(rule["params"]["esqlQuery"]["esql"], templates)
    # The message reads the kept columns by name.
    message = rule["actions"][0]["params"]["message"]
    for name in re.findall(r"_source\.(\w+)", message):
        assert name in columns, f"the message reads {name}, which the query does not keep"
    # Kibana filters on the rule's time field before the query runs: a date of the same index.
    time_field = rule["params"]["timeField"]
    aggregates = mapped_columns(templates["callstream-aggregates"]["template"]["mappings"]["properties"])
    assert aggregates[time_field] == "date"


def test_the_checker_catches_a_wrong_column(templates: dict[str, dict[str, Any]]) -> None:
    good = RULES["callstream-error-rate"]["params"]["esqlQuery"]["esql"]
    for broken in (
        good.replace("SUM(errors)", "SUM(error_count)"),  # no such field
        good.replace("SUM(errors)", "SUM(key)"),  # a keyword summed
        good.replace('window_size == "1m"', 'requests == "1m"'),  # a number compared to a string
        good.replace("KEEP model,", "KEEP key,"),  # renamed away
        good.replace("FROM callstream-aggregates-*", "FROM callstream-aggregate-*"),  # no template
    ):
        with pytest.raises(AssertionError):
            check(broken, templates)
