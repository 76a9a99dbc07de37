"""The alert service of the Docker Compose stack, checked without Docker."""

from __future__ import annotations

from pathlib import Path

import yaml

from callstream.cli import GROUPS

ROOT = Path(__file__).resolve().parents[2]


def test_the_alert_service_runs_the_worker_and_checks_its_health() -> None:
    services = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())["services"]
    alert = services["alert"]
    assert alert["command"] == ["alert"]
    assert ("callstream.alerts.cli", "alert_app", "alert") in GROUPS
    env = alert["environment"]
    assert (
        env["CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
        == services["stream"]["environment"]["CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
    )
    port = int(env["CALLSTREAM_ALERT_METRICS_PORT"])
    assert env["CALLSTREAM_ALERT_METRICS_HOST"] == "0.0.0.0"  # reachable in the network, not published
    assert "ports" not in alert
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(alert["healthcheck"]["test"])
    assert alert["depends_on"] == {"setup": {"condition": "service_completed_successfully"}}
    assert alert["restart"] == "unless-stopped"


def test_the_image_contains_the_alerts_stage() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    assert "COPY alerts ./alerts" in dockerfile
