"""Infra: running callstream — local servers, topic and index setup, Compose stack, dashboards, alerts."""
