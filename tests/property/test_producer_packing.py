"""The packing core: every event exactly once, on its id's partition, in order, within the limits."""

from __future__ import annotations

import itertools
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.producers.packing import pack_by_partition, split_into_arrays

ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40)
events = st.lists(st.tuples(ids, st.integers(min_value=0, max_value=300)), max_size=120)


def encoded(event_id: str, padding: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "pad": "x" * padding})


def array_len(values: list[object]) -> int:
    return len(b"[" + b",".join(orjson.dumps(v) for v in values) + b"]")


def partition_of(event_id: str, partitions: int) -> int:
    """The raw topic's partition rule, written out independently: CRC-32 of the UTF-8 id, modulo."""
    return zlib.crc32(event_id.encode("utf-8")) % partitions


@settings(max_examples=300, deadline=None)
@given(
    events=events,
    partitions=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    max_bytes=st.integers(min_value=3, max_value=3_000),
    max_items=st.one_of(st.none(), st.integers(min_value=1, max_value=50)),
)
def test_pack_by_partition(
    events: list[tuple[str, int]], partitions: int | None, max_bytes: int, max_items: int | None
) -> None:
    pairs = [(event_id, encoded(event_id, pad)) for event_id, pad in events]
    messages = pack_by_partition(pairs, partitions, max_bytes, max_items)
    received: dict[int | None, list[bytes]] = {}
    for message in messages:
        items = orjson.loads(message.payload)
        assert len(items) == message.count >= 1
        assert len(message.payload) <= max_bytes or message.count == 1
        assert max_items is None or message.count <= max_items
        for item in items:
            expected = partition_of(item["event_id"], partitions) if partitions else None
            assert message.partition == expected
        received.setdefault(message.partition, []).extend(orjson.dumps(i) for i in items)
    wanted: dict[int | None, list[bytes]] = {}
    for event_id, item in pairs:
        wanted.setdefault(partition_of(event_id, partitions) if partitions else None, []).append(item)
    assert received == wanted  # every event exactly once, in input order within its partition


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.integers(min_value=0, max_value=200), max_size=100),
    max_bytes=st.integers(min_value=3, max_value=2_000),
    max_items=st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
)
def test_split_into_arrays_is_greedy_and_bounded(
    items: list[int], max_bytes: int, max_items: int | None
) -> None:
    values = [orjson.dumps("y" * n) for n in items]
    arrays = list(split_into_arrays(values, max_bytes, max_items))
    decoded = [orjson.loads(a) for a in arrays]
    assert [orjson.dumps(v) for array in decoded for v in array] == values
    for array, payload in zip(decoded, arrays, strict=True):
        assert len(payload) == array_len(array)
        assert len(payload) <= max_bytes or len(array) == 1
        assert max_items is None or len(array) <= max_items
    for current, following in itertools.pairwise(decoded):  # the next item did not fit
        full = max_items is not None and len(current) == max_items
        grown = array_len([*current, following[0]])
        assert full or grown > max_bytes


def test_limits_that_cannot_hold_an_item_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        list(split_into_arrays([b"1"], 2))
    with pytest.raises(ValueError, match="max_items"):
        list(split_into_arrays([b"1"], 100, 0))
    assert list(split_into_arrays([], 100)) == []
