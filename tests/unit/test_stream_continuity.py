"""The input-continuity rule: which offsets the consumer moved past without delivering them."""

from __future__ import annotations

from callstream.streams.continuity import EndOfPartitionCheck, InputContinuity, first_expected


def test_first_delivery_is_checked_against_the_lower_bound() -> None:
    # The commit moved past a hole: the recorded next offset is lower, and it counts.
    assert first_expected(recorded=100, group_start=160) == 100
    # After a SIGKILL the recorded offset can be ahead of the outputs; the commit is lower.
    assert first_expected(recorded=180, group_start=150) == 150
    assert first_expected(recorded=None, group_start=42) == 42


def test_a_hole_in_the_middle_of_a_run_is_found() -> None:
    continuity = InputContinuity()
    assert continuity.deliver("p0", 10, expected=10) == range(0)
    assert continuity.expected("p0") == 11
    assert continuity.deliver("p0", 11, expected=11) == range(0)
    # offsets 12..14 never delivered
    assert continuity.deliver("p0", 15, expected=12) == range(12, 15)
    assert continuity.expected("p0") == 16


def test_a_message_delivered_again_is_skipped_and_the_run_goes_on_where_it_was() -> None:
    continuity = InputContinuity()
    continuity.deliver("p0", 50, expected=50)
    assert continuity.deliver("p0", 40, expected=51) is None  # already processed
    assert continuity.expected("p0") == 51
    assert continuity.deliver("p0", 50, expected=51) is None
    assert continuity.deliver("p0", 51, expected=51) == range(0)
    assert continuity.deliver("p0", 54, expected=52) == range(52, 54)


def test_partitions_are_independent_and_forgotten_on_revocation() -> None:
    continuity = InputContinuity()
    continuity.deliver("p0", 5, expected=5)
    continuity.deliver("p1", 70, expected=70)
    assert (continuity.expected("p0"), continuity.expected("p1"), continuity.expected("p2")) == (6, 71, None)
    continuity.forget()
    assert continuity.expected("p0") is None
    assert continuity.expected("p1") is None


def test_input_left_at_a_partitions_end_counts_when_two_checks_in_a_row_see_it() -> None:
    check = EndOfPartitionCheck()
    assert not check.left_behind("p0", expected=600, end=600)  # nothing beyond
    # Input that has just arrived: the agent takes it before the next check, so nothing is fetched
    # twice (one CI run processed a message twice when a single check sought back to it).
    assert not check.left_behind("p0", expected=600, end=624)
    assert not check.left_behind("p0", expected=624, end=624)
    # Left behind: the same hole at two checks in a row.
    assert not check.left_behind("p0", expected=624, end=700)
    assert check.left_behind("p0", expected=624, end=700)
    assert not check.left_behind("p0", expected=624, end=700)  # sought back: a fresh sighting again
    check.left_behind("p1", expected=5, end=9)
    check.forget()
    assert not check.left_behind("p1", expected=5, end=9)
