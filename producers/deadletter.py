"""Dead letters written by producers: inputs that are not valid events, kept with the reason.

The shape is streams.contract.DeadLetter (the stream's dead-letter topic is shared), built as a
plain dict because producers never import downstream code; a unit test checks the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

MAX_ORIGINAL_CHARS = 65_536


def dead_letter(reason: str, stage: str, original: Any, batch_index: int | None = None) -> dict[str, Any]:
    if isinstance(original, str) and len(original) > MAX_ORIGINAL_CHARS:
        original = original[:MAX_ORIGINAL_CHARS]
    return {
        "reason": reason,
        "stage": stage,
        "original": original,
        "source_topic": None,
        "source_partition": None,
        "source_offset": None,
        "batch_index": batch_index,
        "detected_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def encode_dead_letter(letter: dict[str, Any]) -> bytes:
    return orjson.dumps(letter, default=str)
