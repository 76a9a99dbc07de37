"""The rules and budgets files that ship with callstream."""
