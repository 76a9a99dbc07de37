"""`callstream bench producer`: what recording a call costs the caller's thread.

Two timed regions are interleaved in one loop, so they share the machine's conditions:
- baseline: a trivial function standing in for the LLM call;
- instrumented: the same function inside `with recorder.call(...)`, setting usage, as a service
  would (the event really is published: local Kafka by default, with the background thread,
  batching and delivery reports all running).
Added time = instrumented - baseline, at the median and at p99. Calls are paced (`--rate`) like a
busy service rather than a tight loop, which would only measure how fast the queue can overflow.
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from callstream.settings import KafkaSettings


def _percentile(sorted_ns: list[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000.0


def _stand_in_call(messages: list[dict[str, str]]) -> int:
    """What the timed call does besides recording: a little work on its arguments."""
    return sum(len(m["content"]) for m in messages)


def measure(
    kafka: KafkaSettings, spool_dir: Path, calls: int, rate_per_s: float, warmup: int
) -> dict[str, Any]:
    from callstream.producers.recorder import CallRecorder
    from callstream.producers.settings import ProducerSettings

    recorder = CallRecorder(settings=ProducerSettings(spool_dir=spool_dir), kafka=kafka)
    messages = [{"role": "user", "content": "Where is my order #1234?"}]
    period_ns = int(1e9 / rate_per_s) if rate_per_s > 0 else 0
    baseline: list[int] = []
    instrumented: list[int] = []
    clock = time.perf_counter_ns
    try:
        next_at = clock()
        for i in range(warmup + calls):
            t0 = clock()
            _stand_in_call(messages)
            t1 = clock()
            with recorder.call("gpt-4.1", user_id="user-7") as call:
                _stand_in_call(messages)
                call.set_usage(input_tokens=812, output_tokens=95, cache_read_input_tokens=512)
            t2 = clock()
            if i >= warmup:
                baseline.append(t1 - t0)
                instrumented.append(t2 - t1)
            if period_ns:
                next_at += period_ns
                delay = next_at - clock()
                if delay > 0:
                    time.sleep(delay / 1e9)
        flushed = recorder.flush(60)
    finally:
        recorder.close()
    stats = recorder.stats()
    baseline.sort()
    instrumented.sort()
    base_median, base_p99 = _percentile(baseline, 0.5), _percentile(baseline, 0.99)
    inst_median, inst_p99 = _percentile(instrumented, 0.5), _percentile(instrumented, 0.99)
    return {
        "median_us": round(inst_median - base_median, 3),
        "p99_us": round(inst_p99 - base_p99, 3),
        "baseline_median_us": round(base_median, 3),
        "baseline_p99_us": round(base_p99, 3),
        "instrumented_median_us": round(inst_median, 3),
        "instrumented_p99_us": round(inst_p99, 3),
        "instrumented_max_us": round(instrumented[-1] / 1000.0, 1),
        "calls": calls,
        "rate_per_s": rate_per_s,
        "published": stats.published,
        "kafka_messages": stats.messages,
        "spooled": stats.spooled,
        "dropped": stats.dropped,
        "all_delivered": flushed and stats.published == warmup + calls,
        "target_met": inst_median - base_median < 20 and inst_p99 - base_p99 < 100,
    }


def command(
    calls: int = typer.Option(20_000, help="Timed calls (each once with and once without recording)"),
    rate: float = typer.Option(2_000.0, help="Calls per second (0 = back to back)"),
    warmup: int = typer.Option(1_000, help="Untimed calls first"),
    engine: str = typer.Option(
        "embedded", help="Local servers to start: embedded (noida-db) or real (Apache Kafka; Java)"
    ),
    external: bool = typer.Option(False, help="Use the Kafka of CALLSTREAM_KAFKA_* instead of starting one"),
) -> None:
    """Time a recorded call adds to the caller's thread, against the same call unrecorded."""
    from rich.console import Console
    from rich.table import Table

    from callstream.infra import local_servers
    from callstream.infra.setup import create_topics

    console = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="callstream-bench-producer-"))
    try:
        with contextlib.ExitStack() as stack:
            if external:
                kafka = KafkaSettings()
            else:
                kafka = stack.enter_context(local_servers.running(engine, workdir / engine)).kafka_settings()
            create_topics(kafka)
            console.print(
                f"timing {calls} calls at {rate:g}/s against Kafka at {kafka.bootstrap_servers} ..."
            )
            result = measure(kafka, workdir / "spool", calls, rate, warmup)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["broker"] = "external" if external else f"{engine} engine"
    table = Table(title="producer: time on the caller's thread (µs)")
    for column in ("", "median", "p99"):
        table.add_column(column)
    table.add_row(
        "baseline (unrecorded call)",
        f"{result['baseline_median_us']:.2f}",
        f"{result['baseline_p99_us']:.2f}",
    )
    table.add_row(
        "recorded call", f"{result['instrumented_median_us']:.2f}", f"{result['instrumented_p99_us']:.2f}"
    )
    table.add_row("added", f"{result['median_us']:.2f}", f"{result['p99_us']:.2f}")
    console.print(table)
    console.print(
        f"published {result['published']} events in {result['kafka_messages']} Kafka messages; "
        f"spooled {result['spooled']}, dropped {result['dropped']}; target (median < 20 µs, p99 < 100 µs) "
        f"{'met' if result['target_met'] else 'NOT met'}"
    )
    print(json.dumps(result))
