"""Everything the alert worker reads at start, checked together: rules, budgets, receivers.

Each file is validated on its own when loaded; here they are checked against each other and
against the settings, so that a worker refuses to start (with the rule and the field named)
rather than discovering at the first incident that a rule routes to Slack without a Slack URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callstream.alerts.evaluate import pipeline_series
from callstream.alerts.notify import LOG, WEBHOOK, recipients_for, targets_for
from callstream.alerts.rules import BudgetRule, ForecastRule, Rule, RulesFile, RulesFileError, load_rules
from callstream.alerts.series import Routing, SeriesId, retention_for, routing_for, sample_horizon_ms
from callstream.alerts.settings import AlertSettings
from callstream.budgets import BudgetFile, BudgetSettings, load_budgets


@dataclass(frozen=True)
class AlertConfig:
    settings: AlertSettings
    rules: RulesFile
    budgets: BudgetFile
    routing: Routing
    retention_ms: dict[str, int]
    sample_horizon_ms: int
    pipeline_series: list[SeriesId]

    def targets(self, rule: Rule) -> list[str]:
        return targets_for(rule, self.rules, self.settings.webhook_url is not None)

    @property
    def logged_only(self) -> list[str]:
        """Rules whose notifications reach no receiver, only the log (and Elasticsearch)."""
        return [rule.name for rule in self.rules.rules if self.targets(rule) == [LOG]]


def problems(rules: RulesFile, budgets: BudgetFile, settings: AlertSettings) -> list[str]:
    found: list[str] = []
    names = {b.name for b in budgets.budgets}
    webhook = settings.webhook_url is not None
    for rule in rules.rules:
        label = f"rule {rule.name!r}"
        if isinstance(rule, BudgetRule | ForecastRule) and rule.budgets is not None:
            for name in rule.budgets:
                if name not in names:
                    found.append(
                        f"{label} field budgets: no budget {name!r} in the budgets file "
                        f"(has: {', '.join(sorted(names)) or 'none'})"
                    )
        for target in targets_for(rule, rules, webhook):
            if target == WEBHOOK and not webhook:
                found.append(
                    f"{label} field route: a route sends to the webhook; set CALLSTREAM_ALERT_WEBHOOK_URL"
                )
            elif target.startswith("slack:") and settings.slack_url(target[len("slack:") :]) is None:
                found.append(
                    f"{label} field route: Slack{' channel ' + target[6:] if target[6:] else ''} has no "
                    "incoming webhook; set CALLSTREAM_ALERT_SLACK_WEBHOOK_URL (or _SLACK_WEBHOOK_URLS)"
                )
            elif target.startswith("email:"):
                if not settings.email_configured:
                    found.append(
                        f"{label} field route: e-mail needs CALLSTREAM_ALERT_SMTP_HOST and "
                        "CALLSTREAM_ALERT_EMAIL_FROM"
                    )
                elif not recipients_for(target, rules, settings.recipients):
                    found.append(
                        f"{label} field route: route {target[6:]!r} has no recipients; "
                        "set email.to or CALLSTREAM_ALERT_EMAIL_TO"
                    )
    return found


def load_config(
    settings: AlertSettings | None = None,
    rules_file: Path | None = None,
    budgets_file: Path | None = None,
) -> AlertConfig:
    """Load and cross-check the rules and budgets files; raises RulesFileError (or BudgetFileError)."""
    settings = settings or AlertSettings()
    rules = load_rules(rules_file or settings.rules_file)
    budgets = load_budgets(budgets_file or BudgetSettings().file)
    found = problems(rules, budgets, settings)
    if found:
        raise RulesFileError(f"{rules_file or settings.rules_file}: " + "; ".join(found))
    return AlertConfig(
        settings,
        rules,
        budgets,
        routing_for(rules, budgets),
        retention_for(rules, budgets),
        sample_horizon_ms(rules),
        pipeline_series(rules),
    )
