"""Helpers for the alert tests that run the pipeline against real servers: live traffic whose error
share per model can change while it runs (its own record of what it sent is the ground truth),
and the environment that points an alert worker at a test's topics, files and receivers."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Producer

from callstream import topics
from callstream.alerts.receiver import SmtpReceiver, WebhookReceiver
from callstream.infra.local_servers import free_port
from callstream.producers.contract import RawCallEvent, partition_for_event_id
from callstream.producers.loadgen import bulk_producer, partition_count
from callstream.settings import KafkaSettings
from tests.pipeline import Pipeline, log_events, wait_for

MODELS = ("gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash")


@dataclass
class LiveTraffic:
    """`per_tick` calls every `tick_s`, round robin over `models`, event time = now."""

    kafka: KafkaSettings
    models: tuple[str, ...] = MODELS
    per_tick: int = 12
    tick_s: float = 0.5
    seed: int = 0
    error_share: dict[str, float] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # model -> times
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LiveTraffic:
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        producer: Producer = bulk_producer(self.kafka, **{"linger.ms": 5})
        topic = self.kafka.topic(topics.RAW)
        partitions = partition_count(producer, topic)
        rng = random.Random(self.seed)
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            batches: dict[int, list[Any]] = defaultdict(list)
            now = datetime.now(UTC)
            for i in range(self.per_tick):
                model = self.models[i % len(self.models)]
                failed = rng.random() < self.error_share.get(model, 0.0)
                n += 1
                event = RawCallEvent(
                    event_id=f"live-{self.seed}-{n}",
                    event_time=now,
                    request_model=model,
                    response_model=None if failed else model,
                    input_tokens=0 if failed else 800,
                    output_tokens=0 if failed else 200,
                    duration_ms=700.0,
                    status_code=500 if failed else 200,
                    service_name="support-bot",
                )
                self.sent[model] += 1
                if failed:
                    self.errors[model].append(now.timestamp())
                batches[partition_for_event_id(event.event_id, partitions)].append(event.to_wire())
            for partition, items in batches.items():
                producer.produce(topic, value=orjson.dumps(items), partition=partition)
            producer.poll(0)
            self._stop.wait(max(0.0, self.tick_s - (time.monotonic() - started)))
        producer.flush(30)


def write_rules(path: Path, rules: list[dict[str, Any]], routes: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "routes": routes or {}, "rules": rules}, sort_keys=False))
    return path


def write_budgets(path: Path, timezone: str, budgets: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"timezone": timezone, "budgets": budgets}, sort_keys=False))
    return path


def alert_env(
    pipeline: Pipeline,
    rules: Path,
    http: WebhookReceiver | None = None,
    smtp: SmtpReceiver | None = None,
    budgets: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for `callstream alert` in this pipeline: its own app id and data directory,
    the test's rules, receivers on loopback, and quick pipeline sampling."""
    env = {
        "CALLSTREAM_ALERT_APP_ID": f"{pipeline.prefix}-alert",
        "CALLSTREAM_ALERT_RULES_FILE": str(rules),
        "CALLSTREAM_ALERT_DATA_DIR": str((pipeline.log_dir or Path("/tmp")) / "alert-data"),
        "CALLSTREAM_ALERT_METRICS_PORT": str(free_port()),
        "CALLSTREAM_ALERT_WEB_PORT": str(free_port()),
        "CALLSTREAM_ALERT_WATCH_INTERVAL_S": "2",
        "CALLSTREAM_ALERT_EVALUATE_INTERVAL_S": "1",
        "CALLSTREAM_ALERT_RETRY_BACKOFF_MIN_MS": "300",
        "CALLSTREAM_ALERT_RETRY_BACKOFF_MAX_MS": "2000",
        "CALLSTREAM_ALERT_DELIVERY_MAX_ATTEMPTS": "1000",
    }
    if http is not None:
        env["CALLSTREAM_ALERT_WEBHOOK_URL"] = f"{http.url}/webhook"
        env["CALLSTREAM_ALERT_SLACK_WEBHOOK_URL"] = f"{http.url}/slack"
    if smtp is not None:
        env |= {
            "CALLSTREAM_ALERT_SMTP_HOST": smtp.host,
            "CALLSTREAM_ALERT_SMTP_PORT": str(smtp.port),
            "CALLSTREAM_ALERT_SMTP_STARTTLS": "false",
            "CALLSTREAM_ALERT_EMAIL_FROM": "callstream@example.com",
            "CALLSTREAM_ALERT_EMAIL_TO": "oncall@example.com",
        }
    if budgets is not None:
        env["CALLSTREAM_BUDGETS_FILE"] = str(budgets)
    return env | extra


def wait_for_log(
    pipeline: Pipeline, process: subprocess.Popen[bytes], event: str, timeout_s: float = 120
) -> None:
    wait_for(
        lambda: log_events(process, event) or process.poll() is not None,
        timeout_s,
        0.2,
        describe=lambda: f"no '{event}' in the log{pipeline.logs()}",
    )
    assert process.poll() is None, f"the worker exited{pipeline.logs()}"


def webhook_events(http: WebhookReceiver) -> list[tuple[str, str]]:
    """(kind, key) of every event the webhook accepted, in arrival order, repeats included."""
    return [
        (event["kind"], event["key"])
        for received in http.accepted("/webhook")
        for event in received.body["events"]
    ]
