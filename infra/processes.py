"""Stopping the worker processes that demos, benchmarks and tests start."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


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
