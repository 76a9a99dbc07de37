"""Budgets: one file that the alert worker and the cost report read alike, and its arithmetic.

A budgets file (YAML) names a time zone and a list of budgets, each an amount in USD per calendar
day or month of that zone for all calls, or for one provider, model, model family, service or
user (`key: "*"`: every key of the scope separately), with warnings at stated percentages:

    timezone: Asia/Seoul
    budgets:
      - name: daily-total
        period: day
        amount_usd: 100
        warn_at_percent: [80, 90, 100]
      - name: openai-monthly
        scope: provider
        key: openai
        period: month
        amount_usd: 2000

Everything below the loader is pure arithmetic on epoch milliseconds: the bounds of the day or
month that contains an instant (in the zone, so a day can last 23 or 25 hours where clocks
change), the warning level a spend has reached, and the linear burn forecast (spend projected to
the end of the period from the rate so far). No clock is read here: callers pass `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream.errors import ConfigurationError, require

Period = Literal["day", "month"]
Scope = Literal["all", "provider", "model", "model_family", "service", "user"]
EACH_KEY = "*"

DEFAULT_BUDGETS_FILE = Path(__file__).resolve().parent / "alerts" / "defaults" / "budgets.yaml"
"""The example shipped with callstream: the tutorial's 100 USD a day for all calls, in Korean time."""


class BudgetSettings(BaseSettings):
    """Where the budgets file is. Environment prefix `CALLSTREAM_BUDGETS_`."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_BUDGETS_", extra="ignore", env_ignore_empty=True)

    file: Path = DEFAULT_BUDGETS_FILE


class BudgetFileError(ConfigurationError):
    """A budgets file that cannot be used; the message names the budget and the field."""


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    scope: Scope = "all"
    key: str | None = Field(
        default=None, description="The provider, model, ... the budget is for; '*' = each one separately"
    )
    period: Period
    amount_usd: float = Field(gt=0)
    warn_at_percent: tuple[float, ...] = Field(default=(80.0, 90.0, 100.0), min_length=1)

    @field_validator("warn_at_percent")
    @classmethod
    def _levels_sorted(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if any(level <= 0 for level in levels):
            raise ValueError("every warning percentage must be above 0")
        if len(set(levels)) != len(levels):
            raise ValueError("warning percentages must be distinct")
        return tuple(sorted(levels))

    @model_validator(mode="after")
    def _key_matches_scope(self) -> Budget:
        if self.scope == "all" and self.key is not None:
            raise ValueError("a budget for all calls (scope: all) takes no key")
        if self.scope != "all" and not self.key:
            raise ValueError(f"scope {self.scope} needs a key (a {self.scope} name, or '*' for each one)")
        return self

    def level(self, spent_usd: float) -> float | None:
        """The highest warning percentage that `spent_usd` has reached, None below the lowest."""
        percent = spent_percent(spent_usd, self.amount_usd)
        reached = [level for level in self.warn_at_percent if percent >= level]
        return reached[-1] if reached else None


class BudgetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    budgets: tuple[Budget, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as Asia/Seoul)") from None
        return name

    @model_validator(mode="after")
    def _unique_names(self) -> BudgetFile:
        seen: set[str] = set()
        for budget in self.budgets:
            if budget.name in seen:
                raise ValueError(f"budget name {budget.name!r} is used twice")
            seen.add(budget.name)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def by_name(self, name: str) -> Budget:
        for budget in self.budgets:
            if budget.name == name:
                return budget
        raise KeyError(name)


def parse_budgets(document: Any, source: str = "budgets file") -> BudgetFile:
    """A loaded YAML document as a BudgetFile; errors name the budget (by name or position) and field."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise BudgetFileError(f"{source}: expected a mapping with 'timezone' and 'budgets'")
    try:
        return BudgetFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(_describe(error, document) for error in exc.errors())
        raise BudgetFileError(f"{source}: {problems}") from None


def _describe(error: Any, document: dict[str, Any]) -> str:
    location = list(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in location) or "(file)"
    if len(location) >= 2 and location[0] == "budgets" and isinstance(location[1], int):
        items = document.get("budgets") or []
        item = items[location[1]] if location[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        field = ".".join(str(part) for part in location[2:]) or "(budget)"
        label = f"budget {name!r}" if name else f"budget #{location[1] + 1}"
        return f"{label} field {field}: {message}"
    return f"field {where}: {message}"


def load_budgets(path: Path | str | None = None) -> BudgetFile:
    """Read and validate a budgets file (default: `BudgetSettings().file`)."""
    yaml = require("alert", "yaml")
    path = Path(path) if path is not None else BudgetSettings().file
    try:
        text = path.read_text()
    except OSError as exc:
        raise BudgetFileError(f"cannot read budgets file {path}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BudgetFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_budgets(document, str(path))


# -- calendar periods in a time zone -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodBounds:
    """One calendar day or month of a zone as UTC epoch milliseconds, `[start_ms, end_ms)`."""

    period: Period
    label: str  # 2026-03-01 for a day, 2026-03 for a month, in the zone's calendar
    start_ms: int
    end_ms: int

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms


def _midnight_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def period_bounds(period: Period, at_ms: int, zone: ZoneInfo) -> PeriodBounds:
    """The day or month of `zone` that contains the instant `at_ms`."""
    local = datetime.fromtimestamp(at_ms / 1000, zone).date()
    if period == "day":
        first, after = local, local + timedelta(days=1)
        label = first.isoformat()
    else:
        first = local.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        label = f"{first.year:04d}-{first.month:02d}"
    return PeriodBounds(period, label, _midnight_ms(first, zone), _midnight_ms(after, zone))


def spent_percent(spent_usd: float, amount_usd: float) -> float:
    return 100.0 * spent_usd / amount_usd


def forecast_usd(spent_usd: float, bounds: PeriodBounds, now_ms: int) -> float:
    """Spend at the end of the period if it goes on at the rate so far (linear burn):
    spent × period length / elapsed. At or after the period's end it is what was spent."""
    elapsed = now_ms - bounds.start_ms
    if elapsed <= 0:
        return spent_usd
    if now_ms >= bounds.end_ms:
        return spent_usd
    return spent_usd * bounds.length_ms / elapsed


def elapsed_fraction(bounds: PeriodBounds, now_ms: int) -> float:
    return min(1.0, max(0.0, (now_ms - bounds.start_ms) / bounds.length_ms))
