"""Connection settings for Kafka and Elasticsearch, read once from the environment.

Every stage connects through these objects, so pointing callstream at a production cluster
(SASL, TLS, API keys) is configuration only. Defaults target the local servers of
`callstream local up`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StateSettings(BaseSettings):
    """Where callstream keeps local state (the producer's spool, ingest checkpoints, the stream's
    data). Environment variable `CALLSTREAM_STATE_DIR`; default `$XDG_STATE_HOME/callstream`, else
    `~/.local/state/callstream`, so a command finds its state wherever it is started from."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_", extra="ignore")

    state_dir: Path | None = None


def state_dir(*parts: str) -> Path:
    """The absolute directory of a component's local state, e.g. `state_dir("spool")`. Only a path:
    create it with `ensure_private_dir` where it is used (and log where it is)."""
    base = StateSettings().state_dir
    if base is None:
        xdg = os.environ.get("XDG_STATE_HOME")
        try:
            root = Path(xdg) if xdg else Path.home() / ".local" / "state"
        except RuntimeError:  # no home directory (some containers): fall back to the working directory
            root = Path.cwd() / ".callstream-state"
        base = root / "callstream"
    return base.expanduser().absolute().joinpath(*parts)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by this user only (0700), and tighten it to 0700
    if it exists with wider permissions: local state may hold what a caller recorded."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        with contextlib.suppress(OSError):  # not ours: the caller logs the mode it finds
            path.chmod(0o700)
    return path


class KafkaSettings(BaseSettings):
    """How to reach Kafka. Environment prefix `CALLSTREAM_KAFKA_`."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    client_id: str = "callstream"
    topic_prefix: str = "callstream"
    # librdkafka's own default: a real broker keeps a fetch response within fetch.max.bytes (50 MB).
    # The embedded engine (noida-db) may answer with a whole partition; it raises this (local_servers).
    receive_message_max_bytes: int = Field(default=100_000_000, ge=1_000_000)

    @model_validator(mode="after")
    def _one_security_decision(self) -> KafkaSettings:
        """Refuse combinations that cannot work, before any client is built: confluent-kafka and
        aiokafka would each fail differently (or, worse, silently connect without credentials)."""
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        uses_sasl, uses_tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        if mechanism and not uses_sasl:
            raise ValueError(
                f"CALLSTREAM_KAFKA_SASL_MECHANISM={mechanism} needs CALLSTREAM_KAFKA_SECURITY_PROTOCOL "
                f"SASL_PLAINTEXT or SASL_SSL, not {protocol}"
            )
        if uses_sasl and not mechanism:
            raise ValueError(
                f"CALLSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs CALLSTREAM_KAFKA_SASL_MECHANISM "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"SASL ({mechanism}) needs CALLSTREAM_KAFKA_SASL_USERNAME and CALLSTREAM_KAFKA_SASL_PASSWORD"
            )
        tls_files = [self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location]
        if any(tls_files) and not uses_tls:
            raise ValueError(
                f"TLS files are set but CALLSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                "(use SSL or SASL_SSL)"
            )
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError(
                "a client certificate needs both CALLSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION and "
                "CALLSTREAM_KAFKA_SSL_KEY_LOCATION"
            )
        return self

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka properties shared by producers, consumers and the admin client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        for key, value in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if value:
                conf[key] = value
        return conf

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}" if self.topic_prefix else name


class ElasticsearchSettings(BaseSettings):
    """How to reach Elasticsearch. Environment prefix `CALLSTREAM_ES_`."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_ES_", extra="ignore")

    url: str = "http://127.0.0.1:9200"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout_s: float = 30.0
    index_prefix: str = "callstream"

    @property
    def safe_url(self) -> str:
        """The URL without any user:password part, for logs and messages."""
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        return urlunsplit(parts._replace(netloc="[redacted]@" + parts.netloc.rsplit("@", 1)[1]))

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "hosts": [self.url],
            "request_timeout": self.request_timeout_s,
            "verify_certs": self.verify_certs,
        }
        if self.api_key:
            kwargs["api_key"] = self.api_key.get_secret_value()
        elif self.username:
            kwargs["basic_auth"] = (self.username, self.password.get_secret_value() if self.password else "")
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        return kwargs

    def client(self) -> Any:
        from elasticsearch import Elasticsearch

        return Elasticsearch(**self.client_kwargs())
