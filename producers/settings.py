"""Settings of the producer library and of `callstream ingest`. Environment prefix `CALLSTREAM_PRODUCER_`.

Connection details (bootstrap servers, SASL, TLS, client id) stay in `callstream.settings.KafkaSettings`;
this object holds what is specific to publishing raw call events: buffering, batching, the spool
and the privacy rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from callstream import topics
from callstream.producers.contract import MAX_ERROR_MESSAGE_CHARS
from callstream.settings import KafkaSettings, state_dir

Compression = Literal["lz4", "zstd", "gzip", "snappy", "none"]
PrivacyMode = Literal["keep", "hash", "drop"]
UserIdMode = Literal["keep", "hash", "drop", "hash_email"]
"""`hash_email` (the default): a user id holding an e-mail address is replaced by its keyed
pseudonym (dropped, with a marker, when no CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY is set); any other
user id is kept."""


class ProducerSettings(BaseSettings):
    """How raw call events are buffered, batched, spooled and published."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_PRODUCER_", extra="ignore")

    # `callstream ingest`'s /metrics (Prometheus) and /healthz; a port in use costs the endpoint only.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9463, ge=0, le=65535, description="0: any free port; unset: off")

    # Caller side: a bounded in-memory queue; when it is full, events go to the spool instead.
    queue_max_events: int = Field(default=50_000, ge=1)
    # Background thread: how long it waits to fill a batch (a JSON array = one Kafka message).
    linger_ms: float = Field(default=100.0, ge=0)
    batch_max_events: int = Field(default=500, ge=1)
    # Uncompressed JSON size of one message; brokers reject messages over about 1 MB.
    batch_max_bytes: int = Field(default=900_000, ge=1_000, le=1_000_000)
    compression: Compression = "lz4"
    # librdkafka: its own linger, how long a message may wait for an acknowledgement before it counts
    # as failed (and goes to the spool), and the cap of its reconnect backoff.
    kafka_linger_ms: int = Field(default=5, ge=0)
    delivery_timeout_ms: int = Field(default=30_000, ge=1_000)
    reconnect_backoff_max_ms: int = Field(default=2_000, ge=10)
    # librdkafka's own send queue (queue.buffering.max.kbytes): bounds what waits for Kafka in memory;
    # beyond it batches go to the spool.
    kafka_queue_max_kbytes: int = Field(default=65_536, ge=1_024)
    # Any other librdkafka property, e.g. {"queue.buffering.max.kbytes": "65536"} (JSON in the env var).
    librdkafka_overrides: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # Logical topic names, as every component names them (KafkaSettings.topic() adds the prefix).
    raw_topic: str = topics.RAW
    deadletter_topic: str = topics.DEADLETTER

    # Durable spool for events Kafka could not take (unreachable broker, full queue, shutdown).
    # Default: `callstream.settings.state_dir("spool")` (under CALLSTREAM_STATE_DIR, else
    # ~/.local/state/callstream); created 0700, files 0600.
    spool_dir: Path = Field(default_factory=lambda: state_dir("spool"))
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    spool_segment_max_bytes: int = Field(default=4 * 1024 * 1024, ge=4096)
    spool_fsync: bool = False  # fsync every write: survives power loss, costs a disk flush per batch
    spool_retry_interval_ms: int = Field(default=2_000, ge=10)
    close_timeout_ms: int = Field(default=10_000, ge=0)

    # Privacy and size: prompts and responses stay out unless enabled; metadata is capped.
    record_bodies: bool = False
    body_max_chars: int = Field(default=2_000, ge=0, le=8_192)  # bodies live in metadata: 8192 at most
    metadata_max_bytes: int = Field(default=4_096, ge=64)
    metadata_value_max_chars: int = Field(default=512, ge=16, le=8_192)  # the contract's string limit
    error_message_max_chars: int = Field(default=500, ge=16, le=MAX_ERROR_MESSAGE_CHARS)

    # Privacy option for `user_id` and for IP addresses in metadata (`client_ip`, `ip_address`,
    # `clientIp`, `x-forwarded-for`, ... any casing): kept as they are, replaced by a keyed
    # HMAC-SHA256 pseudonym (stable per key, so per-user aggregates still work), or dropped. By
    # default a user id is kept unless it holds an e-mail address (then it is pseudonymised).
    user_id_mode: UserIdMode = "hash_email"
    client_ip_mode: PrivacyMode = "keep"
    privacy_hash_key: SecretStr | None = None

    # `callstream ingest`: a line longer than this is dead-lettered (its head kept) without being read
    # into memory whole.
    max_line_bytes: int = Field(default=1 << 20, ge=1_024)

    # Stamped on every event recorded by this process unless the call sets its own.
    service_name: str | None = None
    environment: str | None = None

    @model_validator(mode="after")
    def _hash_needs_a_key(self) -> ProducerSettings:
        hashed = [
            f"CALLSTREAM_PRODUCER_{name.upper()}_MODE=hash"
            for name in ("user_id", "client_ip")
            if getattr(self, f"{name}_mode") == "hash"
        ]
        if hashed and (self.privacy_hash_key is None or not self.privacy_hash_key.get_secret_value()):
            raise ValueError(
                f"{' and '.join(hashed)} needs CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY: a long random secret, "
                "the same in every process whose events are aggregated together"
            )
        return self

    def privacy_summary(self) -> list[str]:
        """What recorded events keep of personal data and content, one line each (for operators)."""
        key = self.privacy_hash_key is not None and bool(self.privacy_hash_key.get_secret_value())
        user = {
            "keep": "kept as given",
            "hash": "replaced by a keyed pseudonym",
            "drop": "dropped",
            "hash_email": "kept, except one holding an e-mail address: "
            + (
                "replaced by a keyed pseudonym"
                if key
                else "dropped (no CALLSTREAM_PRODUCER_PRIVACY_HASH_KEY)"
            ),
        }[self.user_id_mode]
        ip = {"keep": "kept as given", "hash": "replaced by a keyed pseudonym", "drop": "dropped"}[
            self.client_ip_mode
        ]
        bodies = (
            f"recorded, scrubbed of secrets and cut to {self.body_max_chars} characters"
            if self.record_bodies
            else "never recorded"
        )
        return [
            f"user_id: {user} (CALLSTREAM_PRODUCER_USER_ID_MODE={self.user_id_mode})",
            f"IP addresses in metadata (client_ip, ip_address, x-forwarded-for, ...): {ip} "
            f"(CALLSTREAM_PRODUCER_CLIENT_IP_MODE={self.client_ip_mode})",
            f"prompt and response bodies: {bodies} (CALLSTREAM_PRODUCER_RECORD_BODIES)",
            "credentials: redacted from every recorded text and dead letter (known formats, "
            "sensitive names, the instrumented clients' keys)",
        ]

    @model_validator(mode="after")
    def _segment_within_spool(self) -> ProducerSettings:
        if self.spool_max_bytes and self.spool_segment_max_bytes > self.spool_max_bytes:
            self.spool_segment_max_bytes = max(4096, self.spool_max_bytes)
        return self

    def confluent_config(self, kafka: KafkaSettings) -> dict[str, Any]:
        """librdkafka producer properties: connection from KafkaSettings, delivery guarantees from here."""
        conf: dict[str, Any] = kafka.confluent_config() | {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": self.kafka_linger_ms,
            "message.timeout.ms": self.delivery_timeout_ms,
            "reconnect.backoff.max.ms": self.reconnect_backoff_max_ms,
            "message.max.bytes": max(1_000_000, self.batch_max_bytes + 10_000),
            "queue.buffering.max.kbytes": self.kafka_queue_max_kbytes,
        }
        conf.update(self.librdkafka_overrides)
        return conf


