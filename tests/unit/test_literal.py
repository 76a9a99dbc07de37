"""Data shown as data: names and messages print as written in every terminal output."""

from __future__ import annotations

import io

import orjson
import pytest

from callstream.literal import (
    DataTable,
    data_console,
    escaped,
    first_control,
    literal,
    shown,
    without_controls,
)
from callstream.topic_reader import json_line
from tests.hostile import ESCAPE_SEQUENCES, MARKUP_TEXT


def printed(*renderables: object, terminal: bool = False) -> str:
    out = io.StringIO()
    colours = "truecolor" if terminal else None
    console = data_console(file=out, width=500, force_terminal=terminal, color_system=colours)
    for item in renderables:
        console.print(item)
    return out.getvalue()


@pytest.mark.parametrize("value", MARKUP_TEXT + ESCAPE_SEQUENCES)
def test_a_data_table_shows_cells_and_title_as_written(value: str) -> None:
    table = DataTable(title=value)
    table.add_column("model")
    table.add_row(value)
    text = printed(table)
    assert text.count(shown(value)) == 2  # the title and the cell
    assert printed(f"[bold]model[/] {escaped(value)}").strip() == f"model {shown(value)}".strip()
    assert printed(literal(value)).rstrip("\n") == shown(value)
    on_terminal = printed(table, terminal=True)  # colours of our own, but no command from the data
    assert "\x1b[2J" not in on_terminal and "\x1b]0;" not in on_terminal and "\x9b" not in on_terminal


def test_shown_writes_controls_bidi_and_line_separators_as_escapes() -> None:
    assert shown("a\x1b[2J\x9b\u202eb\u2028\n") == "a\\x1b[2J\\x9b\\u202eb\\u2028\\x0a"
    assert shown(12) == "12"


def test_the_contract_helpers_replace_or_name_control_characters() -> None:
    assert without_controls("line 1\n\tline 2\x1b]0;t\x07\x9b") == "line 1\n\tline 2\ufffd]0;t\ufffd\ufffd"
    assert first_control("ok") is None and first_control("a\x9bb") == "U+009B"


def test_read_prints_each_message_as_json_a_terminal_shows_literally() -> None:
    line = json_line({"value": "a\x1b[2J\x9b]0;x\x07\x7f"})
    assert not any(ch in line for ch in "\x1b\x9b\x07\x7f")
    assert orjson.loads(line) == {"value": "a\x1b[2J\x9b]0;x\x07\x7f"}
