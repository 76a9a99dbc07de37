"""The Kafka topics of the pipeline: names, partition counts and configs, in flow order."""

from __future__ import annotations

from dataclasses import dataclass, field

from callstream.durations import DAY_MS
from callstream.settings import KafkaSettings

RAW = "calls.raw"
"""Raw call events from producers: one event or a JSON array of events per message."""
DEADLETTER = "calls.deadletter"
"""Events the stream could not accept, one per message, with the reason and the original."""
ENRICHED = "calls.enriched"
"""Validated, enriched events: a JSON array per message."""
LATE = "calls.late"
"""Enriched events that arrived after their window's grace period (still applied as corrections)."""
REPLAY = "calls.replay"
"""Raw events re-fed for reprocessing history (same format as RAW), one topic per replay
generation: `calls.replay.g<generation>` (see replay_topic)."""
AGGREGATE_PARTIALS = "aggregates.partials"
"""Per-batch partial window aggregates keyed by window, merged by the window agent."""
AGGREGATES = "aggregates"
"""Full window aggregate updates, versioned, keyed by document id."""
SINK_DEADLETTER = "sink.deadletter"
"""Documents Elasticsearch rejected, with the reason and the original."""
ALERT_SERIES = "alerts.series"
"""The alert worker's own input: aggregate updates re-keyed by the series an alert rule watches
(dimension and key), so that every window of one series meets on one partition."""
ALERT_EVENTS = "alerts.events"
"""Alert firings, re-alerts, escalations and resolutions, one per message, keyed by alert id
(the sink writes them to `callstream-alerts-*`)."""
ALERT_SILENCES = "alerts.silences"
"""Silences set from the CLI, keyed by silence id (compacted: the newest record per id counts)."""
ALERT_DEADLETTER = "alerts.deadletter"
"""Notifications the alert worker gave up delivering, in the one dead-letter shape."""


def replay_topic(generation: int) -> str:
    return f"{REPLAY}.g{generation}"


def replay_partials_topic(generation: int) -> str:
    return f"{AGGREGATE_PARTIALS}.g{generation}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


LONG_RETENTION = {"retention.ms": str(30 * DAY_MS)}


def replay_topic_specs(settings: KafkaSettings, generation: int, partitions: int = 6) -> list[TopicSpec]:
    """The topics a replay generation reads and merges through."""
    return [
        TopicSpec(settings.topic(replay_topic(generation)), partitions, LONG_RETENTION),
        TopicSpec(settings.topic(replay_partials_topic(generation)), partitions, LONG_RETENTION),
    ]


def topic_specs(settings: KafkaSettings, partitions: int = 6) -> list[TopicSpec]:
    """Topics to create. Raw topics keep long retention so backfills of old logs are not expired."""
    long_retention = LONG_RETENTION
    return [
        TopicSpec(settings.topic(RAW), partitions, long_retention),
        TopicSpec(settings.topic(DEADLETTER), 3, long_retention),
        TopicSpec(settings.topic(ENRICHED), partitions, long_retention),
        TopicSpec(settings.topic(LATE), partitions, long_retention),
        TopicSpec(settings.topic(AGGREGATE_PARTIALS), partitions, long_retention),
        TopicSpec(settings.topic(AGGREGATES), partitions, long_retention),
        TopicSpec(settings.topic(SINK_DEADLETTER), 3, long_retention),
        TopicSpec(settings.topic(ALERT_SERIES), partitions, {"retention.ms": str(2 * DAY_MS)}),
        TopicSpec(settings.topic(ALERT_EVENTS), partitions, long_retention),
        TopicSpec(settings.topic(ALERT_SILENCES), 1, {"cleanup.policy": "compact"}),
        TopicSpec(settings.topic(ALERT_DEADLETTER), 3, long_retention),
    ]
