"""Everything callstream touches in faust-streaming beyond its declared public surface, in one place.

faust's public consumer surface (faust.types.transports.ConsumerT) does not cover what the input
continuity guard and the window table need: marking skipped offsets done for the commit,
whether table recovery completed, and placing table keys by our own
partition function, and a producer flush that really waits for every message (see
`complete_flush`). Each is reached only through this module. `check()` runs at start and fails
loudly, naming the faust version, when any is missing: the pin in pyproject.toml
(faust-streaming >=0.15.3,<0.16) is the range this was tested with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from callstream.errors import CallstreamError, MissingExtraError

try:
    import faust
    from faust.streams import Stream
    from faust.tables.base import Collection
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
    from faust.transport.producer import Producer
except ImportError as exc:
    raise MissingExtraError("stream", "faust-streaming") from exc

TESTED_VERSIONS = ">=0.15.3,<0.16"


class FaustSurfaceError(CallstreamError):
    """This faust-streaming lacks something callstream relies on."""


def _missing(what: str) -> FaustSurfaceError:
    return FaustSurfaceError(
        f"faust-streaming {faust.__version__} has no {what}, which callstream relies on; "
        f"install a version in the tested range {TESTED_VERSIONS}"
    )


def check() -> None:
    """Fail at start, not mid-stream, if this faust lacks what callstream touches."""
    if "spinner" not in faust.Worker.__init__.__code__.co_names:
        raise _missing("Worker.spinner")
    for owner, name in (
        (Consumer, "_add_gap"),
        (Producer, "send_soon"),
        (Stream, "take_events"),
        (Collection, "partition_for_key"),
    ):
        if not callable(getattr(owner, name, None)):
            raise _missing(f"{owner.__module__}.{owner.__qualname__}.{name}")
    init_names = Consumer.__init__.__code__.co_names + Recovery.__init__.__code__.co_names
    for attribute in ("completed",):
        if attribute not in init_names:
            raise _missing(f"attribute {attribute!r} set at construction")


async def mark_done(app: faust.App, tp: Any, first: int, last: int) -> None:
    """Tell the consumer that offsets first..last of `tp` are processed (read directly, outside the
    agent), so that its commit can move past them: it waits for acks it would otherwise never get."""
    consumer: Any = app.consumer  # beyond ConsumerT: see the module docstring
    await consumer._add_gap(tp, first, last)


def recovery_completed(app: faust.App) -> bool:
    """Whether table recovery after the latest rebalance has finished."""
    tables: Any = app.tables
    return bool(tables.recovery.completed.is_set())


def place_keys(table: Any, partition_of: Callable[[str], int]) -> None:
    """Place a table's keys on changelog partitions by our function instead of faust's hash, so a
    key's changelog partition is the input partition that owns it, even when it is written
    outside the agent's iteration (after a batch from `take_events`)."""
    table.partition_for_key = partition_of


def forget_local(table: Any, partition_of: Callable[[str], int], owned: set[int]) -> int:
    """Remove the keys of partitions not `owned` from this worker's copy of a table, writing nothing
    to its changelog. faust's memory store forgets the keys it recovered for partitions the worker
    gave up, but never the keys the worker wrote itself: they stay in memory for good, and would be
    read as if current. Returns how many were removed."""
    store: Any = table.data  # the table's store, beyond CollectionT
    gone = [key for key in list(store.keys()) if partition_of(key) not in owned]
    for key in gone:
        del store[key]
    return len(gone)


def local_key_count(table: Any) -> int:
    """How many keys this worker's copy of a table holds (its store, not the changelog)."""
    store: Any = table.data
    return len(store)


def without_spinner(worker: faust.Worker) -> faust.Worker:
    """faust's worker draws a terminal spinner on its stdout whatever that is; callstream's workers
    report progress in structured log lines, so a log file gets no cursor escape codes."""
    worker.spinner = None
    return worker


def take_events(stream: Any, max_: int, within_s: float) -> Any:
    """Batches of events, acked only after the body that handles each batch returns."""
    return stream.take_events(max_, within=within_s)


class DeliveryFailed(CallstreamError):
    """A message the worker produced (an output or a table's changelog record) was not delivered."""


SETTLE_TIMEOUT_S = 300.0  # beyond any broker failover the tests and the docs expect


class DeliveryTracker:
    """Messages produced and not settled yet; `settle()` waits for those produced before it."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Future[Any]] = set()
        self.failures: list[str] = []

    def track(self, future: asyncio.Future[Any]) -> None:
        self.pending.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[Any]) -> None:
        self.pending.discard(future)
        if future.cancelled():
            self.failures.append("cancelled")
        elif future.exception() is not None:
            self.failures.append(repr(future.exception()))

    async def settle(
        self, waiting: list[asyncio.Future[Any]] | None = None, timeout_s: float = SETTLE_TIMEOUT_S
    ) -> None:
        """Wait until the `waiting` messages (by default, every one tracked so far) are delivered;
        raise if any message failed since the last call, or if some are still pending after
        `timeout_s` (a message queued in a producer that stopped would never settle). Messages
        produced meanwhile are not waited for: under steady load one is always in flight, and a
        flush must end."""
        waiting = list(self.pending) if waiting is None else waiting
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=timeout_s)
            if late:
                raise DeliveryFailed(f"{len(late)} messages not delivered within {timeout_s:g} s")
        if self.failures:
            reasons = "; ".join(self.failures[:5])
            count = len(self.failures)
            self.failures.clear()
            raise DeliveryFailed(f"{count} messages not delivered: {reasons}")


def complete_flush(app: faust.App) -> DeliveryTracker:
    """Make the producer's flush wait for every message produced so far, delivered or failed.

    faust commits input offsets right after `producer.flush()`, and flushes before it gives up
    partitions in a rebalance. In faust-streaming 0.15.3 that flush can return with table changelog
    records still queued: it drains its send buffer only while a message leaves it every 0.1 s
    (`ProducerBuffer.flush_atmost`). A busy worker then committed input whose table writes were
    not yet sent, and the partition's next owner recovered tables without them. And a message
    that fails after its hand-over is only logged by faust, so its commit went ahead.

    Here every message is tracked from the moment it is produced (queued for a changelog, or
    handed to the Kafka client) until it settles; `flush` waits for all of them and raises
    `DeliveryFailed` if any failed, which stops the commit: the input is processed again."""
    producer: Any = app.producer  # beyond ProducerT: see the module docstring
    tracker = DeliveryTracker()
    queue_for_send, hand_over, flush_client = producer.send_soon, producer.send, producer.flush

    def send_soon(message: Any) -> None:
        tracker.track(message)
        queue_for_send(message)

    async def send(*args: Any, **kwargs: Any) -> Any:
        delivery = await hand_over(*args, **kwargs)
        if isinstance(delivery, asyncio.Future):
            tracker.track(delivery)
        return delivery

    async def flush() -> None:
        produced = list(tracker.pending)  # what a commit after this flush covers
        await flush_client()
        await tracker.settle(produced)

    producer.send_soon, producer.send, producer.flush = send_soon, send, flush
    return tracker
