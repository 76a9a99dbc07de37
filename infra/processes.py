"""Starting and stopping the worker processes that demos, benchmarks and tests run.

One way for all of them: a worker is `python -m callstream.cli ARGS` (or another module) in its
own process, its output in a log file, stopped with SIGTERM (workers stop cleanly on it) and
killed only if it does not.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CLI = ("-m", "callstream.cli")


def start_worker(
    args: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    module: Sequence[str] = CLI,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m callstream.cli ARGS` (or `python MODULE... ARGS`) with stdout and stderr appended
    to `log_path`. The parent keeps no handle on the log: the child has its own."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *module, *args], env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
    """Ask with `sig` (workers stop cleanly on SIGTERM), kill after `timeout_s`; returns the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode
