"""The root of callstream's own exceptions: a caller can catch everything callstream raises on
purpose with one `except CallstreamError`, and tell it apart from a bug."""

from __future__ import annotations

import importlib
from types import ModuleType


class CallstreamError(Exception):
    """Something callstream detected and can explain (bad settings, a server that does not answer)."""


class ConfigurationError(CallstreamError, ValueError):
    """A setting, or a combination of settings, that cannot work; the message says which and why."""


class MissingExtraError(CallstreamError, ImportError):
    """A component's optional dependencies are not installed."""

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{module} is not installed; this part of callstream needs the '{extra}' extra: "
            f"pip install 'callstream[{extra}]'"
        )


def require(extra: str, module: str) -> ModuleType:
    """Import `module` or fail with what to install: each stage's optional dependencies come with
    an extra (`stream`, `sink`, `local`, `openai`, ...), so a service that only records calls stays light."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module) from exc
