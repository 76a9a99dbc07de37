"""Following files: complete lines only, rotation and truncation, resume from a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from callstream.producers.tail import LONG_LINE_HEAD_BYTES, Checkpoint, FileTailer


def texts(lines: list) -> list[bytes]:  # type: ignore[type-arg]
    return [line.text for line in lines]


def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"a\nb")
    tailer = FileTailer(path)
    assert texts(tailer.read(10)) == [b"a"]
    with open(path, "ab") as f:
        f.write(b"c\n")
    lines = tailer.read(10)
    assert texts(lines) == [b"bc"] and lines[0].number == 2 and lines[0].position.offset == 5


def test_final_read_takes_an_unterminated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"a\r\nb")
    assert texts(FileTailer(path).read(10, final=True)) == [b"a", b"b"]


def test_rotation_while_following(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"1\n2\n")
    tailer = FileTailer(path)
    assert texts(tailer.read(10)) == [b"1", b"2"]
    with open(path, "ab") as f:
        f.write(b"3\n4")  # 4 is unterminated when the file is rotated
    os.rename(path, tmp_path / "api.log.1")
    path.write_bytes(b"5\n")
    assert texts(tailer.read(10)) == [b"3"]  # the old handle is read to its end first
    assert tailer.read(10) == []
    switched, leftover = tailer.check_rotation()
    assert switched and texts(leftover) == [b"4"]
    lines = tailer.read(10)
    assert texts(lines) == [b"5"] and lines[0].number == 1


def test_truncation_restarts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"aaaa\nbbbb\n")
    tailer = FileTailer(path)
    assert len(tailer.read(10)) == 2
    path.write_bytes(b"c\n")  # copytruncate, then a short write
    assert tailer.read(10) == []
    assert tailer.check_rotation() == (True, [])
    assert texts(tailer.read(10)) == [b"c"]


def test_resume_from_checkpoint_with_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"1\n2\n3\n")
    first = FileTailer(path)
    lines = first.read(2)
    checkpoint = Checkpoint(tmp_path / "cp.json")
    checkpoint.positions[str(path)] = lines[-1].position
    checkpoint.save()
    resumed = FileTailer(path, Checkpoint(tmp_path / "cp.json").positions[str(path)])
    lines = resumed.read(10)
    assert texts(lines) == [b"3"] and lines[0].number == 3


def test_resume_after_rotation_while_stopped_finishes_the_old_file_first(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"1\n2\n")
    position = FileTailer(path).read(1)[0].position
    os.rename(path, tmp_path / "api.log.1")
    path.write_bytes(b"3\n")
    tailer = FileTailer(path, position)
    assert texts(tailer.read(10)) == [b"2"]
    assert tailer.read(10) == []
    switched, leftover = tailer.check_rotation()
    assert switched and leftover == []
    assert texts(tailer.read(10)) == [b"3"]


def test_a_line_over_the_limit_comes_out_as_its_head(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"short\n" + b"L" * 5_000 + b"\nafter\n" + b"T" * 3_000)
    tailer = FileTailer(path, chunk_bytes=700, max_line_bytes=1_000)
    lines = tailer.read(10, final=True)
    assert [(line.text[:5], line.length, line.truncated) for line in lines] == [
        (b"short", 5, False),
        (b"LLLLL", 5_000, True),
        (b"after", 5, False),
        (b"TTTTT", 3_000, True),  # unterminated last line of a finished file
    ]
    head = lines[1].text  # what was read when the line crossed the limit, never more than the head bound
    assert head == b"L" * len(head) and 1_000 < len(head) <= LONG_LINE_HEAD_BYTES
    assert [line.start_offset for line in lines] == [0, 6, 5_007, 5_013]
    assert lines[-1].position.offset == path.stat().st_size


def test_a_long_line_still_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "api.log"
    path.write_bytes(b"x" * 3_000)
    tailer = FileTailer(path, chunk_bytes=1_000, max_line_bytes=1_000)
    assert tailer.read(10) == []  # skipping, not holding: nothing to emit yet
    with open(path, "ab") as f:
        f.write(b"y" * 2_000 + b"\nnext\n")
    lines = tailer.read(10)
    assert [(line.length, line.truncated) for line in lines] == [(5_000, True), (4, False)]
    assert lines[1].position.offset == 5_006


def test_line_ids_are_stable_across_restart_and_rotation(tmp_path: Path) -> None:
    from callstream.producers.gateway_log import line_event_id

    def ids(lines: list) -> list[str]:  # type: ignore[type-arg]
        return [line_event_id(line.text, line.position.inode, line.start_offset) for line in lines]

    path = tmp_path / "api.log"
    path.write_bytes(b"{}\n{}\n{}\n")
    once = ids(FileTailer(path).read(10))
    assert len(set(once)) == 3  # identical lines, different ids
    first = FileTailer(path)
    head = first.read(1)
    resumed = FileTailer(path, head[-1].position)  # a restart from the checkpoint
    assert ids(head) + ids(resumed.read(10)) == once
    os.rename(path, tmp_path / "api.log.1")  # rotated while stopped: finished from the old file
    path.write_bytes(b"{}\n")
    rotated = FileTailer(path, head[-1].position)
    assert ids(rotated.read(10)) == once[1:]
    assert rotated.read(10) == []
    rotated.check_rotation()
    assert ids(rotated.read(10))[0] not in once  # the new file's first line is a new line
