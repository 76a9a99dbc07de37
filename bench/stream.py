"""`callstream bench stream`: events/s of one stream worker against a plain loop and Quix Streams.

Three contenders read the same pre-produced raw topic (N synthetic events packed `--batch-size`
per message), one after the other, each as its own process with its own consumer group:

- stream: the real worker, `callstream stream` (faust-streaming; its agents consume through faust);
- limit: a plain confluent-kafka consume-enrich-produce loop doing the same per-event work
  (bench/stream_baselines.py), the practical limit of Python here;
- quix: an equivalent Quix Streams application (bench/stream_baselines.py).

One rule times all three, from outside, on what they write: an event counts as processed when it
is in the contender's enriched output and in its window aggregation. The clock starts when the
first enriched message appears (process start, group join and the price catalogue load are
excluded, and reported apart as `startup_s`) and stops when all N events are both enriched and
aggregated; rate = (N - events of that first message) / elapsed. Aggregation is read from each
contender's own output: the stream worker's latest one-minute per-model aggregates, the plain
loop's partials, and the rows Quix has passed to its window (a marker it publishes, since a
`.final()` window is silent until it closes). The enriched-only rate is reported too.

The contender's memory is sampled while it runs: peak, and when a third, two thirds and all of
the events were enriched; so is its CPU time (all threads) while timed. After it is stopped, its enriched
output is read again in full and its distinct event ids counted: no rate for work not done.

Prints progress on stderr and, as the last line on stdout, one JSON object with the figures.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.workdir import bench_workdir
from callstream import topics
from callstream.infra.processes import CLI, start_worker, stop_process
from callstream.progress import progress as progress_display
from callstream.settings import KafkaSettings
from callstream.topic_reader import iter_until_idle, reader_consumer

REPO = Path(__file__).resolve().parent.parent
CONTENDERS = ("stream", "limit", "quix")
EVENT_MARKER = b'"event_id":'
THIRDS = ((1, 3, "1/3"), (2, 3, "2/3"), (3, 3, "end"))
POLL_INTERVAL_S = 0.05  # output, memory and liveness are checked this often
RATE_PER_S = 200.0  # event-time density of the synthetic traffic

console = Console(stderr=True)


# -- pure parts ------------------------------------------------------------------------------------


def count_events(value: bytes | None) -> int:
    """Events in one enriched message (a JSON array of events, or one event) without parsing it.

    Every enriched event has exactly one top-level `event_id` key; inside a JSON string the marker's
    quotes are escaped, so the count is exact for the benchmark's own events.
    """
    return value.count(EVENT_MARKER) if value else 0


def steady_rate(total: int, first_message_events: int, first_at: float, done_at: float) -> float:
    """Events/s from the first output message to the last event: the first message's events were
    processed before the clock started, so they are not counted."""
    elapsed = done_at - first_at
    if elapsed <= 0:
        raise ValueError(f"no time elapsed between the first output and the last ({elapsed} s)")
    return (total - first_message_events) / elapsed


class StreamAggregates:
    """Events counted by the stream worker's windows: the sum of `requests` over the latest version
    of every one-minute per-model aggregate."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, int]] = {}  # doc_id -> (version, requests)
        self.total = 0
        self.late: int | None = None

    def update(self, value: bytes) -> None:
        doc = orjson.loads(value)
        if doc["dimension"] != "model" or doc["window_size"] != "1m":
            return
        previous = self.latest.get(doc["doc_id"])
        if previous is None or doc["version"] > previous[0]:
            self.total += doc["requests"] - (previous[1] if previous else 0)
            self.latest[doc["doc_id"]] = (doc["version"], doc["requests"])


class PlainPartials:
    """Events counted by the plain loop's partials: the sum over their one-minute per-model states."""

    def __init__(self) -> None:
        self.total = 0
        self.late: int | None = None

    def update(self, value: bytes) -> None:
        for key, wire in orjson.loads(value)["w"].items():
            if key.startswith("model|") and key.rsplit("|", 2)[1] == "1m":
                self.total += wire["n"]


class QuixRows:
    """Rows that reached the Quix window step, from the marker the Quix app publishes; `late`
    counts those its window dropped as later than the grace period."""

    def __init__(self) -> None:
        self.total = 0
        self.late: int | None = 0

    def update(self, value: bytes) -> None:
        doc = orjson.loads(value)
        if doc["rows"] >= self.total:
            self.total, self.late = doc["rows"], doc["late"]


