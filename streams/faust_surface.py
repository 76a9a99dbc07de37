"""Everything callstream touches in faust-streaming beyond its declared public surface, in one place.

faust's public consumer surface (faust.types.transports.ConsumerT) does not cover what the input
continuity guard and the window table need: marking skipped offsets done for the commit, the
commit read at assignment, whether table recovery completed, and placing table keys by our own
partition function. Each is reached only through this module. `check()` runs at start and fails
loudly, naming the faust version, when any is missing: the pin in pyproject.toml
(faust-streaming >=0.15.3,<0.16) is the range this was tested with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callstream.errors import CallstreamError, MissingExtraError

try:
    import faust
    from faust.streams import Stream
    from faust.tables.base import Collection
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
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
        (Stream, "take_events"),
        (Collection, "partition_for_key"),
    ):
        if not callable(getattr(owner, name, None)):
            raise _missing(f"{owner.__module__}.{owner.__qualname__}.{name}")
    init_names = Consumer.__init__.__code__.co_names + Recovery.__init__.__code__.co_names
    for attribute in ("_committed_offset", "completed"):
        if attribute not in init_names:
            raise _missing(f"attribute {attribute!r} set at construction")


async def mark_done(app: faust.App, tp: Any, first: int, last: int) -> None:
    """Tell the consumer that offsets first..last of `tp` are processed (read directly, outside the
    agent), so that its commit can move past them: it waits for acks it would otherwise never get."""
    consumer: Any = app.consumer  # beyond ConsumerT: see the module docstring
    await consumer._add_gap(tp, first, last)


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The group's commit for `tp` as the consumer read it when the partition was assigned."""
    consumer: Any = app.consumer
    offset = consumer._committed_offset[tp]
    return None if offset is None else int(offset)


def recovery_completed(app: faust.App) -> bool:
    """Whether table recovery after the latest rebalance has finished."""
    tables: Any = app.tables
    return bool(tables.recovery.completed.is_set())


def place_keys(table: Any, partition_of: Callable[[str], int]) -> None:
    """Place a table's keys on changelog partitions by our function instead of faust's hash, so a
    key's changelog partition is the input partition that owns it, even when it is written
    outside the agent's iteration (after a batch from `take_events`)."""
    table.partition_for_key = partition_of


def without_spinner(worker: faust.Worker) -> faust.Worker:
    """faust's worker draws a terminal spinner on its stdout whatever that is; callstream's workers
    report progress in structured log lines, so a log file gets no cursor escape codes."""
    worker.spinner = None
    return worker


def take_events(stream: Any, max_: int, within_s: float) -> Any:
    """Batches of events, acked only after the body that handles each batch returns."""
    return stream.take_events(max_, within=within_s)
