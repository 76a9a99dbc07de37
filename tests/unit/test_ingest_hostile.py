"""Every hostile log line becomes an event or a dead letter, ingest goes on, nothing secret leaks,
and memory stays bounded (stand-in producer; the real broker in tests/integration/test_ingest_hostile.py)."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from callstream.producers.ingest import Ingestor, parse_line
from callstream.producers.settings import ProducerSettings
from callstream.settings import KafkaSettings
from tests.hostile import DEAD, EVENT, canaries_in, hostile_lines, valid_gateway_record
from tests.unit.test_ingest_checkpoint import FlakyProducer

KAFKA = KafkaSettings(bootstrap_servers="unused:9092", topic_prefix="t")
MAX_LINE = 64 * 1024


def test_hostile_lines_are_isolated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = hostile_lines(max_line_bytes=MAX_LINE, big_line_bytes=3 * 1024 * 1024)
    lines: list[tuple[bytes, str, str | None]] = []
    for i, case in enumerate(hostile):
        lines.append((json.dumps(valid_gateway_record(i, log_id=f"ok-{i}")).encode(), EVENT, f"ok-{i}"))
        lines.append((case.line, case.expect, case.event_id))
    log_file = tmp_path / "gateway.log"
    log_file.write_bytes(b"".join(line + b"\n" for line, _, _ in lines))
    producer = FlakyProducer()
    settings = ProducerSettings(max_line_bytes=MAX_LINE, spool_dir=tmp_path / "spool")
    ingestor = Ingestor(
        [log_file],
        tmp_path / "cp.json",
        KAFKA,
        settings,
        batch_max_events=7,
        producer_factory=lambda c: producer,
    )
    stats = ingestor.run()

    events = [event for _, event in producer.raw()]
    letters = producer.letters()
    dead_numbers = {letter["source_line"] for letter in letters}
    ids = [event["event_id"] for event in events]
    assert len(ids) == len(set(ids))  # nothing twice
    for number, (_, expect, event_id) in enumerate(lines, start=1):
        arrived = event_id in ids if event_id else None
        if expect == DEAD:
            assert number in dead_numbers, lines[number - 1][0][:80]
        elif expect == EVENT:
            assert number not in dead_numbers, (
                number,
                [x["reason"] for x in letters if x["source_line"] == number],
            )
            assert arrived in (True, None)
        else:
            assert (number in dead_numbers) != bool(arrived), number
    assert len(events) + len(letters) == len(lines) == stats.lines
    assert (stats.events, stats.bad_lines, stats.unacknowledged) == (len(events), len(letters), 0)
    for letter in letters:
        assert letter["stage"] == "ingest" and letter["source_file"] == str(log_file)
        assert letter["reason"].startswith(f"{log_file}:{letter['source_line']}: ")
        assert len(letter["original"]) <= 16_384
    reasons = {letter["source_line"]: letter["reason"].split(": ", 1)[1] for letter in letters}
    names = {number: lines[number - 1][0] for number in reasons}
    assert reasons[2 * [c.name for c in hostile].index("not JSON") + 2].startswith("not JSON")
    assert reasons[2 * [c.name for c in hostile].index("invalid UTF-8") + 2].startswith(
        "not JSON: invalid UTF-8"
    )
    assert reasons[2 * [c.name for c in hostile].index("JSON array") + 2] == "not a JSON object: an array"
    big = 2 * [c.name for c in hostile].index("line of 50 MB") + 2
    assert reasons[big].startswith("line of 3145") and "longer than max_line_bytes (65536)" in reasons[big]
    assert names  # every reason is tied to its line

    checkpoint = json.loads((tmp_path / "cp.json").read_text())["files"][str(log_file)]
    assert (checkpoint["offset"], checkpoint["line"]) == (log_file.stat().st_size, len(lines))
    captured = capsys.readouterr()
    delivered = b"".join(value for _, value, _ in producer.delivered)
    assert canaries_in(delivered) == [] and canaries_in(captured.out + captured.err) == []


def test_a_line_of_50_mb_is_never_held_whole(tmp_path: Path) -> None:
    log_file = tmp_path / "big.log"
    with open(log_file, "wb") as f:
        f.write(json.dumps(valid_gateway_record(1)).encode() + b"\n")
        f.write(b'{"error_message": "' + os.urandom(8).hex().encode() * (50 * 1024 * 1024 // 16) + b'"}\n')
        f.write(json.dumps(valid_gateway_record(2)).encode() + b"\n")
    producer = FlakyProducer()
    ingestor = Ingestor([log_file], tmp_path / "cp.json", KAFKA, producer_factory=lambda c: producer)
    tracemalloc.start()
    try:
        stats = ingestor.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (stats.events, stats.bad_lines, stats.unacknowledged) == (2, 1, 0)
    assert peak < 8 * 1024 * 1024, peak  # a 1 MiB limit, 1 MiB reads: never the 50 MB line
    (letter,) = producer.letters()
    assert letter["original_bytes"] == 50 * 1024 * 1024 + len('{"error_message": ""}')
    assert letter["original_truncated"] and letter["source_line"] == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON (at character 1)"),
        (b"\xff\xfe{}", "not JSON: invalid UTF-8 at byte 0"),
        (b"[1]", "not a JSON object: an array"),
        (b"3", "not a JSON object: a number"),
        (b"null", "not a JSON object: null"),
        (b'"x"', "not a JSON object: a string"),
        (b"[" * 2_000 + b"]" * 2_000, "not JSON: nested too deep to read"),
    ],
)
def test_reasons_are_plain(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + reason.replace("(", r"\(").replace(")", r"\)") + "$"):
        parse_line(line)


def test_a_line_too_long_to_read_keeps_only_the_known_scalar_fields_of_its_head(tmp_path: Path) -> None:
    import orjson

    from callstream.producers.ingest import TOO_LONG_TO_READ
    from tests.hostile import LOGGED_CONVERSATION, PROMPT_CANARY

    record = valid_gateway_record(3, log_id="long-1") | {
        "messages": [{"role": "user", "content": PROMPT_CANARY + ' \\"model\\": \\"x\\" ' * 20_000}],
        "response": LOGGED_CONVERSATION["response"],
    }
    log_file = tmp_path / "long.log"
    log_file.write_bytes(json.dumps(record).encode() + b"\n")
    producer = FlakyProducer()
    settings = ProducerSettings(max_line_bytes=MAX_LINE)
    Ingestor(
        [log_file], tmp_path / "cp.json", KAFKA, settings=settings, producer_factory=lambda c: producer
    ).run()
    (letter,) = producer.letters()
    original = orjson.loads(letter["original"])
    assert (
        original["log_id"] == "long-1"
        and original["model"] == "gpt-4.1"
        and original["request_tokens"] == 103
    )
    assert original["callstream.dropped"] == [TOO_LONG_TO_READ]
    assert "metadata" not in original and canaries_in(letter["original"]) == []
    assert letter["original_truncated"]
