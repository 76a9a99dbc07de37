"""Progress display for long-running commands: one look for all of them.

On a terminal it is a live bar; when output goes to a file or a pipe, rich renders nothing live
(no cursor or colour escape codes in logs), so the structured log lines carry the progress.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


def progress(*, unit: str = "items", rate: bool = False, console: Console | None = None) -> Progress:
    """A progress display; tasks set their own description and total (None: unknown).

    `unit` is "items" (done / total) or "bytes"; `rate` adds a `rate` field the caller updates."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    columns.append(DownloadColumn() if unit == "bytes" else MofNCompleteColumn())
    if rate:
        columns.append(TextColumn("{task.fields[rate]}"))
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False)