class OtlpSettings(BaseSettings):
    """`callstream otlp`, the OpenTelemetry receiver. Environment prefix `CALLSTREAM_OTLP_`.

    It publishes through ProducerSettings' path (queue, packing, spool, privacy rules): those
    settings apply to it as to any producer."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_OTLP_", extra="ignore")

    host: str = "127.0.0.1"
    http_port: int | None = Field(default=4318, ge=0, le=65535, description="OTLP/HTTP; unset: off")
    grpc_port: int | None = Field(default=4317, ge=0, le=65535, description="OTLP/gRPC; unset: off")
    # Exporters send `Authorization: Bearer <token>` (OTEL_EXPORTER_OTLP_HEADERS) when this is set.
    bearer_token: SecretStr | None = None
    # TLS for both ports when both files are given (PEM).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # A request body over this (compressed) is refused with 413, and so is one that inflates beyond
    # max_decompressed_bytes: a gzip bomb stops at the limit.
    max_request_bytes: int = Field(default=4 << 20, ge=1_024)
    max_decompressed_bytes: int = Field(default=32 << 20, ge=1_024)
    # While Kafka is away, spans wait in the spool; when it has less room than this left, requests
    # are answered 503 with Retry-After (the exporter keeps them and retries) instead of accepted.
    spool_headroom_bytes: int = Field(default=8 << 20, ge=0)
    retry_after_s: int = Field(default=5, ge=1, le=3_600)
    # Requests handled at once (each holds its decoded body in memory until its spans are queued).
    max_concurrent_requests: int = Field(default=16, ge=1, le=1_024)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9465, ge=0, le=65535, description="0: any free port; unset: off")

    @model_validator(mode="after")
    def _tls_needs_both(self) -> OtlpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both CALLSTREAM_OTLP_TLS_CERT_FILE and CALLSTREAM_OTLP_TLS_KEY_FILE")
        return self
