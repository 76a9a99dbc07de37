"""Sink settings: batching, parallelism, retries, backpressure, retention. Env prefix `CALLSTREAM_SINK_`.

Defaults follow the Kafka Connect Elasticsearch sink (2000 docs / 5 MiB per bulk, a few requests
in flight), which is also what Elasticsearch recommends for bulk sizes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream import topics

MIB = 1024 * 1024


class SinkSettings(BaseSettings):
    """How the sink consumes, batches and writes. Read once at start."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_SINK_", extra="ignore")

    group_id: str = "callstream-sink"
    # Static membership (KIP-345): a restarted process with the same id takes its partitions back
    # at once instead of waiting for the session timeout; give each process its own (e.g. pod name).
    # noida-db never evicts a SIGKILLed dynamic member, so there it is the only way to recover.
    group_instance_id: str | None = None
    # Logical topic names (KafkaSettings.topic() adds the prefix); each one has its own document mapping.
    enriched_topic: str = topics.ENRICHED
    aggregates_topic: str = topics.AGGREGATES
    deadletter_topic: str = topics.DEADLETTER
    sink_deadletter_topic: str = topics.SINK_DEADLETTER
    alert_events_topic: str = topics.ALERT_EVENTS
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    batch_max_docs: int = Field(default=2000, ge=1)
    batch_max_bytes: int = Field(default=5 * MIB, ge=1024)
    flush_interval_ms: int = Field(default=500, ge=0, description="Linger: flush a partial batch this old")
    max_in_flight_requests: int = Field(default=4, ge=1)
    http_compress: bool = False

    retry_backoff_min_ms: int = Field(default=100, ge=1)
    retry_backoff_max_ms: int = Field(default=30_000, ge=1)

    # Backpressure: consumption pauses while this many bytes of documents are read but not yet
    # acknowledged, and resumes below half of it.
    max_pending_bytes: int = Field(default=64 * MIB, ge=MIB)
    consume_max_messages: int = Field(default=500, ge=1)
    consume_timeout_ms: int = Field(default=100, ge=1)
    # librdkafka's own prefetch queue per consumer; bounded so that memory stays bounded too.
    consumer_queue_max_kbytes: int = Field(default=16 * 1024, ge=1024)
    session_timeout_ms: int = Field(default=30_000, ge=1000)

    shutdown_timeout_s: float = Field(
        default=30.0, ge=0, description="How long a stop waits for retrying bulks"
    )
    stats_interval_s: float = Field(default=10.0, gt=0)
    # /metrics (Prometheus) and /healthz; a port in use costs the endpoint, not the worker.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9462, ge=0, le=65535, description="0: any free port; unset: off")

    # Index templates and retention (ILM, where the server has it).
    index_shards: int = Field(default=1, ge=1)
    index_replicas: int | None = Field(default=None, ge=0, description="None: the cluster default")
    index_refresh_interval: str = "5s"
    calls_retention_days: int = Field(default=30, ge=1)
    aggregates_1m_retention_days: int = Field(default=90, ge=1)
    aggregates_retention_days: int = Field(default=730, ge=1, description="1h and 1d windows")
    deadletter_retention_days: int = Field(default=30, ge=1)
    alerts_retention_days: int = Field(default=365, ge=1)
    bill_retention_days: int = Field(default=730, ge=1, description="imported provider bills")

    @model_validator(mode="after")
    def _backoff_bounds(self) -> SinkSettings:
        if self.retry_backoff_max_ms < self.retry_backoff_min_ms:
            raise ValueError("retry_backoff_max_ms must be >= retry_backoff_min_ms")
        if self.max_pending_bytes < 2 * self.batch_max_bytes:
            raise ValueError("max_pending_bytes must hold at least two full batches (2 * batch_max_bytes)")
        return self
