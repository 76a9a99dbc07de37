"""The faust worker frame that the stream worker and the alert worker share: one app factory with
the settings both rely on, byte tables placed by callstream's own partition function, the topics
faust would create, and forgetting what a worker wrote for partitions it gave up.

Both workers keep their state in changelogged memory tables, commit input only after a complete
producer flush (faust_surface.complete_flush) and run at least once; a setting that differs
between them is an argument here, not a second copy of the app's construction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callstream import logs
from callstream.errors import MissingExtraError
from callstream.settings import KafkaSettings
from callstream.streams import faust_surface
from callstream.streams.connection import faust_broker_settings, faust_datadir
from callstream.topics import TopicSpec

try:
    import faust
    from mode.utils.times import want_seconds
except ImportError as exc:
    raise MissingExtraError("stream", "faust-streaming") from exc

log = logs.get(__name__)


def worker_app(
    app_id: str,
    kafka: KafkaSettings,
    *,
    partitions: int,
    data_dir: Path,
    web_bind: str,
    web_port: int,
    **extra: Any,
) -> faust.App:
    """A faust app as callstream's workers run it: in-memory tables recovered from their changelogs,
    at-least-once processing, acks from all replicas, no faust web server, and a producer flush
    that waits for every record before a commit. `extra` holds a worker's own settings."""
    faust_surface.check()
    app = faust.App(
        app_id,
        **faust_broker_settings(kafka),
        broker_client_id=kafka.client_id,
        store="memory://",
        datadir=faust_datadir(data_dir, app_id),
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        producer_acks=-1,
        web_enabled=False,
        web_bind=web_bind,
        web_port=web_port,
        autodiscover=False,
        **extra,
    )
    faust_surface.complete_flush(app)
    return app


@dataclass(frozen=True)
class PlacedTable:
    """A table whose keys sit on the changelog partition `partition_of` names (the input partition
    that owns them), so that its owner is known from the key alone."""

    table: Any
    partition_of: Callable[[str], int]


def byte_table(app: faust.App, name: str, partitions: int, partition_of: Callable[[str], int]) -> PlacedTable:
    """A table of str keys and bytes values. value_type=bytes makes faust use the raw codec for the
    changelog: values come back from recovery exactly as written."""
    table = app.Table(name, partitions=partitions, key_type=str, value_type=bytes)
    faust_surface.place_keys(table, partition_of)
    return PlacedTable(table, partition_of)


def forget_unowned(tables: dict[str, PlacedTable], owned: set[int]) -> int:
    """Drop what this worker holds in `tables` for partitions it does not own (faust_surface.
    forget_local): stale, it would be read as current, republished or acted on, and it would never
    leave memory. The owner's changelog holds it. Returns how many keys were dropped."""
    dropped = sum(faust_surface.forget_local(t.table, t.partition_of, owned) for t in tables.values())
    if dropped:
        log.info("state of partitions owned elsewhere forgotten", keys=dropped)
    return dropped


def settled(app: faust.App) -> bool:
    """Table recovery after the latest rebalance has finished and no rebalance is under way: a
    worker's tables are what its changelogs hold for the partitions it owns."""
    return faust_surface.recovery_completed(app) and not app.rebalancing


def internal_topic_specs(app: faust.App) -> list[TopicSpec]:
    """The topics faust would create for `app` (the tables' changelogs, the assignor's leader topic),
    with their partitions and cleanup policy. The workers create them before they start: a worker
    that creates them itself on a fresh Apache Kafka can join its group before the broker lists
    them, and then faust assigns it no changelog partitions and every table write fails with
    PartitionsMismatch (seen with Kafka 4.1; noida-db lists a topic at once)."""
    specs: list[TopicSpec] = []
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = ",".join(p for p, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        config = {"cleanup.policy": policy} if policy else {}
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        config.update({key: str(value) for key, value in (topic.config or {}).items()})
        partitions = table.partitions or app.conf.topic_partitions
        specs.extend(TopicSpec(name, partitions, config) for name in topic.topics)
    specs.append(TopicSpec(f"{app.conf.id}-__assignor-__leader", 1))
    return specs


def use_uvloop() -> None:
    """uvloop for the event loop, where installed (about +25% throughput); before the app exists."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # optional
        pass


def run(
    app: faust.App, kafka: KafkaSettings, name: str, final: Callable[[], dict[str, Any]], **details: Any
) -> None:
    """Run a worker until SIGTERM: its internal topics created first, then faust's worker without
    its spinner; logs "<name> worker starting" and "<name> worker stopped" with `final()`."""
    from callstream.infra.setup import create_topics

    create_topics(kafka, specs=internal_topic_specs(app))
    log.info(f"{name} worker starting", app_id=app.conf.id, **details)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False)
    try:
        faust_surface.without_spinner(worker).execute_from_commandline()
    finally:
        log.info(f"{name} worker stopped", app_id=app.conf.id, **final())
