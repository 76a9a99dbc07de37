"""Alert rules: the YAML file, its models, and its validation. Pure.

A rules file names routes (where notifications go) and rules (what to watch):

    version: 1
    routes:
      oncall:
        webhook: true                       # CALLSTREAM_ALERT_WEBHOOK_URL
        slack: {channel: "#llm-oncall"}     # CALLSTREAM_ALERT_SLACK_WEBHOOK_URL(S)
        email: {to: [oncall@example.com]}   # CALLSTREAM_ALERT_SMTP_* / EMAIL_*
    rules:
      - name: error-rate
        type: threshold
        metric: error_rate
        op: ">"
        threshold: 0.05
        window_minutes: 5
        min_requests: 50
        group_by: model
        route: oncall

The route `default` needs no definition: it is the generic webhook when
CALLSTREAM_ALERT_WEBHOOK_URL is set, else the worker's log (every event is also recorded in
Elasticsearch). Receiver addresses and credentials are settings, never part of this file.

Errors name the rule (by name, else position) and the field: `rule 'error-rate' field
window_minutes: Input should be greater than 0`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from callstream.errors import ConfigurationError, require

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "defaults" / "rules.yaml"
DEFAULT_ROUTE = "default"

Dimension = Literal["model", "provider", "model_family", "service", "user"]
DIMENSIONS: tuple[str, ...] = ("model", "provider", "model_family", "service", "user")
Metric = Literal[
    "error_rate",
    "errors",
    "requests",
    "cost_usd",
    "unpriced_requests",
    "latency_mean_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
]
Comparator = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
WatchedGroup = Literal["stream", "sink"]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]


class RulesFileError(ConfigurationError):
    """A rules file that cannot be used; the message names the rule and the field."""


def compare(value: float, op: Comparator, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


# -- routes --------------------------------------------------------------------------------------


class SlackTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str | None = Field(
        default=None, description="e.g. #llm-alerts; a rule's slack_channel overrides it"
    )


class EmailTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    to: tuple[str, ...] | None = Field(default=None, description="None: CALLSTREAM_ALERT_EMAIL_TO")

    @field_validator("to")
    @classmethod
    def _addresses(cls, to: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if to is not None:
            for address in to:
                if "@" not in address or any(c in address for c in " ,;<>"):
                    raise ValueError(f"{address!r} is not an e-mail address")
        return to


class Route(BaseModel):
    """Receivers of one route; a notification goes to each of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: bool = False
    slack: SlackTarget | None = None
    email: EmailTarget | None = None


