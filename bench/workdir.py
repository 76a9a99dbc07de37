"""The shell every process-starting benchmark runs in: a work directory for logs and data, and
SIGTERM turned into an unwinding exception, so that every process and server started inside is
stopped by its own `finally` before the command exits with 143."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console


class Terminated(Exception):
    """SIGTERM arrived: unwind."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextmanager
def bench_workdir(name: str, keep_logs: bool, console: Console) -> Iterator[Path]:
    """A fresh directory `callstream-bench-<name>-*`, deleted afterwards unless `keep_logs`."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    workdir = Path(tempfile.mkdtemp(prefix=f"callstream-bench-{name}-"))
    try:
        yield workdir
    except Terminated:
        console.print("terminated: stopped every process started here")
        raise typer.Exit(143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep_logs:
            console.print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
