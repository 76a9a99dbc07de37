"""Create the topics and apply the Elasticsearch index templates: idempotent, for any cluster."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from callstream import logs
from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.sinks import index_templates
from callstream.topics import TopicSpec, topic_specs

log = logs.get(__name__)


def create_topics(
    settings: KafkaSettings,
    partitions: int = 6,
    replication_factor: int = 1,
    specs: list[TopicSpec] | None = None,
) -> list[str]:
    """Create missing topics; existing ones are left as they are. Returns the names created."""
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
    log.info("topics created", topics=created)
    return created


def setup(
    kafka: KafkaSettings, es: ElasticsearchSettings, partitions: int = 6, replication_factor: int = 1
) -> None:
    create_topics(kafka, partitions, replication_factor)
    client = es.client()
    try:
        index_templates.apply(client, es)
    finally:
        client.close()
