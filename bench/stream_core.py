"""`callstream bench stream --core`: what the stream's pure core costs per event, stage by stage.

No Kafka: synthetic events packed `batch_size` per raw message go through `RawProcessor`'s own
stages (streams/process.py) in the order `process` calls them, each timed with the thread's CPU
clock over all messages, then through the merge side (decode each partial, decode each of its
window states, merge it into its window entry, encode the entry as the table and the aggregate
would). The baseline, measured in the same run, is `orjson.loads` of the same raw messages: the
least any consumer of this input pays. Figures are microseconds of CPU per event; the ratio says
how many such baselines the core costs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from callstream.producers import synthetic
from callstream.producers.contract import encode_events
from callstream.streams.catalogue import load_catalogue
from callstream.streams.clock import PartitionClock
from callstream.streams.dedup import DedupIndex
from callstream.streams.keycap import KeyCap
from callstream.streams.partials import WindowEntry, decode_partial
from callstream.streams.process import Outcome, PartitionState, RawInput, RawProcessor
from callstream.streams.settings import StreamSettings
from callstream.streams.windows import WindowKey, WindowState

STAGES = ("decode", "bounds+dedup", "enrich", "pack", "fold", "partials")
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass
class CoreTimes:
    """CPU seconds per stage, summed over the messages."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def timed(self, stage: str, step: Callable[..., Any], *args: Any) -> Any:
        started = time.thread_time()
        result = step(*args)
        self.seconds[stage] += time.thread_time() - started
        return result


def raw_messages(events: int, batch_size: int, seed: int) -> list[bytes]:
    generated = synthetic.generate(events, seed=seed, start=START, rate_per_s=200.0)
    return [encode_events(generated[i : i + batch_size]) for i in range(0, len(generated), batch_size)]


def measure(events: int = 30_000, batch_size: int = 1000, seed: int = 7) -> dict[str, Any]:
    """Per-stage CPU microseconds per event of the raw side and the merge side, and the baseline."""
    settings = StreamSettings(max_event_age_ms=3650 * 86_400_000)
    processor = RawProcessor(
        load_catalogue(settings),
        1,
        settings.grace_ms,
        settings.event_time_bounds(),
        settings.enriched_max_bytes,
    )
    messages = raw_messages(events, batch_size, seed)
    state = PartitionState(
        PartitionClock(), DedupIndex(settings.dedup_horizon_ms), KeyCap(settings.name_caps())
    )
    times = CoreTimes()
    partials: list[bytes] = []
    published = int(time.time() * 1000)
    for offset, value in enumerate(messages):
        raw = RawInput("bench.raw", 0, offset, value, published)
        out = Outcome()
        valid = times.timed("decode", processor.decode, raw, out)
        fresh = times.timed("bounds+dedup", _bounds_and_dedup, processor, valid, state, raw, out)
        docs = times.timed("enrich", processor.enrich_events, fresh, state.clock, out)
        times.timed("pack", processor.pack, docs)
        windows = times.timed("fold", processor.fold, docs, state.keycap)
        encoded = times.timed("partials", processor.partials, windows, state, raw)
        partials.extend(encoded.values())
        state.dedup.expire(state.clock.stream_time_ms)
        state.clock.next_offset = offset + 1
    merge_s = _merge(partials)
    started = time.thread_time()
    for value in messages:
        orjson.loads(value)
    baseline_s = time.thread_time() - started
    per_event = {stage: round(times.seconds[stage] / events * 1e6, 2) for stage in STAGES}
    core = round(sum(per_event.values()), 2)
    baseline = baseline_s / events * 1e6
    return {
        "events": events,
        "batch_size": batch_size,
        "us_per_event": per_event,
        "core_us_per_event": core,
        "events_per_cpu_s": round(1e6 / core) if core else None,
        "merge_us_per_event": round(merge_s / events * 1e6, 2),
        "partials": len(partials),
        "baseline_orjson_loads_us_per_event": round(baseline, 2),
        "core_over_baseline": round(core / baseline, 1) if baseline else None,
    }


def _bounds_and_dedup(
    processor: RawProcessor, valid: Any, state: PartitionState, raw: RawInput, out: Outcome
) -> Any:
    return processor.deduplicate(processor.bound(valid, raw, out), state, raw, out)


def _merge(partials: list[bytes]) -> float:
    """CPU seconds the merge side spends on `partials`: decode, merge, encode for table and topic."""
    entries: dict[str, WindowEntry] = {}
    started = time.thread_time()
    for value in partials:
        partial = decode_partial(value)
        changed = []
        for key, wire in partial.windows.items():
            state = WindowState.from_wire(wire)
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = WindowEntry.new(state)
            if entry.apply(state, partial.source, partial.offset):
                changed.append(key)
        for key in changed:
            entry = entries[key]
            entry.to_bytes()
            orjson.dumps(entry.state.to_aggregate(WindowKey.decode(key), entry.version))
    return time.thread_time() - started
