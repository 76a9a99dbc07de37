"""Read complete lines from a growing log file, across rotation and truncation, with positions
that can be checkpointed and resumed.

Memory is bounded whatever the file holds: a line longer than `max_line_bytes` is never held
whole; only its first `LONG_LINE_HEAD_BYTES` are kept, the rest is skipped up to its newline, and
it comes out as a `Line` marked `truncated` (with its full length) for the caller to dead-letter.

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
from callstream.settings import ensure_private_dir

log = logs.get(__name__)

DEFAULT_MAX_LINE_BYTES = 1 << 20
LONG_LINE_HEAD_BYTES = 64 * 1024
"""What is kept of a line over `max_line_bytes`: enough for a dead letter's bounded original."""


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
    text: bytes  # without the newline; only the head when `truncated`
    position: FilePosition  # after this line
    source: str  # the physical file the line came from
    start_offset: int = 0  # byte offset of the line in its physical file
    length: int = 0  # bytes of the whole line, without the newline
    truncated: bool = False  # longer than max_line_bytes: `text` is its head


class Checkpoint:
    """Positions per followed path, written atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.positions: dict[str, FilePosition] = {}
        if path.exists():
            doc = json.loads(path.read_text())
            self.positions = {key: FilePosition(**value) for key, value in doc.get("files", {}).items()}

    def save(self) -> None:
        ensure_private_dir(self.path.parent)
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

    def __init__(
        self,
        path: Path,
        position: FilePosition | None = None,
        chunk_bytes: int = 1 << 20,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.key = str(path)
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self._file: BinaryIO | None = None
        self._source = ""
        self._dev = self._inode = 0
        self._offset = 0
        self._line = 0
        self._buffer = bytearray()
        self._start = 0  # first byte of the buffer not consumed yet
        self._long_head: bytes | None = None  # head of an over-long line being skipped
        self._long_len = 0  # bytes of that line skipped so far
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
        self._offset, self._line = offset, line
        self._buffer, self._start, self._long_head, self._long_len = bytearray(), 0, None, 0
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
            line = self._next_line()
            if line is not None:
                lines.append(line)
                continue
            chunk = self._file.read(self.chunk_bytes)
            if chunk:
                if self._start:
                    del self._buffer[: self._start]
                    self._start = 0
                self._buffer += chunk
                continue
            if final and self._has_partial():
                lines.append(self._rest())
            break
        return lines

    def _has_partial(self) -> bool:
        return self._long_head is not None or len(self._buffer) > self._start

    def _next_line(self) -> Line | None:
        """The next complete line in the buffer, if any; enters skipping mode for an over-long one."""
        newline = self._buffer.find(b"\n", self._start)
        pending = (newline if newline >= 0 else len(self._buffer)) - self._start
        if self._long_head is not None:  # everything up to the newline belongs to the long line
            self._long_len += pending
            if newline < 0:
                self._buffer.clear()
                self._start = 0
                return None
            self._start = newline + 1
            return self._long_line(self._long_len + 1)
        if newline < 0:
            if pending > self.max_line_bytes:
                self._long_head = bytes(self._buffer[self._start : self._start + LONG_LINE_HEAD_BYTES])
                self._long_len = pending
                self._buffer.clear()
                self._start = 0
            return None
        text = bytes(self._buffer[self._start : newline])
        self._start = newline + 1
        if len(text) > self.max_line_bytes:
            self._long_head, self._long_len = text[:LONG_LINE_HEAD_BYTES], len(text)
            return self._long_line(len(text) + 1)
        return self._emit(text, len(text) + 1)

    def _rest(self) -> Line:
        """The unterminated last line of a finished file."""
        if self._long_head is not None:
            self._long_len += len(self._buffer) - self._start
            self._buffer.clear()
            self._start = 0
            return self._long_line(self._long_len)
        text = bytes(self._buffer[self._start :])
        self._buffer.clear()
        self._start = 0
        return self._emit(text, len(text))

    def _long_line(self, consumed: int) -> Line:
        head, length = self._long_head or b"", self._long_len
        self._long_head, self._long_len = None, 0
        return self._emit(head, consumed, length=length, truncated=True)

    def _emit(self, text: bytes, consumed: int, length: int | None = None, truncated: bool = False) -> Line:
        start = self._offset
        self._offset += consumed
        self._line += 1
        if not truncated and text.endswith(b"\r"):
            text = text[:-1]
        position = FilePosition(self._dev, self._inode, self._offset, self._line)
        return Line(
            self.key,
            self._line,
            text,
            position,
            self._source,
            start_offset=start,
            length=len(text) if length is None else length,
            truncated=truncated,
        )

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
            leftover = self.read(1, final=True) if self._has_partial() else []
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
