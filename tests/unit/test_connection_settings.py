"""Connection security is one decision: impossible combinations are refused at start, and faust
(aiokafka) ends up with the same protocol and credentials as the confluent clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import ValidationError

from callstream.settings import ElasticsearchSettings, KafkaSettings
from callstream.streams.connection import faust_broker_settings


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (
            {"security_protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN"},
            "needs CALLSTREAM_KAFKA_SECURITY_PROTOCOL",
        ),
        ({"security_protocol": "SSL", "sasl_mechanism": "SCRAM-SHA-256"}, "SASL_PLAINTEXT or SASL_SSL"),
        ({"security_protocol": "SASL_SSL"}, "needs CALLSTREAM_KAFKA_SASL_MECHANISM"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "USERNAME"),
        ({"security_protocol": "PLAINTEXT", "ssl_ca_location": "/ca.pem"}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_certificate_location": "/c.pem"}, "KEY_LOCATION"),
    ],
)
def test_impossible_combinations_are_refused(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        KafkaSettings(**fields)


@pytest.mark.parametrize(
    ("fields", "credentials", "tls"),
    [
        ({}, None, False),
        ({"security_protocol": "SSL"}, faust.SSLCredentials, True),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            faust.SASLCredentials,
            False,
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "u",
                "sasl_password": "secret-pw",
            },
            faust.SASLCredentials,
            True,
        ),
    ],
)
def test_faust_gets_the_same_protocol_and_credentials(
    fields: dict[str, Any], credentials: type | None, tls: bool
) -> None:
    kafka = KafkaSettings(bootstrap_servers="a:1, b:2", **fields)
    conf = faust_broker_settings(kafka)
    assert conf["broker"] == ["kafka://a:1", "kafka://b:2"]
    creds = conf.get("broker_credentials")
    if credentials is None:
        assert creds is None
        return
    assert isinstance(creds, credentials)
    assert creds.protocol.name == kafka.confluent_config()["security.protocol"]
    context = creds.context if isinstance(creds, faust.SSLCredentials) else creds.ssl_context
    assert (context is not None) == tls
    if isinstance(creds, faust.SASLCredentials):
        confluent = kafka.confluent_config()
        assert creds.mechanism.name.replace("_", "-") == confluent["sasl.mechanism"]
        assert (creds.username, creds.password) == (confluent["sasl.username"], confluent["sasl.password"])


def test_elasticsearch_credentials_in_the_url_are_never_shown() -> None:
    es = ElasticsearchSettings(url="https://writer:hunter2@es.example:9200/")
    assert es.safe_url == "https://[redacted]@es.example:9200/"
    assert "hunter2" not in es.safe_url
    assert ElasticsearchSettings(url="http://127.0.0.1:9200").safe_url == "http://127.0.0.1:9200"


def test_the_workers_state_and_the_html_report_are_private(tmp_path: Path) -> None:
    from callstream.streams.connection import faust_datadir

    wide = tmp_path / "state"
    wide.mkdir(mode=0o755)
    wide.chmod(0o755)
    datadir = Path(faust_datadir(wide, "callstream-stream"))
    assert datadir == wide / "callstream-stream-data"
    assert (wide.stat().st_mode & 0o777, datadir.stat().st_mode & 0o777) == (0o700, 0o700)

    from callstream.reports.html import write_html
    from tests.property.test_report_literal import report_of

    old = tmp_path / "old.html"
    old.write_text("x")
    old.chmod(0o644)
    for page in (tmp_path / "new" / "dir" / "report.html", old):
        write_html(report_of(["m"], ["u"], ["e"]), page)
        assert page.stat().st_mode & 0o777 == 0o600, page
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