# -- rules ---------------------------------------------------------------------------------------


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    description: str = ""
    severity: Severity = "warning"
    route: tuple[str, ...] = Field(default=(DEFAULT_ROUTE,), min_length=1)
    slack_channel: str | None = Field(default=None, description="Overrides the route's Slack channel")
    realert_minutes: float = Field(default=60, ge=0, description="Repeat while firing; 0: never")
    resolve_after_minutes: float = Field(
        default=0, ge=0, description="The condition must stay clear this long before a resolution"
    )

    @field_validator("route", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


class GroupedRule(RuleBase):
    group_by: Dimension | None = Field(default=None, description="None: all calls together")


class ThresholdRule(GroupedRule):
    """`metric` over the last `window_minutes` one-minute windows `op` `threshold`."""

    type: Literal["threshold"]
    metric: Metric
    op: Comparator = ">"
    threshold: float
    window_minutes: int = Field(default=5, ge=1, le=24 * 60)
    min_requests: int = Field(default=0, ge=0, description="Fewer calls in the window: not evaluated")


class SpikeRule(GroupedRule):
    """`metric` over the window at `factor` times or more its value over the `baseline_minutes`
    before the window."""

    type: Literal["spike"]
    metric: Metric
    factor: float = Field(default=3.0, gt=1)
    window_minutes: int = Field(default=5, ge=1, le=24 * 60)
    baseline_minutes: int = Field(default=60, ge=1, le=24 * 60)
    min_requests: int = Field(default=0, ge=0, description="In the window and in the baseline alike")


class BudgetRule(RuleBase):
    """Spend of the current day or month (in the budgets file's time zone) against each budget:
    fires at the first warning percentage reached, escalates at each higher one."""

    type: Literal["budget"]
    budgets: tuple[str, ...] | None = Field(default=None, description="Budget names; None: all")


class ForecastRule(RuleBase):
    """Spend projected to the end of the day or month from the rate so far above the budget."""

    type: Literal["budget_forecast"]
    budgets: tuple[str, ...] | None = None
    min_elapsed_minutes: float = Field(
        default=60, ge=0, description="No forecast this early in a period (too little to go on)"
    )


class DeadLetterRule(RuleBase):
    """At least `threshold` dead letters on a stage's dead-letter topic within the window."""

    type: Literal["dead_letters"]
    topics: tuple[WatchedGroup, ...] = ("stream", "sink")
    threshold: int = Field(default=1, ge=1)
    window_minutes: int = Field(default=5, ge=1, le=24 * 60)


class FlatlineRule(RuleBase):
    """No calls from a model, service, ... (one that was seen) for `minutes`."""

    type: Literal["flatline"]
    group_by: Dimension
    minutes: float = Field(default=15, gt=0, le=24 * 60)
    keys: tuple[str, ...] | None = Field(default=None, description="Only these keys; None: every key seen")


class StalledRule(RuleBase):
    """A consumer group (stream or sink workers) with growing lag that committed nothing for `minutes`."""

    type: Literal["consumer_stalled"]
    groups: tuple[WatchedGroup, ...] = ("stream", "sink")
    minutes: float = Field(default=5, gt=0, le=24 * 60)


Rule = Annotated[
    ThresholdRule | SpikeRule | BudgetRule | ForecastRule | DeadLetterRule | FlatlineRule | StalledRule,
    Field(discriminator="type"),
]
RULE_TYPES = (
    "threshold",
    "spike",
    "budget",
    "budget_forecast",
    "dead_letters",
    "flatline",
    "consumer_stalled",
)


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    routes: dict[str, Route] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> RulesFile:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
            for route in rule.route:
                if route != DEFAULT_ROUTE and route not in self.routes:
                    raise ValueError(
                        f"rule {rule.name!r} field route: no route {route!r} "
                        f"(defined: {', '.join(sorted(self.routes)) or 'none'}; "
                        f"'{DEFAULT_ROUTE}' always exists)"
                    )
        return self

    def by_name(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def parse_rules(document: Any, source: str = "rules file") -> RulesFile:
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise RulesFileError(f"{source}: expected a mapping with 'routes' and 'rules'")
    try:
        return RulesFile.model_validate(document)
    except ValidationError as exc:
        problems = [_describe(error, document) for error in exc.errors()]
        raise RulesFileError(f"{source}: " + "; ".join(problems)) from None


def _describe(error: Any, document: dict[str, Any]) -> str:
    """'rule <name> field <field>: <message>' from a pydantic error location."""
    location = list(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
        items = document.get("rules") or []
        item = items[location[1]] if location[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        label = f"rule {name!r}" if isinstance(name, str) and name else f"rule #{location[1] + 1}"
        rest = location[2:]
        if rest and rest[0] in RULE_TYPES:  # the discriminated union adds the type as a level
            rest = rest[1:]
        field = ".".join(str(part) for part in rest)
        if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            field, message = "type", f"must be one of: {', '.join(RULE_TYPES)}"
        return f"{label} field {field or '(rule)'}: {message}"
    if len(location) >= 2 and location[0] == "routes":
        field = ".".join(str(part) for part in location[2:]) or "(route)"
        return f"route {location[1]!r} field {field}: {message}"
    where = ".".join(str(part) for part in location)
    return f"{'field ' + where + ': ' if where else ''}{message}"


def load_rules(path: Path | str | None = None) -> RulesFile:
    """Read and validate a rules file (default: the rules that ship with callstream)."""
    yaml = require("alert", "yaml")
    path = Path(path) if path is not None else DEFAULT_RULES_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesFileError(f"cannot read rules file {path}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(document, str(path))
