"""Exactly-once counting of event ids within a horizon, deterministic under reprocessing.

Raw events are partitioned by event id (producers.contract.partition_for_event_id), so every
copy of an event reaches the same partition and one index per partition sees them all. The index
remembers which batch (source offset) first carried each id: when a batch is processed again
after a crash, its own ids are not mistaken for duplicates, so the reprocessed batch yields exactly
what the first attempt yielded.

Memory is what bounds a dedup horizon (a day of ids), so ids are kept as 64-bit fingerprints in
flat arrays, about 24 bytes per remembered id (8 in the batch record, which the changelog and the
index share, and 16 in a sorted segment), not several hundred as Python strings in dicts. Two
different ids of one partition share a fingerprint with probability about n^2 / 2^65 for n ids
remembered at once (3e-6 for ten million); the later one would then be counted as a duplicate.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from hashlib import blake2b

import orjson

from callstream.errors import MissingExtraError

try:
    import numpy as np
    import numpy.typing as npt
except ImportError as exc:
    raise MissingExtraError("stream", "numpy") from exc


RECORD_V1 = b"\x01"  # a batch record: this byte, newest event ms (int64 LE), one uint64 LE per id
HEADER = 9
SEAL_AT = 8192  # fingerprints kept in a dict before they are sealed into a sorted segment
MAX_SEGMENTS = 8  # more are merged into one, dropping ids whose batch has expired

Fingerprints = npt.NDArray[np.uint64]
Offsets = npt.NDArray[np.int64]


def fingerprints(event_ids: Iterable[str]) -> list[int]:
    digests = b"".join([blake2b(i.encode(), digest_size=8).digest() for i in event_ids])
    return np.frombuffer(digests, dtype="<u8").tolist()


def batch_record(max_event_ms: int, fps: list[int]) -> bytes:
    """What is remembered of one batch, also the value of its changelog record."""
    packed = np.array(fps, dtype="<u8").tobytes()
    return RECORD_V1 + max_event_ms.to_bytes(8, "little", signed=True) + packed


def record_max_ms(record: bytes) -> int:
    return int.from_bytes(record[1:HEADER], "little", signed=True)


def record_fingerprints(record: bytes) -> Fingerprints:
    return np.frombuffer(record, dtype="<u8", offset=HEADER).astype(np.uint64)


class DedupIndex:
    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.batches: dict[int, bytes] = {}  # offset -> batch record of the ids it carried first
        self._recent: dict[int, int] = {}  # fingerprint -> first offset, not sealed yet
        self._segments: list[tuple[Fingerprints, Offsets]] = []  # sorted fingerprints, their offsets
        self._by_age: list[tuple[int, int]] = []  # heap of (newest event ms, offset)
        self._live_ids = 0

    def admit(self, offset: int, ids_and_times: Iterable[tuple[str, int]]) -> list[bool]:
        """For each (event_id, event_ms) of the batch at `offset`: True if it counts, False if a duplicate."""
        pairs = list(ids_and_times)
        fps = fingerprints(event_id for event_id, _ in pairs)
        firsts = self._first_offsets(fps)
        verdicts: list[bool] = []
        fresh_fps: list[int] = []
        seen_here: set[int] = set()
        max_ms = -1
        for fp, first, (_, event_ms) in zip(fps, firsts, pairs, strict=True):
            fresh = (first is None or first == offset) and fp not in seen_here
            verdicts.append(fresh)
            if fresh:
                seen_here.add(fp)
                fresh_fps.append(fp)
                max_ms = max(max_ms, event_ms)
        if fresh_fps and offset not in self.batches:
            self._remember(offset, batch_record(max_ms, fresh_fps), fresh_fps)
        return verdicts

    def remembers(self, event_id: str) -> bool:
        return self._first_offsets(fingerprints([event_id]))[0] is not None

    def restore(self, offset: int, record: bytes) -> None:
        """Remember a batch record (from `batches`, or from the changelog after a restart). Records
        written before fingerprints, `[ids, newest ms]` as JSON, are converted."""
        if record[:1] != RECORD_V1:
            ids, max_ms = orjson.loads(record)
            record = batch_record(max_ms, fingerprints(ids))
        self._remember(offset, record, record_fingerprints(record).tolist())

    def _remember(self, offset: int, record: bytes, fps: list[int]) -> None:
        """Keep `record` (whose fingerprints are `fps`) as the batch at `offset`."""
        previous = self.batches.get(offset)
        if previous is not None:
            self._live_ids -= (len(previous) - HEADER) // 8
        self.batches[offset] = record
        self._live_ids += (len(record) - HEADER) // 8
        heapq.heappush(self._by_age, (record_max_ms(record), offset))
        for fp in fps:
            current = self._recent.get(fp)
            if current is None or current not in self.batches:
                self._recent[fp] = offset
        if len(self._recent) >= SEAL_AT:
            self._seal()

    def expire(self, stream_time_ms: int) -> list[int]:
        """Forget batches whose newest event is older than the horizon; returns their offsets."""
        cutoff = stream_time_ms - self.horizon_ms
        gone: list[int] = []
        while self._by_age and self._by_age[0][0] < cutoff:
            max_ms, offset = heapq.heappop(self._by_age)
            record = self.batches.get(offset)
            if record is not None and record_max_ms(record) == max_ms:
                del self.batches[offset]
                self._live_ids -= (len(record) - HEADER) // 8
                gone.append(offset)
        if gone and self._stored() > 2 * self._live_ids + SEAL_AT:
            self._compact()
        return sorted(gone)

    # Lookups: the recent dict, then the segments from the newest; an entry whose batch has
    # expired is ignored (it is dropped at the next compaction).

    def _first_offsets(self, fps: list[int]) -> list[int | None]:
        batches = self.batches
        found: list[int | None] = []
        missing: list[int] = []
        for i, fp in enumerate(fps):
            offset = self._recent.get(fp)
            live = offset is not None and offset in batches
            found.append(offset if live else None)
            if not live:
                missing.append(i)
        if not missing or not self._segments:
            return found
        query = np.array([fps[i] for i in missing], dtype=np.uint64)
        for seg_fps, seg_offsets in reversed(self._segments):
            left = np.searchsorted(seg_fps, query, side="left")
            right = np.searchsorted(seg_fps, query, side="right")
            for k in np.nonzero(right > left)[0].tolist():
                if found[missing[k]] is not None:
                    continue
                for j in range(int(left[k]), int(right[k])):
                    offset = int(seg_offsets[j])
                    if offset in batches:
                        found[missing[k]] = offset
                        break
        return found

    def _stored(self) -> int:
        return len(self._recent) + sum(len(fps) for fps, _ in self._segments)

    def _seal(self) -> None:
        fps = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        offsets = np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))
        order = np.argsort(fps, kind="stable")
        self._segments.append((fps[order], offsets[order]))
        self._recent = {}
        if len(self._segments) > MAX_SEGMENTS:
            self._compact()

    def _compact(self) -> None:
        """Merge the segments into one without the ids of expired batches."""
        if not self._segments:
            return
        fps = np.concatenate([f for f, _ in self._segments])
        offsets = np.concatenate([o for _, o in self._segments])
        live = np.isin(offsets, np.fromiter(self.batches.keys(), dtype=np.int64, count=len(self.batches)))
        fps, offsets = fps[live], offsets[live]
        order = np.argsort(fps, kind="stable")
        self._segments = [(fps[order], offsets[order])] if len(fps) else []
