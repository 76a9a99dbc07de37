"""aiokafka's (faust's) view of the connection settings that the confluent clients use.

`KafkaSettings` is the one decision (protocol, mechanism, credentials, TLS files) and refuses
impossible combinations; this maps it onto faust's broker arguments, so the stream worker ends up
with the same protocol and credentials as every confluent-kafka client. `faust_datadir` is where
a faust app (stream or alert worker) keeps its state: created 0700.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from callstream.errors import MissingExtraError
from callstream.settings import KafkaSettings, ensure_private_dir

try:
    import faust
except ImportError as exc:
    raise MissingExtraError("stream", "faust-streaming") from exc


def faust_broker_settings(kafka: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = {"broker": [f"kafka://{s.strip()}" for s in kafka.bootstrap_servers.split(",")]}
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        if kafka.ssl_certificate_location:
            ssl_context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location)
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        conf["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        conf["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return conf


def faust_datadir(data_dir: Path, app_id: str) -> str:
    """The faust data directory of `app_id` under `data_dir`, both created readable by their owner
    only (0700): the tables kept there hold user ids, keys and costs."""
    ensure_private_dir(data_dir)
    return str(ensure_private_dir(data_dir / f"{app_id}-data"))
