"""Data shown as data: text from events is never markup and never a terminal control sequence.

Model names, user ids, error messages and every other string that came from the data may hold
`[bold]`, `[link=...]`, `ESC[2J` or an OSC title sequence. The contract refuses control
characters in names and replaces them in free text (`without_controls`); whatever reaches a
terminal is still shown through `shown` (control characters as visible `\\x1b` escapes) and, for
rich, as `Text` or escaped markup (`literal`, `escaped`, `DataTable`), so it prints as written.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0, DEL and C1: the characters a terminal may read as a command (ESC, CSI, OSC, BEL, CR, ...)."""
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
"""Controls, and what reorders or breaks lines unseen: zero-width and bidi marks, line separators."""
REPLACEMENT = "\ufffd"


def first_control(text: str) -> str | None:
    """The first control character of `text`, as `U+001B`, or None when it has none."""
    found = CONTROL_CHARACTERS.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def without_controls(text: str) -> str:
    """`text` with every control character except newline and tab replaced by U+FFFD."""
    return _CONTROLS_BUT_LINES.sub(REPLACEMENT, text)


def shown(value: Any) -> str:
    """`value` as text a terminal prints literally: control characters (newline included), bidi
    and zero-width marks and line separators written as visible escapes (`\\x1b`, `\\u202e`)."""
    text = value if isinstance(value, str) else str(value)
    return _INVISIBLE.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def data_console(**options: Any) -> Console:
    """A console for output that shows data: no `:emoji:` codes replaced, no highlighting guessed."""
    return Console(emoji=False, highlight=False, **options)


def escaped(value: Any) -> str:
    """`value` for a rich markup string (an f-string with `[bold]...[/]` of our own) printed on a
    `data_console`: shown literally."""
    return escape(shown(value))


def literal(value: Any) -> Text:
    """`value` as a rich Text: never parsed as markup."""
    return Text(shown(value))


class DataTable(Table):
    """A rich table whose title and string cells are data: shown literally, never as markup."""

    def __init__(self, *args: Any, title: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, title=literal(title) if isinstance(title, str) else title, **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(literal(r) if isinstance(r, str) else r for r in renderables), **kwargs)
