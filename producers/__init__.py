"""Producers: the raw call-event contract and everything that publishes raw events to Kafka."""