Aggregation = StreamAggregates | PlainPartials | QuixRows


@dataclass
class RunResult:
    """One contender's run, as measured from outside."""

    name: str
    events: int
    events_per_s: float  # enriched and aggregated
    enriched_events_per_s: float  # enriched only
    startup_s: float  # process start -> first enriched message
    timed_s: float  # first enriched message -> every event enriched and aggregated
    cpu_s: float  # the process's CPU time (all threads) while timed
    peak_rss_mb: float
    rss_mb_at: dict[str, float] = field(default_factory=dict)  # when 1/3, 2/3 and all were enriched
    distinct_events: int = 0  # distinct event ids in its enriched output, counted after it stopped
    output_messages: int = 0
    aggregate_messages: int = 0
    late_events: int | None = None  # events its windows dropped as late (Quix only)
    exit_code: int | None = None


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median rate (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r.events_per_s)[(len(runs) - 1) // 2]


def summary(
    runs: dict[str, list[RunResult]], events: int, batch_size: int, broker: str, partitions: int
) -> dict[str, Any]:
    """The result object (the last line of output): median rates over rounds, peaks over rounds."""
    best = {name: median_run(runs[name]) for name in CONTENDERS}
    stream, limit, quix = best["stream"], best["limit"], best["quix"]
    ratio_to_limit = stream.events_per_s / limit.events_per_s
    ratio_to_quix = stream.events_per_s / quix.events_per_s
    rss_at = stream.rss_mb_at
    return {
        "events": events,
        "batch_size": batch_size,
        "partitions": partitions,
        "broker": broker,
        "events_per_s": round(stream.events_per_s),
        "limit_events_per_s": round(limit.events_per_s),
        "quix_events_per_s": round(quix.events_per_s),
        "ratio_to_limit": round(ratio_to_limit, 3),
        "ratio_to_quix": round(ratio_to_quix, 3),
        "target_met": ratio_to_limit >= 0.5 and ratio_to_quix > 1.0,
        "peak_rss_mb": round(max(r.peak_rss_mb for r in runs["stream"]), 1),
        "rss_mb_at": rss_at,
        "rss_growth_mb": round(rss_at["end"] - rss_at["1/3"], 1) if {"1/3", "end"} <= rss_at.keys() else None,
        "limit_peak_rss_mb": round(max(r.peak_rss_mb for r in runs["limit"]), 1),
        "quix_peak_rss_mb": round(max(r.peak_rss_mb for r in runs["quix"]), 1),
        "enriched_events_per_s": {name: round(best[name].enriched_events_per_s) for name in CONTENDERS},
        "events_per_cpu_s": {
            name: round(best[name].events_per_s * best[name].timed_s / best[name].cpu_s)
            for name in CONTENDERS
        },
        "startup_s": {name: round(best[name].startup_s, 2) for name in CONTENDERS},
        "quix_late_events": quix.late_events,
        "rounds": len(runs["stream"]),
        "runs": {name: [_rounded(asdict(r)) for r in runs[name]] for name in CONTENDERS},
        "timing": "first enriched message out -> every event enriched and aggregated, seen on the outputs",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _rounded(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in doc.items()}


# -- servers ---------------------------------------------------------------------------------------


@contextmanager
def _servers(engine: str, external: bool, workdir: Path) -> Iterator[tuple[KafkaSettings, str]]:
    if external:
        kafka = KafkaSettings()
        yield kafka, f"external ({kafka.bootstrap_servers})"
        return
    from callstream.infra import local_servers

    with local_servers.running(engine, workdir / engine) as srv:
        yield srv.kafka_settings(), f"{engine} engine ({srv.bootstrap_servers})"


# -- topics and input ------------------------------------------------------------------------------


def _create(kafka: KafkaSettings, names: list[str], partitions: int) -> None:
    from callstream.infra.setup import create_topics
    from callstream.topics import TopicSpec

    create_topics(kafka, specs=[TopicSpec(name, partitions) for name in names])


def pre_produce(kafka: KafkaSettings, events: int, batch_size: int, start: datetime) -> None:
    """The round's input: `events` synthetic calls in messages of `batch_size`, on their id's partition."""
    from callstream.producers.loadgen import publish
    from callstream.producers.synthetic import iter_events

    with progress_display(rate=True, console=console) as progress:
        task = progress.add_task("pre-produce raw events", total=events, rate="")
        report = publish(
            kafka,
            kafka.topic(topics.RAW),
            iter_events(events, seed=7, start=start, rate_per_s=RATE_PER_S),
            batch_size=batch_size,
            on_progress=lambda n: progress.advance(task, n),
        )
    if report.failed_messages or report.events != events:
        raise RuntimeError(f"pre-producing failed: {report.failed_messages} messages, {report.errors[:1]}")
    console.print(
        f"raw topic {kafka.topic(topics.RAW)}: {report.events:,} events in {report.messages:,} messages, "
        f"{report.bytes / 1e6:,.0f} MB (uncompressed)"
    )


# -- one contender ---------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    module: tuple[str, ...]  # how python runs it: ("-m", "callstream.cli") or a baseline module
    args: list[str]
    env: dict[str, str]
    enriched_topic: str  # its enriched events, counted
    aggregate_topic: str  # its window output (messages counted)
    progress_topic: str  # where its aggregation progress is read
    aggregation: Callable[[], Aggregation]


def _contenders(
    kafka: KafkaSettings, run_id: str, partitions: int, events: int, quix_grace_ms: int, workdir: Path
) -> list[Contender]:
    from callstream.infra.local_servers import free_port

    env = dict(os.environ) | {
        "CALLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CALLSTREAM_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "CALLSTREAM_KAFKA_RECEIVE_MESSAGE_MAX_BYTES": str(kafka.receive_message_max_bytes),
        "CALLSTREAM_STREAM_PARTITIONS": str(partitions),
        "PYTHONUNBUFFERED": "1",
        # the baselines run as `python -m bench.stream_baselines`: bench/ is not installed
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    raw = kafka.topic(topics.RAW)
    baseline = ("-m", "bench.stream_baselines")
    plain_enriched, plain_partials, _ = _bench_topics(kafka, "plain")
    quix_enriched, quix_windows, quix_progress = _bench_topics(kafka, "quix")
    return [
        Contender(
            "stream",
            CLI,
            ["stream", "--web-port", str(free_port())],
            env | {"CALLSTREAM_STREAM_APP_ID": f"{run_id}-stream"},
            kafka.topic(topics.ENRICHED),
            kafka.topic(topics.AGGREGATES),
            kafka.topic(topics.AGGREGATES),
            StreamAggregates,
        ),
        Contender(
            "limit",
            baseline,
            ["plain", raw, plain_enriched, plain_partials, f"{run_id}-plain"],
            env,
            plain_enriched,
            plain_partials,
            plain_partials,
            PlainPartials,
        ),
        Contender(
            "quix",
            baseline,
            [
                "quix",
                raw,
                quix_enriched,
                quix_windows,
                f"{run_id}-quix",
                str(workdir / "quix"),
                quix_progress,
                str(events),
                str(quix_grace_ms),
            ],
            env,
            quix_enriched,
            quix_windows,
            quix_progress,
            QuixRows,
        ),
    ]


def _bench_topics(kafka: KafkaSettings, name: str) -> tuple[str, str, str]:
    """A comparison app's enriched, aggregate and progress topics."""
    return (
        kafka.topic(f"bench.{name}.enriched"),
        kafka.topic(f"bench.{name}.aggregates"),
        kafka.topic(f"bench.{name}.progress"),
    )


class TopicTail:
    """Reads what is written to a topic, cheaply enough not to disturb what it measures.

    Only the high watermarks are polled; a partition is assigned just long enough to read what
    appeared, then unassigned. (A consumer left at the end of a noida-db topic polls in a busy loop,
    taking close to a core between client and broker; one paused and resumed here waited a second
    before fetching again.)
    """

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        from confluent_kafka import TopicPartition

        self.topic = topic
        self.consumer = reader_consumer(kafka, "observer")
        partitions = sorted(self.consumer.list_topics(topic, timeout=15).topics[topic].partitions)
        self.position = {
            p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)[0]
            for p in partitions
        }

    def poll(self, timeout_s: float = 30.0) -> list[bytes]:
        """Values written since the last poll, up to the high watermarks seen now."""
        from confluent_kafka import TopicPartition

        ends: dict[int, int] = {}
        for p, position in self.position.items():
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=15, cached=False
            )
            if high > position:
                ends[p] = high
        if not ends:
            return []
        behind = [TopicPartition(self.topic, p, self.position[p]) for p in ends]
        self.consumer.incremental_assign(behind)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {self.topic} up to its high watermarks {ends}")
                batch = self.consumer.consume(1000, 0.01)
                if not batch and not ends:
                    # drained: some Kafka-protocol servers report a high watermark behind their newest batch
                    break
                for message in batch:
                    if message.error():
                        continue
                    p = message.partition()
                    self.position[p] = message.offset() + 1
                    values.append(message.value() or b"")
                    if p in ends and self.position[p] >= ends[p]:
                        del ends[p]
        finally:
            self.consumer.incremental_unassign([TopicPartition(self.topic, tp.partition) for tp in behind])
        return values

    def close(self) -> None:
        self.consumer.close()


def measure(
    contender: Contender, kafka: KafkaSettings, events: int, workdir: Path, timeout_s: float
) -> RunResult:
    """Run one contender until every event is enriched and aggregated, timed from its outputs.

    Outputs are looked at every `POLL_INTERVAL_S`; the first and the last output are timed by the
    same poll rule, so its delay cancels out.
    """
    import psutil

    enriched = TopicTail(kafka, contender.enriched_topic)
    progress_tail = TopicTail(kafka, contender.progress_topic)
    aggregation = contender.aggregation()
    log_path = workdir / f"{contender.name}.log"
    started = time.monotonic()
    process = start_worker(contender.args, contender.env, log_path, module=contender.module, cwd=REPO)
    try:
        ps = psutil.Process(process.pid)
        counted = first_events = 0
        first_at: float | None = None
        first_cpu = 0.0
        enriched_at: float | None = None
        peak = 0
        rss_at: dict[str, float] = {}
        marks = list(THIRDS)
        deadline = started + timeout_s
        with progress_display(rate=True, console=console) as bars:
            enriched_bar = bars.add_task(f"{contender.name} enriched", total=events, rate="starting")
            aggregated_bar = bars.add_task(f"{contender.name} aggregated", total=events, rate="")
            while counted < events or aggregation.total < events:
                time.sleep(POLL_INTERVAL_S)
                now = time.monotonic()
                peak = max(peak, ps.memory_info().rss)
                cpu = ps.cpu_times()
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{contender.name} exited ({process.returncode}) after {counted:,} events; "
                        f"log: {_tail(log_path)}"
                    )
                if now > deadline:
                    raise TimeoutError(
                        f"{contender.name}: {counted:,} of {events:,} events enriched, "
                        f"{aggregation.total:,} aggregated in {timeout_s:.0f} s"
                    )
                n = sum(count_events(v) for v in enriched.poll())
                if n and first_at is None:
                    first_at, first_events, first_cpu = now, n, cpu.user + cpu.system
                counted += n
                if counted >= events and enriched_at is None:
                    enriched_at = now
                for value in progress_tail.poll():
                    aggregation.update(value)
                while marks and counted * marks[0][1] >= events * marks[0][0]:
                    rss = ps.memory_info().rss
                    peak = max(peak, rss)
                    rss_at[marks.pop(0)[2]] = round(rss / 2**20, 1)
                if first_at is not None and now > first_at:
                    rate = (counted - first_events) / (now - first_at)
                    bars.update(enriched_bar, completed=counted, rate=f"{rate:,.0f} events/s")
                    bars.update(aggregated_bar, completed=min(aggregation.total, events))
            done_at = now
            assert first_at is not None and enriched_at is not None
            if enriched_at <= first_at:
                raise RuntimeError(
                    f"{contender.name}: all {events:,} events appeared within one {POLL_INTERVAL_S} s poll, "
                    "too few to time; use more --events"
                )
            rate = steady_rate(counted, first_events, first_at, done_at)
            enriched_rate = steady_rate(counted, first_events, first_at, enriched_at)
            bars.update(enriched_bar, rate=f"{enriched_rate:,.0f} events/s")
            bars.update(aggregated_bar, rate=f"{rate:,.0f} events/s")
    finally:
        enriched.close()
        progress_tail.close()
        exit_code = stop_process(process)
    distinct, messages = _distinct_events(kafka, contender.enriched_topic)
    return RunResult(
        name=contender.name,
        events=counted,
        events_per_s=rate,
        enriched_events_per_s=enriched_rate,
        startup_s=first_at - started,
        timed_s=done_at - first_at,
        cpu_s=cpu.user + cpu.system - first_cpu,
        peak_rss_mb=round(peak / 2**20, 1),
        rss_mb_at=rss_at,
        distinct_events=distinct,
        output_messages=messages,
        aggregate_messages=_message_count(kafka, contender.aggregate_topic),
        late_events=aggregation.late,
        exit_code=exit_code,
    )


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:]


