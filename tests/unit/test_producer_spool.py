"""The durable spool: records survive, torn tails are skipped, size is bounded, segments are claimed once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from callstream.producers.settings import ProducerSettings
from callstream.producers.spool import (
    KIND_BATCH,
    KIND_DEADLETTER,
    OPEN_SUFFIX,
    Spool,
    decode_records,
    encode_record,
)
from callstream.settings import state_dir


def test_append_seal_claim_delete(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    assert spool.append(KIND_BATCH, b"[1,2]", 2)
    assert spool.append(KIND_DEADLETTER, b"{}", 1)
    assert spool.claim() is None  # the open segment is this writer's own
    spool.seal()
    segment = spool.claim()
    assert segment is not None
    assert [(r.kind, r.count, r.payload) for r in segment.records()] == [
        (KIND_BATCH, 2, b"[1,2]"),
        (KIND_DEADLETTER, 1, b"{}"),
    ]
    assert spool.claim() is None  # locked by the claim above
    segment.delete()
    assert not spool.has_segments()
    assert spool.size_bytes == 0


def test_segments_roll_over_and_come_back_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=100)
    for i in range(10):
        assert spool.append(KIND_BATCH, f"[{i}]".encode() * 10, 1)
    spool.seal()
    seen = []
    while (segment := spool.claim()) is not None:
        seen += [r.payload for r in segment.records()]
        segment.delete()
    assert seen == [f"[{i}]".encode() * 10 for i in range(10)]


def test_bounded_size_refuses_appends(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100, segment_max_bytes=4096)
    assert spool.append(KIND_BATCH, b"x" * 50, 1)
    assert not spool.append(KIND_BATCH, b"x" * 50, 1)


def test_torn_tail_is_skipped() -> None:
    data = encode_record(KIND_BATCH, b"[1]", 1) + encode_record(KIND_BATCH, b"[2]", 1)
    records, bad = decode_records(data[:-2])
    assert [r.payload for r in records] == [b"[1]"] and bad == len(data) - 2 - len(
        encode_record(KIND_BATCH, b"[1]", 1)
    )


def test_segment_left_open_by_a_dead_process_is_claimable(tmp_path: Path) -> None:
    orphan = tmp_path / ("00000000000000000001-999999-abcdef" + OPEN_SUFFIX)
    orphan.write_bytes(encode_record(KIND_BATCH, b"[42]", 1) + b"\xca")  # torn last record
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    assert spool.size_bytes == orphan.stat().st_size
    segment = spool.claim()
    assert segment is not None and [r.payload for r in segment.records()] == [b"[42]"]


def test_two_spools_on_one_directory_never_claim_the_same_segment(tmp_path: Path) -> None:
    writer = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    writer.append(KIND_BATCH, b"[1]", 1)
    writer.seal()
    a = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    b = Spool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    first = a.claim()
    assert first is not None
    assert b.claim() is None
    first.release()
    second = b.claim()
    assert second is not None and second.path == first.path


def test_spool_is_private(tmp_path: Path) -> None:
    loose = tmp_path / "state" / "spool"
    loose.mkdir(parents=True, mode=0o755)
    loose.chmod(0o755)
    old = loose / ("00000000000000000001-1-abcdef" + OPEN_SUFFIX)
    old.write_bytes(encode_record(KIND_BATCH, b"[1]", 1))
    old.chmod(0o644)
    spool = Spool(loose, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700  # an existing directory is tightened
    assert stat.S_IMODE(old.stat().st_mode) == 0o600  # and so are existing segments
    spool.append(KIND_BATCH, b"[2]", 1)
    spool.seal()
    assert {stat.S_IMODE(p.stat().st_mode) for p in loose.iterdir()} == {0o600}
    fresh = tmp_path / "a" / "b" / "spool"
    Spool(fresh, max_bytes=1 << 20, segment_max_bytes=1 << 16)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700  # created so, parents too
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700


def test_state_dir_default_is_absolute_and_follows_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLSTREAM_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir("spool") == tmp_path / "xdg" / "callstream" / "spool"
    assert ProducerSettings().spool_dir == tmp_path / "xdg" / "callstream" / "spool"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "callstream"
    monkeypatch.setenv("CALLSTREAM_STATE_DIR", "relative/state")
    assert state_dir("ingest").is_absolute() and state_dir("ingest").parts[-3:] == (
        "relative",
        "state",
        "ingest",
    )
    assert not (tmp_path / "xdg").exists()  # resolving a path creates nothing
