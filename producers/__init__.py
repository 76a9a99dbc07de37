"""Producers: the raw call-event contract and everything that publishes raw events to Kafka.

Public API (imported lazily, so that `import producers.contract` stays light for downstream stages):

    from callstream.producers import CallRecorder, call_fields, record_call, recorded, instrument_openai
    from callstream.producers import RecordingTransport   # needs the `httpx` extra
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CallRecorder": "callstream.producers.recorder",
    "CallContext": "callstream.producers.recorder",
    "get_recorder": "callstream.producers.recorder",
    "set_recorder": "callstream.producers.recorder",
    "record_call": "callstream.producers.recorder",
    "call_fields": "callstream.producers.recorder",
    "recorded": "callstream.producers.recorder",
    "ProducerSettings": "callstream.producers.settings",
    "KafkaPublisher": "callstream.producers.publisher",
    "PublisherStats": "callstream.producers.publisher",
    "MemoryPublisher": "callstream.producers.memory",
    "instrument_openai": "callstream.producers.openai_instrumentation",
    "RecordingTransport": "callstream.producers.httpx_instrumentation",
    "AsyncRecordingTransport": "callstream.producers.httpx_instrumentation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
