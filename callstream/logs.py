"""Structured logging for workers: JSON lines on stderr (or console rendering on a terminal)."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogSettings(BaseSettings):
    """How every callstream command logs. Environment prefix `CALLSTREAM_LOG_`."""

    model_config = SettingsConfigDict(env_prefix="CALLSTREAM_LOG_", extra="ignore")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # JSON lines unless stderr is a terminal (auto), or always one of them.
    format: Literal["auto", "json", "console"] = "auto"


def configure(settings: LogSettings | None = None) -> None:
    settings = settings or LogSettings()
    level = settings.level
    json = not sys.stderr.isatty() if settings.format == "auto" else settings.format == "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
    for noisy in ("httpx", "elastic_transport", "aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
