"""Sinks: write enriched events and window aggregates from Kafka to Elasticsearch."""
