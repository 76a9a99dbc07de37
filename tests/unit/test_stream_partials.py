"""Partials: the wire format, and the merge that never counts a source offset twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callstream.streams.partials import (
    Partial,
    PartialError,
    WindowEntry,
    decode_partial,
    encode_partial,
    partials_by_partition,
    window_partition,
)
from callstream.streams.windows import WindowKey, WindowState


def state(requests: int, cost_pico: int = 0) -> WindowState:
    s = WindowState(provider="openai", model_family="gpt-4.1")
    s["requests"] = requests
    s["cost_pico"] = cost_pico
    return s


def test_partial_roundtrip_with_sums_beyond_64_bits() -> None:
    huge = 40 * 10**9 * 600_000_000  # 40 calls of 1e9 tokens at $600/Mtok: beyond int64 in pico-dollars
    partial = Partial("raw:3", 17, 1_000, {"model|m|1m|0": state(40, huge).to_wire()})
    back = decode_partial(encode_partial(partial))
    assert (back.source, back.offset, back.stream_time_ms, list(back.windows)) == (
        "raw:3",
        17,
        1_000,
        ["model|m|1m|0"],
    )
    assert WindowState.from_wire(back.windows["model|m|1m|0"])["cost_pico"] == huge


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"{",
        b"[]",
        b'{"src": "x", "o": 1, "st": 2}',
        b'{"src": 1, "o": 1, "st": 2, "w": {}}',
        b'{"src": "x", "o": "1", "st": 2, "w": {}}',
        b'{"src": "x", "o": 1, "st": 2, "w": {"k": 3}}',
    ],
)
def test_malformed_partials_raise_partial_error(value: bytes | None) -> None:
    with pytest.raises(PartialError):
        decode_partial(value)


def test_entry_skips_a_source_offset_it_merged_and_anything_older() -> None:
    entry = WindowEntry.new(state(0))
    assert entry.apply(state(2), "raw:0", 5)
    assert not entry.apply(state(2), "raw:0", 5)  # the same partial, re-delivered
    assert not entry.apply(state(2), "raw:0", 4)  # an older one
    assert entry.apply(state(3), "raw:1", 4)  # another source keeps its own offsets
    assert entry.apply(state(1), "raw:0", 6)
    assert (entry.state.requests, entry.version, entry.applied) == (6, 3, {"raw:0": 6, "raw:1": 4})
    back = WindowEntry.from_bytes(entry.to_bytes())
    assert (back.state.requests, back.version, back.applied) == (6, 3, entry.applied)
    assert (back.state.provider, back.state.model_family) == ("openai", "gpt-4.1")


def test_windows_are_grouped_by_their_owning_partition() -> None:
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    windows = {WindowKey("model", f"m{i}", "1m", start): state(1) for i in range(50)}
    grouped = partials_by_partition(windows, 6)
    assert list(grouped) == sorted(grouped)
    assert sum(len(v) for v in grouped.values()) == 50
    for partition, states in grouped.items():
        assert all(window_partition(key, 6) == partition for key in states)


EMPTY_DOCUMENT = "Input is a zero-length, empty document: line 1 column 1 (char 0)"  # orjson's words


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"src": "x", "o": 1, "st": 2, "w": []}', "'w' must map window keys to states"),
        (b'{"src": "x", "o": 1, "st": 2, "w": {"k": 3}}', "'w' must map window keys to states"),
        (b'{"src": 1, "o": 1, "st": 2, "w": {}}', "'src' must be a string, 'o' and 'st' integers"),
        (b'{"src": "x", "o": 1, "st": null, "w": {}}', "'src' must be a string, 'o' and 'st' integers"),
        (b'{"src": "x", "o": 1, "st": 2}', "not a partial aggregate: KeyError: 'w'"),
        (None, f"not a partial aggregate: JSONDecodeError: {EMPTY_DOCUMENT}"),
        (b"", f"not a partial aggregate: JSONDecodeError: {EMPTY_DOCUMENT}"),
    ],
)
def test_malformed_partials_say_what_is_wrong(value: bytes | None, reason: str) -> None:
    """The reason becomes the dead letter's: it names the part of the partial that is wrong."""
    with pytest.raises(PartialError) as caught:
        decode_partial(value)
    assert str(caught.value) == reason


def test_a_new_entry_is_empty_and_labelled_like_its_first_partial() -> None:
    entry = WindowEntry.new(state(4))
    assert (entry.state.provider, entry.state.model_family) == ("openai", "gpt-4.1")
    assert (entry.state.requests, entry.version, entry.applied) == (0, 0, {})


@pytest.mark.parametrize("offset", [0, 1])
def test_the_first_offsets_of_a_source_are_merged(offset: int) -> None:
    entry = WindowEntry.new(state(0))
    assert entry.apply(state(2), "raw:0", offset)
    assert (entry.state.requests, entry.applied) == (2, {"raw:0": offset})