def _distinct_events(kafka: KafkaSettings, topic: str) -> tuple[int, int]:
    """Distinct event ids and messages in an enriched topic, read in full (outside the timing)."""
    ids: set[str] = set()
    messages = 0
    for message in iter_until_idle(kafka, topic, idle_s=3.0, timeout_s=None):
        value = message.value() or b""
        messages += 1
        doc = orjson.loads(value)
        for event in doc if isinstance(doc, list) else [doc]:
            ids.add(event["event_id"])
    return len(ids), messages


def _message_count(kafka: KafkaSettings, topic: str) -> int:
    """Messages in a topic, from its watermarks."""
    from confluent_kafka import TopicPartition

    consumer = reader_consumer(kafka)
    try:
        total = 0
        for partition in consumer.list_topics(topic, timeout=15).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            total += high - low
        return total
    finally:
        consumer.close()


# -- the command -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    events: int
    batch_size: int
    partitions: int
    rounds: int
    quix_grace_ms: int
    stream_env: dict[str, str]


def run_rounds(kafka_base: KafkaSettings, options: Options, workdir: Path) -> dict[str, list[RunResult]]:
    """Each round: fresh topics, the same input produced once, then the three contenders in turn."""
    from callstream.infra.setup import create_topics

    events, partitions, rounds = options.events, options.partitions, options.rounds
    runs: dict[str, list[RunResult]] = {name: [] for name in CONTENDERS}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=events / RATE_PER_S)
    timeout_s = 300 + events / 1000
    for round_no in range(rounds):
        run_id = f"bench{uuid.uuid4().hex[:8]}"
        kafka = kafka_base.model_copy(update={"topic_prefix": run_id})
        create_topics(kafka, partitions)
        _create(kafka, [t for name in ("plain", "quix") for t in _bench_topics(kafka, name)], partitions)
        console.rule(f"round {round_no + 1} of {rounds}: topic prefix {run_id}")
        pre_produce(kafka, events, options.batch_size, start)
        round_dir = workdir / run_id
        round_dir.mkdir()
        contenders = _contenders(kafka, run_id, partitions, events, options.quix_grace_ms, round_dir)
        # Each round starts with the next contender, so none always runs in the same slot of a
        # round on a machine whose load changes.
        shift = round_no % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            if contender.name == "stream":
                contender.env.update(options.stream_env)
            result = measure(contender, kafka, events, round_dir, timeout_s)
            if result.distinct_events != events:
                raise RuntimeError(
                    f"{contender.name} output holds {result.distinct_events:,} distinct events, "
                    f"expected {events:,}; log: {_tail(round_dir / (contender.name + '.log'))}"
                )
            console.print(
                f"{contender.name}: {result.events_per_s:,.0f} events/s over {result.timed_s:.1f} s "
                f"(startup {result.startup_s:.1f} s), peak RSS {result.peak_rss_mb:.0f} MB, "
                f"{result.distinct_events:,} distinct events in {result.output_messages:,} messages, "
                f"{result.aggregate_messages:,} aggregate messages"
            )
            runs[contender.name].append(result)
    return runs


