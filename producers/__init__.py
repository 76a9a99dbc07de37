"""Producers: the raw call-event contract and everything that publishes raw events to Kafka.

Public API (imported lazily, so that `import producers.contract` stays light for downstream stages):

    from producers import CallRecorder, record_call, recorded, instrument_openai, RecordingTransport
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CallRecorder": "producers.recorder",
    "CallContext": "producers.recorder",
    "get_recorder": "producers.recorder",
    "set_recorder": "producers.recorder",
    "record_call": "producers.recorder",
    "recorded": "producers.recorder",
    "ProducerSettings": "producers.settings",
    "KafkaPublisher": "producers.publisher",
    "PublisherStats": "producers.publisher",
    "MemoryPublisher": "producers.memory",
    "instrument_openai": "producers.openai_instrumentation",
    "RecordingTransport": "producers.httpx_instrumentation",
    "AsyncRecordingTransport": "producers.httpx_instrumentation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
