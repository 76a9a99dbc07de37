"""`callstream bench alert`: alert latency, from publishing the call that crosses a threshold to
the notification's arrival at a webhook, at a steady load.

On fresh local servers (`--engine embedded|real`) it runs a stream worker and an alert worker as separate
processes with their default settings, a webhook receiver in this process, and steady live
traffic (`--rate` calls/s over four models, event time = now). Then, every `--interval-s`, one
*trial*: a single raw message with `--errors` failed calls of a model never seen before
(`bench-<run>-<n>`), which crosses the bench rule (`errors >= N` over two minutes, per model) by
itself. A trial's latency is the time from handing that message to the producer (its delivery
confirmed) to the webhook request that carries the trial model's firing.

Baseline, measured in the same run: the stream's part, from the same instant to the Kafka
timestamp of the first aggregate update that holds all the trial's errors (the stream publishes
changed windows every `CALLSTREAM_STREAM_FLUSH_INTERVAL_MS`, 1 s by default). The alert worker's
own part is the difference.

Prints progress on stderr and, as the last line on stdout, one JSON object with the figures.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from callstream import topics
from callstream.alerts.receiver import WebhookReceiver
from callstream.infra import local_servers
from callstream.infra.processes import stop_process
from callstream.infra.setup import create_topics
from callstream.producers.contract import RawCallEvent, partition_for_event_id
from callstream.producers.loadgen import bulk_producer, partition_count
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_to_end

REPO = Path(__file__).resolve().parent.parent
LOAD_MODELS = ("gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash", "deepseek-v3.2")
console = Console(stderr=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1])."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_s": round(percentile(values, 0.50), 3),
        "p95_s": round(percentile(values, 0.95), 3),
        "max_s": round(max(values), 3),
        "mean_s": round(statistics.fmean(values), 3),
    }


def _call(event_id: str, model: str, failed: bool) -> RawCallEvent:
    return RawCallEvent(
        event_id=event_id,
        event_time=datetime.now(UTC),
        request_model=model,
        response_model=None if failed else model,
        input_tokens=0 if failed else 900,
        output_tokens=0 if failed else 250,
        duration_ms=650.0,
        status_code=500 if failed else 200,
    )


class SteadyLoad:
    """`rate` calls per second in ticks of 0.2 s, from a thread; trials go through the same producer."""

    def __init__(self, kafka: KafkaSettings, rate: float) -> None:
        self.kafka = kafka
        self.rate = rate
        self.producer = bulk_producer(kafka, **{"linger.ms": 0})
        self.topic = kafka.topic(topics.RAW)
        self.partitions = partition_count(self.producer, self.topic)
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, deliver what is queued, and let the producer go (before the servers do)."""
        self._stop.set()
        self._thread.join(10)
        self.producer.flush(30)
        del self.producer

    def _send(self, events: list[RawCallEvent]) -> None:
        batches: dict[int, list[Any]] = defaultdict(list)
        for event in events:
            batches[partition_for_event_id(event.event_id, self.partitions)].append(event.to_wire())
        with self._lock:
            for partition, items in batches.items():
                self.producer.produce(self.topic, value=orjson.dumps(items), partition=partition)
            self.producer.poll(0)

    def _run(self) -> None:
        tick, n, owed = 0.2, 0, 0.0
        while not self._stop.wait(tick):
            owed += self.rate * tick
            count, owed = int(owed), owed - int(owed)
            events = [
                _call(f"load-{n + i}", LOAD_MODELS[(n + i) % len(LOAD_MODELS)], False) for i in range(count)
            ]
            n += count
            self._send(events)
            self.sent += count

    def trial(self, model: str, errors: int) -> float:
        """One message of `errors` failed calls of `model`, on one partition; returns when it was
        confirmed by the broker minus nothing: the instant it was handed over, once delivered."""
        events = [_call(f"{model}-{i}", model, True) for i in range(errors)]
        partition = partition_for_event_id(events[0].event_id, self.partitions)
        delivered = threading.Event()
        with self._lock:
            started = time.time()
            self.producer.produce(
                self.topic,
                value=orjson.dumps([e.to_wire() for e in events]),
                partition=partition,
                on_delivery=lambda err, msg: delivered.set(),
            )
            self.producer.flush(10)
        if not delivered.is_set():
            raise RuntimeError(f"trial message for {model} was not delivered")
        return started


@contextmanager
def _servers(engine: str) -> Iterator[local_servers.LocalServers]:
    data_dir = Path(tempfile.mkdtemp(prefix="callstream-bench-alert-"))
    try:
        with local_servers.running(engine, data_dir / engine) as srv:
            yield srv
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callstream.cli", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def _wait_for_log(path: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: no '{text}'\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def aggregate_times(kafka: KafkaSettings, models: set[str], errors: int) -> dict[str, float]:
    """Per trial model: the Kafka timestamp of the first one-minute aggregate holding all its errors."""
    first: dict[str, float] = {}
    for message in iter_to_end(kafka, kafka.topic(topics.AGGREGATES), timeout_s=120):
        doc = orjson.loads(message.value())
        if doc["dimension"] != "model" or doc["window_size"] != "1m" or doc["key"] not in models:
            continue
        if doc["errors"] >= errors:
            at = message.timestamp()[1] / 1000
            first[doc["key"]] = min(first.get(doc["key"], at), at)
    return first