def _print_table(result: dict[str, Any]) -> None:
    limit, quix = result["limit_events_per_s"], result["quix_events_per_s"]
    table = Table(
        title=f"stream: {result['events']:,} events, {result['batch_size']} per message, {result['broker']}"
    )
    for column in ("", "events/s", "vs limit", "vs quix", "startup s", "peak RSS MB"):
        table.add_column(column, justify="right" if column else "left")
    rows = (
        ("stream worker (faust)", result["events_per_s"], result["peak_rss_mb"], "stream"),
        ("plain confluent loop (limit)", limit, result["limit_peak_rss_mb"], "limit"),
        ("Quix Streams", quix, result["quix_peak_rss_mb"], "quix"),
    )
    for label, rate, rss, name in rows:
        table.add_row(
            label,
            f"{rate:,}",
            f"{rate / limit:.0%}",
            f"{rate / quix:.2f}x",
            f"{result['startup_s'][name]}",
            f"{rss}",
        )
    console.print(table)
    at = result["rss_mb_at"]
    console.print(
        f"stream worker RSS at 1/3, 2/3 and all of the events: {at.get('1/3')} / {at.get('2/3')} / "
        f"{at.get('end')} MB; target (>= 50% of the limit, faster than Quix) "
        f"{'met' if result['target_met'] else 'NOT met'}"
    )


