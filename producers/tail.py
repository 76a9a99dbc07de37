"""Read complete lines from a growing log file, across rotation and truncation, with positions
that can be checkpointed and resumed.

A position names the file by (device, inode), not only by path, so that a restart after a
rotation (`api.log` renamed to `api.log.1`, a new `api.log` created) first finishes the rotated
file from the saved offset, then reads the new one from its start: no gap, no duplicate. A file
that shrank below the saved offset was truncated (copytruncate) and is read again from 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from callstream import logs

log = logs.get(__name__)


@dataclass(frozen=True)
class FilePosition:
    dev: int
    inode: int
    offset: int  # bytes consumed
    line: int  # lines consumed


@dataclass(frozen=True)
class Line:
    path: str  # the followed path (the checkpoint key), even while reading its rotated predecessor
    number: int  # 1-based, within the physical file
    text: bytes  # without the newline
    position: FilePosition  # after this line
    source: str  # the physical file the line came from


class Checkpoint:
    """Positions per followed path, written atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.positions: dict[str, FilePosition] = {}
        if path.exists():
            doc = json.loads(path.read_text())
            self.positions = {key: FilePosition(**value) for key, value in doc.get("files", {}).items()}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"version": 1, "files": {k: asdict(v) for k, v in self.positions.items()}}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _find_inode(directory: Path, dev: int, inode: int) -> Path | None:
    try:
        for candidate in directory.iterdir():
            try:
                st = candidate.stat()
            except OSError:
                continue
            if st.st_ino == inode and st.st_dev == dev:
                return candidate
    except OSError:
        return None
    return None


class FileTailer:
    """Complete lines of one followed path, from a saved position on."""

    def __init__(self, path: Path, position: FilePosition | None = None, chunk_bytes: int = 1 << 20) -> None:
        self.path = path
        self.key = str(path)
        self.chunk_bytes = chunk_bytes
        self._file: BinaryIO | None = None
        self._source = ""
        self._dev = self._inode = 0
        self._offset = 0
        self._line = 0
        self._buffer = b""
        self._rotated_pending: list[tuple[Path, FilePosition]] = []
        self._resume(position)

    def _resume(self, position: FilePosition | None) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if (
            position is not None
            and st is not None
            and (st.st_dev, st.st_ino) == (position.dev, position.inode)
        ):
            if st.st_size >= position.offset:
                self._open(self.path, position.offset, position.line)
                return
            log.warning("file shrank below the checkpoint: truncated, reading from the start", path=self.key)
        elif position is not None:
            rotated = _find_inode(self.path.parent, position.dev, position.inode)
            if rotated is not None:
                log.info(
                    "file was rotated while stopped: finishing the old one first",
                    path=self.key,
                    old=str(rotated),
                )
                self._rotated_pending.append((rotated, position))
            else:
                log.warning("checkpointed file is gone: lines after the checkpoint are lost", path=self.key)
        if self._rotated_pending:
            rotated, pos = self._rotated_pending.pop()
            self._open(rotated, pos.offset, pos.line)
        elif st is not None:
            self._open(self.path, 0, 0)

    def _open(self, source: Path, offset: int, line: int) -> None:
        if self._file is not None:
            self._file.close()
        try:
            self._file = open(source, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            self._file = None
            return
        st = os.fstat(self._file.fileno())
        self._dev, self._inode = st.st_dev, st.st_ino
        self._file.seek(offset)
        self._offset, self._line, self._buffer = offset, line, b""
        self._source = str(source)

    @property
    def position(self) -> FilePosition | None:
        if self._file is None:
            return None
        return FilePosition(self._dev, self._inode, self._offset, self._line)

    def size_remaining(self) -> int:
        if self._file is None:
            return 0
        return max(0, os.fstat(self._file.fileno()).st_size - self._offset)

    def read(self, max_lines: int, final: bool = False) -> list[Line]:
        """Up to max_lines complete lines. With `final`, a last line without newline counts too
        (a finished file); otherwise it waits for its newline (a file still being written)."""
        if self._file is None:
            self._reopen_if_created()
            if self._file is None:
                return []
        lines: list[Line] = []
        while len(lines) < max_lines:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                chunk = self._file.read(self.chunk_bytes)
                if chunk:
                    self._buffer += chunk
                    continue
                if final and self._buffer:
                    lines.append(self._emit(self._buffer, len(self._buffer)))
                break
            lines.append(self._emit(self._buffer[:newline], newline + 1))
        return lines

    def _emit(self, text: bytes, consumed: int) -> Line:
        self._buffer = self._buffer[consumed:]
        self._offset += consumed
        self._line += 1
        if text.endswith(b"\r"):
            text = text[:-1]
        position = FilePosition(self._dev, self._inode, self._offset, self._line)
        return Line(self.key, self._line, text, position, self._source)

    def _reopen_if_created(self) -> None:
        if self.path.exists():
            self._open(self.path, 0, 0)

    def check_rotation(self) -> tuple[bool, list[Line]]:
        """At EOF: switch to a new file at the path (rotation) or restart a truncated one.

        Returns whether it switched, and the unterminated last line of the old file, if any: once a
        file is rotated away nothing more will complete that line. Call only after read() came back
        short, so that the old file is fully consumed.
        """
        if self._file is None:
            self._reopen_if_created()
            return self._file is not None, []
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False, []  # rotated away and not yet re-created: keep the old handle until it is
        if (st.st_dev, st.st_ino) != (self._dev, self._inode):
            leftover = self.read(1, final=True) if self._buffer else []
            log.info("file rotated: following the new one", path=self.key, old=self._source)
            self._open(self.path, 0, 0)
            return True, leftover
        if st.st_size < self._offset:
            log.warning("file truncated: reading from the start", path=self.key)
            self._open(self.path, 0, 0)
            return True, []
        return False, []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
