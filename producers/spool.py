"""A durable, bounded on-disk spool for Kafka messages that could not be delivered yet.

Layout: a directory of segment files, each a sequence of records
`magic(2) kind(1) count(4) length(4) crc32(4) payload`. A writer appends to its own `.open`
segment and renames it to `.seg` when full or closed. Every segment in use is held with an
exclusive flock, so several processes can share one directory: a drainer claims a segment by
locking it, and a segment left `.open` by a crashed process is claimable once its lock is gone.
A torn record at the end of a segment (crash mid-write) fails its checksum and is skipped.

The spool holds redacted events only, and is private all the same: the directory is created (or
tightened to) 0700 and segment files 0600.

Delivery from the spool is at-least-once: a segment is deleted when every record in it has been
acknowledged or re-spooled; a crash in between re-sends that segment, and downstream dedups by
event_id.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from callstream import logs
from callstream.settings import ensure_private_dir

log = logs.get(__name__)

MAGIC = b"\xcaS"
HEADER = struct.Struct(">2sBIII")
KIND_BATCH = ord("B")  # a JSON array of validated RawCallEvent wire dicts, for the raw topic
KIND_ITEMS = ord("I")  # a JSON array of caller items not yet validated (queue overflow)
KIND_DEADLETTER = ord("D")  # one DeadLetter JSON object, for the dead-letter topic
KINDS = frozenset({KIND_BATCH, KIND_ITEMS, KIND_DEADLETTER})
OPEN_SUFFIX = ".open"
SEALED_SUFFIX = ".seg"
FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    kind: int
    count: int  # events in the payload
    payload: bytes


def encode_record(kind: int, payload: bytes, count: int) -> bytes:
    return HEADER.pack(MAGIC, kind, count, len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes) -> tuple[list[SpoolRecord], int]:
    """Records in a segment's bytes, and how many trailing bytes were unreadable (torn or corrupt)."""
    records: list[SpoolRecord] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        magic, kind, count, length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        payload = data[start : start + length]
        if magic != MAGIC or kind not in KINDS or len(payload) != length or zlib.crc32(payload) != crc:
            break
        records.append(SpoolRecord(kind, count, payload))
        pos = start + length
    return records, len(data) - pos


class _Segment:
    """The segment this process appends to, locked for as long as it is open."""

    def __init__(self, directory: Path) -> None:
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}"
        self.path = directory / (name + OPEN_SUFFIX)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.size = 0

    def seal(self, fsync: bool) -> None:
        self.file.flush()
        if fsync:
            os.fsync(self.file.fileno())
        os.rename(self.path, self.path.with_suffix(SEALED_SUFFIX))
        self.file.close()  # releases the lock


class ClaimedSegment:
    """A segment this process has locked to deliver; delete it once every record is accounted for."""

    def __init__(self, spool: Spool, path: Path, file: BinaryIO) -> None:
        self.path = path
        self._spool = spool
        self._file = file
        self.size = os.fstat(file.fileno()).st_size

    def records(self) -> list[SpoolRecord]:
        self._file.seek(0)
        records, bad = decode_records(self._file.read())
        if bad:
            log.warning("spool segment has an unreadable tail", path=str(self.path), bytes=bad)
        return records

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._spool._forget(self.size)
        self._file.close()

    def release(self) -> None:
        self._file.close()


class Spool:
    """Thread-safe: the publisher thread and (on queue overflow) caller threads append."""

    def __init__(self, directory: Path, max_bytes: int, segment_max_bytes: int, fsync: bool = False) -> None:
        self.directory = ensure_private_dir(Path(directory).absolute())
        self.max_bytes = max_bytes
        self.segment_max_bytes = segment_max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._segment: _Segment | None = None
        self._bytes = self._scan()

    @property
    def size_bytes(self) -> int:
        """Bytes held by all segments in the directory (approximate between scans)."""
        return self._bytes

    def _scan(self) -> int:
        """Bytes in all segments; segments readable by others (an older version's) are tightened."""
        total = 0
        for path in self._segment_paths():
            try:
                st = path.stat()
                total += st.st_size
                if st.st_mode & 0o077:
                    path.chmod(FILE_MODE)
            except OSError:
                continue
        return total

    def _segment_paths(self) -> list[Path]:
        paths = [p for p in self.directory.iterdir() if p.suffix in (OPEN_SUFFIX, SEALED_SUFFIX)]
        return sorted(paths, key=lambda p: p.name)

    def append(self, kind: int, payload: bytes, count: int) -> bool:
        """Write one record durably (to the OS; fsync if configured). False if the spool is full."""
        record = encode_record(kind, payload, count)
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                return False
            if self._segment is not None and self._segment.size + len(record) > self.segment_max_bytes:
                self._segment.seal(self.fsync)
                self._segment = None
            if self._segment is None:
                self._segment = _Segment(self.directory)
            self._segment.file.write(record)
            self._segment.file.flush()
            if self.fsync:
                os.fsync(self._segment.file.fileno())
            self._segment.size += len(record)
            self._bytes += len(record)
        return True

    def seal(self) -> None:
        """Close the current segment so that it can be claimed and drained."""
        with self._lock:
            if self._segment is not None:
                self._segment.seal(self.fsync)
                self._segment = None

    def has_segments(self) -> bool:
        return any(True for _ in self._segment_paths())

    def claim(self) -> ClaimedSegment | None:
        """Lock the oldest segment nobody else holds (sealed, or left open by a dead process)."""
        own = self._segment.path if self._segment is not None else None
        paths = self._segment_paths()
        self._bytes = self._scan()
        for path in paths:
            if path == own:
                continue
            try:
                file = open(path, "rb")  # noqa: SIM115 - handed to ClaimedSegment
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                # The owner may have sealed (renamed) or a drainer deleted it before we got the lock.
                if os.stat(path).st_ino != os.fstat(file.fileno()).st_ino:
                    raise FileNotFoundError(path)
            except (BlockingIOError, FileNotFoundError):
                file.close()
                continue
            return ClaimedSegment(self, path, file)
        return None

    def iter_claimed(self) -> Iterator[ClaimedSegment]:
        while (segment := self.claim()) is not None:
            yield segment

    def _forget(self, size: int) -> None:
        with self._lock:
            self._bytes = max(0, self._bytes - size)

    def close(self) -> None:
        self.seal()