def _core(events: int, batch_size: int) -> None:
    from bench.stream_core import measure

    with console.status(f"the stream core on {events:,} synthetic events"):
        result = measure(events, batch_size)
    table = Table(title="stream core, CPU microseconds per event")
    table.add_column("stage")
    table.add_column("us/event", justify="right")
    for stage, value in result["us_per_event"].items():
        table.add_row(stage, f"{value:.2f}")
    table.add_row("core (raw side)", f"{result['core_us_per_event']:.2f}")
    table.add_row("merge side", f"{result['merge_us_per_event']:.2f}")
    table.add_row("baseline: orjson.loads", f"{result['baseline_orjson_loads_us_per_event']:.2f}")
    console.print(table)
    console.print(
        f"{result['events_per_cpu_s']:,} events per CPU-second on the raw side; "
        f"{result['core_over_baseline']}x the baseline"
    )
    print(orjson.dumps(result).decode())


def command(
    events: int = typer.Option(
        300_000, min=1000, help="Events to pre-produce (each contender processes all)"
    ),
    batch_size: int = typer.Option(1000, min=1, help="Events per raw Kafka message"),
    partitions: int = typer.Option(6, min=1, help="Partitions of the raw and output topics"),
    rounds: int = typer.Option(
        1, min=1, help="Rounds (fresh topics, all three contenders); medians reported"
    ),
    engine: str = typer.Option(
        "embedded", help="Local servers to start: embedded (noida-db) or real (Apache Kafka; Java)"
    ),
    external: bool = typer.Option(False, help="Use the Kafka of CALLSTREAM_KAFKA_* instead of starting one"),
    quix_grace_s: float | None = typer.Option(
        None,
        help="Grace period of the Quix window (default: the input's event-time span, so that Quix "
        "windows every event as the stream worker does; see bench/stream_baselines.py)",
    ),
    stream_env: list[str] = typer.Option(
        [],
        help="KEY=VALUE for the stream worker's environment, e.g. CALLSTREAM_STREAM_DEDUP_HORIZON_MS=60000",
    ),
    keep_logs: bool = typer.Option(False, help="Keep the contenders' logs (their path is printed)"),
    core: bool = typer.Option(
        False,
        "--core",
        help="Only the pure core, per stage, in this process (no Kafka; bench/stream_core.py)",
    ),
) -> None:
    """Events/s of one stream worker vs a plain confluent-kafka loop (the limit) and Quix Streams."""
    if core:
        _core(events, batch_size)
        return
    if any("=" not in item for item in stream_env):
        raise typer.BadParameter("--stream-env takes KEY=VALUE")
    span_s = events / RATE_PER_S + 120
    options = Options(
        events=events,
        batch_size=batch_size,
        partitions=partitions,
        rounds=rounds,
        quix_grace_ms=round((span_s if quix_grace_s is None else quix_grace_s) * 1000),
        stream_env=dict(item.split("=", 1) for item in stream_env),
    )
    with bench_workdir("stream", keep_logs, console) as workdir:
        with _servers(engine, external, workdir) as (kafka, broker_name):
            console.print(f"broker: {broker_name}; work directory {workdir}")
            runs = run_rounds(kafka, options, workdir)
        result = summary(runs, events, batch_size, broker_name, partitions)
        result["quix_grace_s"] = options.quix_grace_ms / 1000
        result["stream_env"] = options.stream_env
    _print_table(result)
    typer.echo(orjson.dumps(result).decode())
