"""Packing encoded events into Kafka messages: JSON arrays, bounded in events and bytes, one group
per raw-topic partition of the events' ids.

Pure functions, shared by the publisher (recorded calls), `callstream ingest` and the stream's
enriched output, so that every producer puts an event where the stream expects it
(`producers.contract.partition_for_event_id`) and no message exceeds what a broker accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from callstream.producers.contract import partition_for_event_id


@dataclass(frozen=True, slots=True)
class PackedMessage:
    """One Kafka message value: a JSON array of `count` encoded items, for `partition` (None: let
    the client choose, when the partition count is not known)."""

    partition: int | None
    payload: bytes
    count: int


def array_bytes(items: list[bytes]) -> int:
    """Size of `items` as one JSON array: brackets plus a comma between items."""
    return 2 + sum(len(item) for item in items) + max(0, len(items) - 1)


def split_into_arrays(
    items: Iterable[bytes], max_bytes: int, max_items: int | None = None
) -> Iterator[bytes]:
    """Encoded JSON values -> JSON arrays of at most `max_bytes` bytes and `max_items` items, in
    order, each as full as the limits allow. An item too large for any array travels alone (its
    array is then over `max_bytes`: the caller decides what to do with it)."""
    for payload, _ in counted_arrays(items, max_bytes, max_items):
        yield payload


def counted_arrays(
    items: Iterable[bytes], max_bytes: int, max_items: int | None = None
) -> Iterator[tuple[bytes, int]]:
    """`split_into_arrays`, with the number of items in each array."""
    if max_bytes < 3:
        raise ValueError(f"max_bytes must leave room for an item, got {max_bytes}")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    parts: list[bytes] = []
    size = 2
    for item in items:
        grown = size + len(item) + (1 if parts else 0)
        if parts and (grown > max_bytes or (max_items is not None and len(parts) >= max_items)):
            yield b"[" + b",".join(parts) + b"]", len(parts)
            parts, grown = [], 2 + len(item)
        parts.append(item)
        size = grown
    if parts:
        yield b"[" + b",".join(parts) + b"]", len(parts)


def pack_by_partition(
    events: Iterable[tuple[str, bytes]],
    partitions: int | None,
    max_bytes: int,
    max_items: int | None = None,
) -> list[PackedMessage]:
    """(event_id, encoded event) pairs -> messages, each holding only events of one partition
    (`partition_for_event_id`), in input order within a partition; partitions in order of first
    appearance. With `partitions` None, one group without a partition."""
    groups: dict[int | None, list[bytes]] = {}
    for event_id, encoded in events:
        partition = partition_for_event_id(event_id, partitions) if partitions else None
        groups.setdefault(partition, []).append(encoded)
    return [
        PackedMessage(partition, payload, count)
        for partition, encoded_events in groups.items()
        for payload, count in counted_arrays(encoded_events, max_bytes, max_items)
    ]
