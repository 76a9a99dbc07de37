"""Any hostile input becomes a valid event or a valid dead letter, never an exception, and never
carries a planted secret (strategies from tests/hostile.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from callstream.producers.contract import RawCallEvent
from callstream.producers.ingest import Ingestor
from callstream.producers.prepare import Policy
from callstream.producers.publisher import prepare_item
from callstream.producers.tail import FilePosition, Line
from callstream.settings import KafkaSettings
from callstream.streams.contract import DeadLetter
from tests.hostile import ALL_CANARIES, canaries_in, log_lines, raw_events

POLICY = Policy(secrets=tuple(ALL_CANARIES[:3]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=raw_events())
def test_any_recorded_item_is_an_event_or_a_dead_letter(item: dict[str, Any]) -> None:
    prepared = prepare_item(dict(item), POLICY)
    if isinstance(prepared, dict):
        DeadLetter.model_validate(prepared)
        text = orjson.dumps(prepared)
    else:
        event_id, encoded = prepared
        assert RawCallEvent.model_validate_json(encoded).event_id == event_id
        text = encoded
    assert canaries_in(text) == []


class _NoKafka:
    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None}, error=None)})


def _ingestor(tmp: Path) -> Ingestor:
    log_file = tmp / "empty.log"
    log_file.touch()
    kafka = KafkaSettings(bootstrap_servers="unused:9092")
    return Ingestor([log_file], tmp / "cp.json", kafka, producer_factory=lambda conf: _NoKafka())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=log_lines())
def test_any_log_line_is_an_event_or_a_dead_letter(text: bytes) -> None:
    ingestor = _INGESTOR
    line = Line("/x.log", 7, text, FilePosition(1, 2, 100 + len(text), 7), "/x.log", 100, len(text))
    unit = SimpleNamespace(letters=[])
    try:
        event_id, encoded = ingestor._event(line)
    except Exception as exc:
        ingestor._bad_line(unit, line, exc)  # type: ignore[arg-type]
        (letter,) = unit.letters
        parsed = DeadLetter.model_validate_json(letter)
        assert parsed.reason.startswith("/x.log:7: ") and parsed.source_line == 7
        assert canaries_in(letter, text) == []
        return
    assert RawCallEvent.model_validate_json(encoded).event_id == event_id
    assert canaries_in(encoded, text) == []


_INGESTOR: Ingestor


def setup_module() -> None:
    import tempfile

    global _INGESTOR
    _INGESTOR = _ingestor(Path(tempfile.mkdtemp()))
