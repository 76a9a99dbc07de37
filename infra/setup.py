"""Create the topics and apply the Elasticsearch index templates: idempotent, for any cluster."""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient, NewTopic

from callstream import logs
from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.sinks import index_templates
from callstream.topics import TopicSpec, topic_specs

log = logs.get(__name__)


# The cluster's default.replication.factor: 1 on one local broker, what the operators chose (3, say)
# on a production cluster. A fixed 1 would leave every topic on one broker there.
BROKER_DEFAULT_REPLICATION = -1
TOPICS_LISTED_TIMEOUT_S = 30.0


def create_topics(
    settings: KafkaSettings,
    partitions: int = 6,
    replication_factor: int = BROKER_DEFAULT_REPLICATION,
    specs: list[TopicSpec] | None = None,
) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the names created, once
    the broker lists them (a real broker's metadata follows its controller a moment later)."""
    admin = AdminClient(settings.confluent_config())
    existing = set(admin.list_topics(timeout=15).topics)
    specs = specs if specs is not None else topic_specs(settings, partitions)
    wanted = [spec for spec in specs if spec.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=replication_factor, config=s.config
            )
            for s in wanted
        ],
        operation_timeout=30,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # an already-existing topic (a race with another setup) is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_until_listed(admin, {spec.name: spec.partitions for spec in wanted})
    log.info("topics created", topics=created)
    return created


def _wait_until_listed(admin: AdminClient, partitions: dict[str, int]) -> None:
    deadline = time.monotonic() + TOPICS_LISTED_TIMEOUT_S
    while True:
        listed = admin.list_topics(timeout=15).topics
        missing = [
            name
            for name, count in partitions.items()
            if len(getattr(listed.get(name), "partitions", {})) < count
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics created but not listed after {TOPICS_LISTED_TIMEOUT_S}s: {missing}")
        time.sleep(0.1)


def setup(
    kafka: KafkaSettings,
    es: ElasticsearchSettings,
    partitions: int = 6,
    replication_factor: int = BROKER_DEFAULT_REPLICATION,
) -> None:
    create_topics(kafka, partitions, replication_factor)
    client = es.client()
    try:
        index_templates.apply(client, es)
    finally:
        client.close()