def command(
    trials: int = typer.Option(30, min=1, help="Threshold crossings to time"),
    interval_s: float = typer.Option(2.0, help="Seconds between trials"),
    rate: float = typer.Option(100.0, help="Steady load, calls per second (the tutorial: about 6)"),
    errors: int = typer.Option(20, min=1, help="Failed calls in a trial (the rule fires at this many)"),
    warmup_s: float = typer.Option(15.0, help="Steady load before the first trial"),
    engine: str = typer.Option(
        "embedded", help="Local servers to start: embedded (noida-db) or real (Kafka and Elasticsearch; Java)"
    ),
) -> None:
    """Alert latency (p50, p95) from the crossing call to the webhook, at a steady load."""
    run = uuid.uuid4().hex[:6]
    receiver = WebhookReceiver().start()
    work = Path(tempfile.mkdtemp(prefix="callstream-bench-alert-work-"))
    rules = work / "rules.yaml"
    rule = {
        "name": "bench-errors",
        "type": "threshold",
        "metric": "errors",
        "op": ">=",
        "threshold": errors,
        # Two minutes: a crossing just before a minute ends is still in the window when its update
        # arrives in the next minute (a one-minute window would then hold only the new minute).
        "window_minutes": 2,
        "group_by": "model",
        "realert_minutes": 0,
    }
    rules.write_text(orjson.dumps({"version": 1, "rules": [rule]}).decode())  # JSON is YAML
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with _servers(engine) as srv:
            kafka = srv.kafka_settings(topic_prefix=f"bench{run}")
            create_topics(kafka, 6)
            env = (
                dict(os.environ)
                | srv.env()
                | {
                    "CALLSTREAM_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
                    "CALLSTREAM_STREAM_APP_ID": f"bench{run}-stream",
                    "CALLSTREAM_STREAM_DATA_DIR": str(work / "stream"),
                    "CALLSTREAM_ALERT_APP_ID": f"bench{run}-alert",
                    "CALLSTREAM_ALERT_DATA_DIR": str(work / "alert"),
                    "CALLSTREAM_ALERT_RULES_FILE": str(rules),
                    "CALLSTREAM_ALERT_WEBHOOK_URL": f"{receiver.url}/webhook",
                    "CALLSTREAM_ALERT_METRICS_PORT": "0",
                    "CALLSTREAM_ALERT_WEB_PORT": str(local_servers.free_port()),
                    "PYTHONUNBUFFERED": "1",
                }
            )
            stream_log, alert_log = work / "stream.log", work / "alert.log"
            workers.append(_start(["stream", "--web-port", str(local_servers.free_port())], env, stream_log))
            workers.append(_start(["alert"], env, alert_log))
            _wait_for_log(alert_log, "alert state loaded", workers[1], 120)
            load = SteadyLoad(kafka, rate).start()
            console.print(f"steady load {rate:g} calls/s; warming up {warmup_s:g} s; logs in {work}")
            time.sleep(warmup_s)
            published: dict[str, float] = {}
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("trials", total=trials)
                for n in range(trials):
                    model = f"bench-{run}-{n:03d}"
                    published[model] = load.trial(model, errors)
                    progress.advance(task)
                    time.sleep(interval_s)
            arrived = receiver.wait(lambda r: len(_firings(r, published)) >= trials, 60)
            load.stop()
            sent = load.sent
            firings = _firings(receiver, published)
            stream_at = aggregate_times(kafka, set(published), errors)
    finally:
        for worker in workers:
            stop_process(worker, timeout_s=30)
        receiver.close()
    end_to_end = [firings[m] - published[m] for m in published if m in firings]
    stream_part = [stream_at[m] - published[m] for m in published if m in stream_at]
    alert_part = [firings[m] - stream_at[m] for m in published if m in firings and m in stream_at]
    duplicates = sum(1 for received in receiver.accepted("/webhook") for _ in received.body["events"]) - len(
        receiver.events()
    )
    result = {
        "benchmark": "alert",
        "engine": engine,
        "trials": trials,
        "fired": len(firings),
        "aggregates_found": len(stream_at),
        "all_fired": bool(arrived),
        "duplicates": duplicates,
        "steady_load_calls_per_s": rate,
        "calls_sent": sent,
        "crossing_to_notification": summary(end_to_end),
        "crossing_to_aggregate_baseline": summary(stream_part),
        "aggregate_to_notification": summary(alert_part),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if len(firings) == trials:
        shutil.rmtree(work, ignore_errors=True)
    else:
        console.print(f"[bold red]{trials - len(firings)} trials did not fire[/]; logs kept in {work}")
    e2e = summary(end_to_end)
    console.print(
        f"[bold]alert latency[/] p50 {e2e.get('p50_s')} s, p95 {e2e.get('p95_s')} s "
        f"over {len(end_to_end)} trials (stream part p50 {summary(stream_part).get('p50_s')} s)"
    )
    typer.echo(orjson.dumps(result).decode())


def _firings(receiver: WebhookReceiver, published: dict[str, float]) -> dict[str, float]:
    """Arrival time of each trial model's firing."""
    return {e["key"]: at for at, e in receiver.events() if e["kind"] == "firing" and e["key"] in published}
