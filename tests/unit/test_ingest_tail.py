"""Following files: complete lines only, rotation and truncation, resume from a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from callstream.producers.tail import Checkpoint, FileTailer


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
