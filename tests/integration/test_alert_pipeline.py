"""The alert worker end to end on the local servers, with real receivers on loopback: live traffic
through the stream worker, an injected error burst on one model, notifications to a webhook,
Slack (an HTTP server) and e-mail (an SMTP server), the record in Elasticsearch through the sink,
a SIGKILL mid-incident, and the pipeline-health rules (dead letters, a stalled sink worker).

Ground truth is the traffic itself: which model the test made fail, and when.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from callstream.alerts.receiver import SmtpReceiver, WebhookReceiver
from callstream.infra.local_servers import LocalServers, free_port
from callstream.producers import synthetic
from callstream.producers.loadgen import publish
from callstream.settings import ElasticsearchSettings
from callstream.topic_reader import iter_to_end
from tests.alerting import LiveTraffic, alert_env, wait_for_log, webhook_events, write_rules
from tests.conftest import ServersControl
from tests.pipeline import Pipeline, log_events, new_pipeline, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ERROR_RULE = {
    "name": "error-rate",
    "type": "threshold",
    "metric": "error_rate",
    "op": ">",
    "threshold": 0.05,
    "window_minutes": 2,  # the default rule's 5 minutes, shortened so the test resolves sooner
    "min_requests": 20,
    "group_by": "model",
    "severity": "critical",
}


@pytest.fixture
def http() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.close()


@pytest.fixture
def pipeline(servers: LocalServers, tmp_path: Path) -> Iterator[Pipeline]:
    p = new_pipeline(servers, tmp_path)
    yield p
    p.stop_all()


def start_alert(pipeline: Pipeline, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = pipeline.start("alert", name="alert", **env)
    wait_for_log(pipeline, process, "alert state loaded", timeout_s=120)
    return process


def burst(traffic: LiveTraffic, model: str, seconds: float, share: float = 0.5) -> None:
    traffic.error_share[model] = share
    time.sleep(seconds)
    traffic.error_share[model] = 0.0


def test_an_error_burst_on_one_model_fires_once_for_it_and_resolves_once(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path
) -> None:
    smtp = SmtpReceiver().start()
    routes = {"oncall": {"webhook": True, "slack": {"channel": "#llm-oncall"}, "email": {}}}
    rules = write_rules(tmp_path / "rules.yaml", [ERROR_RULE | {"route": "oncall"}], routes)
    env = alert_env(pipeline, rules, http, smtp)
    pipeline.start_stream_worker()
    pipeline.start("sink", name="sink")
    alert = start_alert(pipeline, env)
    traffic = LiveTraffic(pipeline.kafka, seed=1).start()
    try:
        time.sleep(25)  # every model has calls in its windows, none failing
        burst(traffic, "gemini-2.5-flash", 25)
        assert http.wait(lambda r: ("firing", "gemini-2.5-flash") in webhook_events(r), 120), pipeline.logs()
        assert http.wait(lambda r: ("resolved", "gemini-2.5-flash") in webhook_events(r), 300), (
            pipeline.logs()
        )
        time.sleep(5)  # anything else that was coming has come
    finally:
        traffic.stop()
    smtp.close()

    # Ground truth: only gemini-2.5-flash ever failed.
    assert set(traffic.errors) == {"gemini-2.5-flash"} and len(traffic.errors["gemini-2.5-flash"]) > 10
    assert webhook_events(http) == [("firing", "gemini-2.5-flash"), ("resolved", "gemini-2.5-flash")]
    firing, resolved = [e for r in http.accepted("/webhook") for e in r.body["events"]]
    assert firing["event_id"].startswith("error-rate|model|gemini-2.5-flash#1.")
    assert firing["value"] > 0.05 and firing["details"]["requests"] >= 20
    assert resolved["fired_at"] == firing["fired_at"]
    slack = [r.body for r in http.accepted("/slack")]
    assert len(slack) == 2 and all(m["channel"] == "#llm-oncall" for m in slack)
    assert "[CRITICAL] error-rate firing for model=gemini-2.5-flash" in slack[0]["text"]
    assert "[RESOLVED] error-rate resolved for model=gemini-2.5-flash" in slack[1]["text"]
    mails = [(to, m["Subject"]) for _, to, m in smtp.messages]
    assert [to for to, _ in mails] == [["oncall@example.com"]] * 2
    assert "firing for model=gemini-2.5-flash" in mails[0][1] and "RESOLVED" in mails[1][1]

    # The record, through the sink: exactly these two events, under their own ids.
    es_settings = ElasticsearchSettings(url=pipeline.servers.es_url, index_prefix=pipeline.prefix)
    es = es_settings.client()

    def recorded() -> list[str]:
        es.indices.refresh(index=f"{pipeline.prefix}-alerts-*", allow_no_indices=True)
        hits = es.search(index=f"{pipeline.prefix}-alerts-*", size=100, allow_no_indices=True)["hits"]["hits"]
        return sorted(hit["_id"] for hit in hits)

    wait_for(lambda: len(recorded()) >= 2, 60, describe=lambda: f"{recorded()}{pipeline.logs()}")
    assert recorded() == sorted([firing["event_id"], resolved["event_id"]])
    es.close()

    listed = subprocess.run(
        [sys.executable, "-m", "callstream.cli", "alert", "list", "--since", "1h"],
        env=pipeline.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "open alerts (0)" in listed.stdout and "resolved" in listed.stdout
    assert "gemini-2.5-flash" in listed.stdout

    # Health and metrics of the worker.
    port = int(env["CALLSTREAM_ALERT_METRICS_PORT"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'callstream_alert_deliveries_total{outcome="delivered",target="webhook"} 2.0' in metrics
    assert 'callstream_alert_deliveries_total{outcome="delivered",target="email"} 2.0' in metrics
    assert 'callstream_alert_events_total{kind="firing",rule="error-rate"} 1.0' in metrics
    assert f'callstream_alert_consumer_lag_total_messages{{group="{pipeline.prefix}-stream"}}' in metrics
    assert alert.poll() is None


def test_sigkilled_mid_incident_the_restarted_worker_sends_no_duplicate(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path
) -> None:
    """Killed once after a firing was delivered and recorded, and once while another firing is
    owed to a receiver that refuses it: every event reaches the webhook exactly once."""
    rules = write_rules(tmp_path / "rules.yaml", [ERROR_RULE])
    # Static membership: noida-db never evicts a SIGKILLed member; the restart takes its place.
    env = alert_env(pipeline, rules, http, CALLSTREAM_ALERT_GROUP_INSTANCE_ID=f"{pipeline.prefix}-alert-1")
    pipeline.start_stream_worker()
    alert = start_alert(pipeline, env)
    traffic = LiveTraffic(pipeline.kafka, seed=2).start()
    try:
        time.sleep(25)
        burst(traffic, "gemini-2.5-flash", 20)
        assert http.wait(lambda r: ("firing", "gemini-2.5-flash") in webhook_events(r), 120), pipeline.logs()
        wait_for_log(pipeline, alert, "deliveries recorded")
        pipeline.stop(alert, signal.SIGKILL)
        alert = start_alert(pipeline, env)

        http.fail_next = 10**9  # the receiver is down: the next firing stays owed
        burst(traffic, "claude-sonnet-4-5", 20)
        wait_for(
            lambda: any(
                "claude-sonnet-4-5" in line["event_id"]
                for line in log_events(alert, "delivery failed, will retry")
            ),
            120,
            describe=pipeline.logs,
        )
        pipeline.stop(alert, signal.SIGKILL)
        http.fail_next = 0
        alert = start_alert(pipeline, env)

        for model in ("gemini-2.5-flash", "claude-sonnet-4-5"):
            assert http.wait(lambda r, m=model: ("resolved", m) in webhook_events(r), 300), pipeline.logs()
        time.sleep(5)
    finally:
        traffic.stop()

    assert set(traffic.errors) == {"gemini-2.5-flash", "claude-sonnet-4-5"}
    received = Counter(webhook_events(http))
    assert received == {
        ("firing", "gemini-2.5-flash"): 1,
        ("resolved", "gemini-2.5-flash"): 1,
        ("firing", "claude-sonnet-4-5"): 1,
        ("resolved", "claude-sonnet-4-5"): 1,
    }, webhook_events(http)
    ids = [e["event_id"] for r in http.accepted("/webhook") for e in r.body["events"]]
    assert len(ids) == len(set(ids)) == 4


def test_dead_letters_and_a_stalled_sink_worker_alert(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path, servers_control: ServersControl
) -> None:
    """Dead letters counted from the dead-letter topic's end offsets; a sink that stops committing
    while its lag grows (Elasticsearch is down) alerts, and resolves once it catches up."""
    rules = write_rules(
        tmp_path / "rules.yaml",
        [
            {
                "name": "dead-letters",
                "type": "dead_letters",
                "topics": ["stream"],
                "threshold": 1,
                "window_minutes": 5,
            },
            {"name": "stalled", "type": "consumer_stalled", "groups": ["sink"], "minutes": 0.5},
        ],
    )
    env = alert_env(pipeline, rules, http)
    pipeline.start_stream_worker()
    pipeline.start("sink", name="sink")
    alert = start_alert(pipeline, env)
    port = int(env["CALLSTREAM_ALERT_METRICS_PORT"])

    def sampled() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return "callstream_alert_deadletter_topic_end_offset{" in response.read().decode()

    wait_for(sampled, 60, describe=pipeline.logs)  # the worker knows where the topic ends now
    invalid = [bad for bad, _ in synthetic.invalid_inputs()]
    publish(pipeline.kafka, pipeline.topic("calls.raw"), invalid)
    assert http.wait(lambda r: ("firing", "stream") in webhook_events(r), 120), pipeline.logs()
    (dead,) = [e for r in http.accepted("/webhook") for e in r.body["events"] if e["rule"] == "dead-letters"]
    assert dead["value"] == len(invalid)  # each invalid input is one dead letter

    traffic = LiveTraffic(pipeline.kafka, seed=3).start()
    try:
        time.sleep(10)
        servers_control.stop("elasticsearch")  # the sink keeps its partitions, retries, commits nothing
        try:
            assert http.wait(lambda r: any(e["rule"] == "stalled" for _, e in r.events()), 120), (
                pipeline.logs()
            )
        finally:
            servers_control.start("elasticsearch")
        assert http.wait(
            lambda r: any(e["rule"] == "stalled" and e["kind"] == "resolved" for _, e in r.events()), 180
        ), pipeline.logs()
    finally:
        traffic.stop()
    stalled = [e for _, e in http.events() if e["rule"] == "stalled"]
    assert [e["kind"] for e in stalled] == ["firing", "resolved"]
    assert stalled[0]["details"]["group"] == f"{pipeline.prefix}-sink"
    assert stalled[0]["value"] > stalled[0]["threshold"]  # the lag grew over the period
    assert alert.poll() is None


def test_a_silence_set_from_the_cli_holds_a_firing_back_until_it_is_lifted(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path
) -> None:
    rule = {"name": "any-error", "type": "threshold", "metric": "errors", "op": ">=", "threshold": 1}
    rules = write_rules(tmp_path / "rules.yaml", [rule | {"window_minutes": 3, "group_by": "model"}])
    env = alert_env(pipeline, rules, http)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "callstream.cli", "alert", *args],
            env=pipeline.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    silence_id = cli(
        "silence", "any-error", "--key", "gpt-4.1", "--for", "1h", "--comment", "deploy"
    ).split()[1]
    assert silence_id.rstrip(":").startswith("s-")
    silence_id = silence_id.rstrip(":")
    assert silence_id in cli("silences")
    pipeline.start_stream_worker()
    start_alert(pipeline, env)
    traffic = LiveTraffic(pipeline.kafka, seed=4).start()
    try:
        time.sleep(10)
        traffic.error_share.update({"gpt-4.1": 0.5, "claude-sonnet-4-5": 0.5})
        assert http.wait(lambda r: ("firing", "claude-sonnet-4-5") in webhook_events(r), 120), pipeline.logs()
        time.sleep(5)
        assert ("firing", "gpt-4.1") not in webhook_events(http)  # silenced: recorded, not sent
        cli("unsilence", silence_id)
        assert http.wait(lambda r: ("firing", "gpt-4.1") in webhook_events(r), 60), pipeline.logs()
    finally:
        traffic.stop()
    assert set(traffic.errors) == {"gpt-4.1", "claude-sonnet-4-5"}
    assert Counter(webhook_events(http)) == {("firing", "claude-sonnet-4-5"): 1, ("firing", "gpt-4.1"): 1}
    records = [orjson.loads(m.value()) for m in iter_to_end(pipeline.kafka, pipeline.topic("alerts.events"))]
    gpt = [r for r in records if r["key"] == "gpt-4.1"]
    assert gpt[0]["silenced"] and not gpt[0]["notified"]  # the record says it was held back
    assert gpt[-1]["event_id"] == gpt[0]["event_id"] and gpt[-1]["notified"]  # then sent, same id


def test_two_workers_share_the_series_and_an_incident_still_fires_once(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path
) -> None:
    rules = write_rules(tmp_path / "rules.yaml", [ERROR_RULE])
    env = alert_env(pipeline, rules, http)
    pipeline.start_stream_worker()
    first = start_alert(pipeline, env)
    second = start_alert(
        pipeline,
        env
        | {"CALLSTREAM_ALERT_METRICS_PORT": str(free_port()), "CALLSTREAM_ALERT_WEB_PORT": str(free_port())},
    )
    admin = AdminClient(pipeline.kafka.confluent_config())
    series_topic = pipeline.topic("alerts.series")

    def split() -> list[int]:
        group = admin.describe_consumer_groups([env["CALLSTREAM_ALERT_APP_ID"]])[
            env["CALLSTREAM_ALERT_APP_ID"]
        ].result()
        return sorted(
            sum(1 for tp in member.assignment.topic_partitions if tp.topic == series_topic)
            for member in group.members
        )

    wait_for(lambda: split() == [3, 3], 120, describe=lambda: f"{split()}{pipeline.logs()}")
    traffic = LiveTraffic(pipeline.kafka, seed=5).start()
    try:
        time.sleep(20)
        burst(traffic, "claude-sonnet-4-5", 20)
        assert http.wait(lambda r: ("resolved", "claude-sonnet-4-5") in webhook_events(r), 300), (
            pipeline.logs()
        )
        time.sleep(5)
    finally:
        traffic.stop()
    assert set(traffic.errors) == {"claude-sonnet-4-5"}
    assert webhook_events(http) == [("firing", "claude-sonnet-4-5"), ("resolved", "claude-sonnet-4-5")]
    assert first.poll() is None and second.poll() is None


def test_a_notification_refused_for_good_is_dead_lettered_and_recorded_undelivered(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path
) -> None:
    rule = {"name": "any-error", "type": "threshold", "metric": "errors", "op": ">=", "threshold": 1}
    rules = write_rules(tmp_path / "rules.yaml", [rule | {"window_minutes": 3, "group_by": "model"}])
    token = "T0AAA/B0BBB/secret-token-xyz"
    env = alert_env(pipeline, rules, http, CALLSTREAM_ALERT_WEBHOOK_URL=f"{http.url}/services/{token}")
    http.fail_next, http.fail_status = 10**9, 404  # e.g. a deleted webhook; the body echoes the path
    pipeline.start_stream_worker()
    alert = start_alert(pipeline, env)
    traffic = LiveTraffic(pipeline.kafka, seed=6).start()
    try:
        time.sleep(5)
        traffic.error_share["gemini-2.5-flash"] = 1.0
        wait_for(lambda: log_events(alert, "notification dead-lettered"), 120, describe=pipeline.logs)
    finally:
        traffic.stop()
    letters = [
        orjson.loads(m.value()) for m in iter_to_end(pipeline.kafka, pipeline.topic("alerts.deadletter"))
    ]
    (letter,) = letters
    assert letter["stage"] == "alert.deliver"
    assert letter["reason"].startswith("webhook: gave up after 1 attempt(s): HTTP 404")
    assert "secret-token-xyz" not in orjson.dumps(letters).decode()
    assert "secret-token-xyz" not in alert.log_path.read_text()  # type: ignore[attr-defined]
    assert '"key":"gemini-2.5-flash"' in letter["original"]
    records = [orjson.loads(m.value()) for m in iter_to_end(pipeline.kafka, pipeline.topic("alerts.events"))]
    assert records[-1]["key"] == "gemini-2.5-flash" and records[-1]["undelivered"] == ["webhook"]


def test_workers_join_and_leave_while_the_webhook_refuses_and_the_incident_is_delivered_once(
    pipeline: Pipeline, http: WebhookReceiver, tmp_path: Path
) -> None:
    """Three alert workers: a third joins while the firing's delivery is being refused (retries
    pending at the rebalance), then the first leaves; once the webhook accepts again, it gets
    exactly one firing and one resolution: no worker delivers for series it gave up, and the new
    owner resumes the owed delivery instead of losing it."""
    rules = write_rules(tmp_path / "rules.yaml", [ERROR_RULE])
    # Retries every few seconds, and never given up while the test refuses them.
    env = alert_env(pipeline, rules, http) | {
        "CALLSTREAM_ALERT_RETRY_BACKOFF_MAX_MS": "5000",
        "CALLSTREAM_ALERT_DELIVERY_MAX_ATTEMPTS": "1000",
    }

    def own_ports() -> dict[str, str]:
        return {
            "CALLSTREAM_ALERT_METRICS_PORT": str(free_port()),
            "CALLSTREAM_ALERT_WEB_PORT": str(free_port()),
        }

    pipeline.start_stream_worker()
    first = start_alert(pipeline, env)
    second = start_alert(pipeline, env | own_ports())
    admin = AdminClient(pipeline.kafka.confluent_config())
    series_topic = pipeline.topic("alerts.series")
    group_id = env["CALLSTREAM_ALERT_APP_ID"]

    def split() -> list[int]:
        group = admin.describe_consumer_groups([group_id])[group_id].result()
        return sorted(
            sum(1 for tp in member.assignment.topic_partitions if tp.topic == series_topic)
            for member in group.members
        )

    wait_for(lambda: split() == [3, 3], 120, describe=lambda: f"{split()}{pipeline.logs()}")
    refusing = 1_000_000
    http.fail_next = refusing
    traffic = LiveTraffic(pipeline.kafka, seed=9).start()
    try:
        time.sleep(20)
        traffic.error_share["claude-sonnet-4-5"] = 0.5
        wait_for(lambda: http.fail_next < refusing, 180, describe=pipeline.logs)  # firing refused
        third = start_alert(pipeline, env | own_ports())
        wait_for(lambda: split() == [2, 2, 2], 120, describe=lambda: f"{split()}{pipeline.logs()}")
        assert pipeline.stop(first) == 0
        wait_for(lambda: split() == [3, 3], 120, describe=lambda: f"{split()}{pipeline.logs()}")
        traffic.error_share["claude-sonnet-4-5"] = 0.0
        assert webhook_events(http) == []  # everything so far was refused
        http.fail_next = 0
        assert http.wait(lambda r: ("resolved", "claude-sonnet-4-5") in webhook_events(r), 300), (
            pipeline.logs()
        )
        time.sleep(10)  # a duplicate from a former owner would arrive by now
    finally:
        traffic.stop()
    assert set(traffic.errors) == {"claude-sonnet-4-5"}
    assert webhook_events(http) == [("firing", "claude-sonnet-4-5"), ("resolved", "claude-sonnet-4-5")]
    ids = [event["event_id"] for received in http.accepted("/webhook") for event in received.body["events"]]
    assert len(ids) == len(set(ids)) == 2
    assert second.poll() is None and third.poll() is None, pipeline.logs()
