"""The fence around faust's internals: checked at start, failing loudly with the version."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer

from callstream.streams import faust_surface


def test_this_faust_has_everything_callstream_touches() -> None:
    faust_surface.check()


def test_a_missing_internal_fails_with_the_version_and_the_tested_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Consumer, "_add_gap")
    with pytest.raises(
        faust_surface.FaustSurfaceError, match=r"faust-streaming \S+ has no .*_add_gap.*>=0\.15\.3"
    ):
        faust_surface.check()


def test_the_flush_waits_for_every_message_produced_and_fails_on_a_lost_one() -> None:
    """faust's own flush returned with changelog records still queued; the commit then passed
    table writes never sent. After `complete_flush`, flush returns only when every message
    produced (queued or handed to the client) has settled, and raises if one failed."""
    producer = _flushed_completely("t-flush")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        queued_record = loop.create_future()
        producer.send_soon(queued_record)
        delivery = await producer.send("t", None, b"v", 0, None, None)
        flush = asyncio.ensure_future(producer.flush())
        await asyncio.sleep(0.05)
        assert not flush.done()  # neither has settled
        queued_record.set_result("metadata")
        await asyncio.sleep(0.05)
        assert not flush.done()  # the handed-over one is still in flight
        delivery.set_result("metadata")
        await asyncio.wait_for(flush, 1)

        lost = loop.create_future()
        producer.send_soon(lost)
        lost.set_exception(RuntimeError("broker gone"))
        with pytest.raises(faust_surface.DeliveryFailed, match="1 messages not delivered: RuntimeError"):
            await producer.flush()
        await producer.flush()  # a failure is reported once

    asyncio.run(scenario())


def _flushed_completely(app_id: str) -> Any:
    """A producer of an app (never started) whose own queue, hand-over and flush do nothing, so
    that a test settles its messages itself; with `complete_flush` applied."""
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", autodiscover=False)
    producer: Any = app.producer

    def queue(message: Any) -> None:
        return None

    async def hand_over(*_: Any, **__: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def flush() -> None:
        return None

    producer.send_soon, producer.send, producer.flush = queue, hand_over, flush
    faust_surface.complete_flush(app)
    return producer


def test_a_message_that_never_settles_fails_the_flush_after_the_timeout() -> None:
    async def scenario() -> None:
        tracker = faust_surface.DeliveryTracker()
        tracker.track(asyncio.get_running_loop().create_future())  # queued in a producer that stopped
        with pytest.raises(faust_surface.DeliveryFailed, match=r"1 messages not delivered within 0\.05 s"):
            await tracker.settle(timeout_s=0.05)

    asyncio.run(scenario())


def test_a_flush_under_steady_load_waits_only_for_what_was_produced_before_it() -> None:
    """Agents keep producing while faust commits: a flush that waited for the tracker to be empty
    would never end."""
    producer = _flushed_completely("t-steady")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        before = loop.create_future()
        producer.send_soon(before)
        flush = asyncio.ensure_future(producer.flush())
        await asyncio.sleep(0.01)
        producer.send_soon(loop.create_future())  # produced during the flush, still in flight
        before.set_result("metadata")
        await asyncio.wait_for(flush, 1)

    asyncio.run(scenario())


def test_forget_local_drops_only_the_keys_of_partitions_owned_elsewhere() -> None:
    app = faust.App("t-forget", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    table = app.Table("t", partitions=3, key_type=str, value_type=bytes)
    store: Any = table.data
    for key in ("0:10", "1:11", "2:12", "2:13"):
        store[key] = b"record"  # as this worker wrote them
    dropped = faust_surface.forget_local(table, lambda key: int(key.split(":")[0]), owned={0, 2})
    assert dropped == 1
    assert sorted(table.keys()) == ["0:10", "2:12", "2:13"]
