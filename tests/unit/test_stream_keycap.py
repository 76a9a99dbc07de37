"""The per-day cap on distinct names: deterministic, snapshotted, bounded."""

from __future__ import annotations

from callstream.streams.keycap import DAY_MS, OTHER, KeyCap, parse_slot_key, slot_key


def test_names_beyond_the_cap_fall_into_other_per_dimension_and_day() -> None:
    cap = KeyCap({"model": 2})
    assert [cap.name("model", 5, n) for n in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]
    assert cap.bucketed == 2
    assert cap.name("model", DAY_MS + 5, "c") == "c"  # a new day starts empty
    assert cap.name("user", 5, "anyone") == "anyone"  # no limit set for this dimension


def test_snapshots_restore_the_same_decisions() -> None:
    cap = KeyCap({"model": 2})
    cap.name("model", 5, "a")
    cap.name("model", 5, "b")
    snapshots = cap.snapshots()
    assert snapshots == {("model", 0): b'["a","b"]'}
    assert cap.snapshots() == {}  # only what changed since
    restored = KeyCap({"model": 2})
    for slot, record in snapshots.items():
        restored.restore(slot, record)
    assert [restored.name("model", 7, n) for n in ("c", "b")] == [OTHER, "b"]


def test_expire_forgets_whole_days_only() -> None:
    cap = KeyCap({"model": 1})
    cap.name("model", 5, "a")
    cap.name("model", DAY_MS + 5, "b")
    assert cap.expire(DAY_MS - 1) == []
    assert cap.expire(DAY_MS) == [("model", 0)]
    assert list(cap.admitted) == [("model", DAY_MS)]


def test_slot_keys_roundtrip() -> None:
    assert parse_slot_key(slot_key(3, ("model", 86_400_000))) == (3, ("model", 86_400_000))


def test_a_day_expired_before_its_snapshot_was_taken_is_not_snapshotted() -> None:
    """A name admitted, then its whole day forgotten before the next snapshot: nothing to write."""
    cap = KeyCap({"model": 1})
    cap.name("model", 5, "a")
    assert cap.expire(DAY_MS) == [("model", 0)]
    assert cap.snapshots() == {}
