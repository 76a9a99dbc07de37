"""The Elasticsearch destination: documents placed by sinks/documents.py, written by sinks/bulk.py."""

from __future__ import annotations

import threading
from typing import Any

from callstream.settings import ElasticsearchSettings
from callstream.sinks.batching import Batch
from callstream.sinks.bulk import BulkWriter, make_client
from callstream.sinks.destination import BatchResult, Kind
from callstream.sinks.documents import Decoded, Documents, Origin
from callstream.sinks.settings import SinkSettings


class ElasticsearchDestination:
    def __init__(
        self,
        es: ElasticsearchSettings,
        sink: SinkSettings,
        deadletter_producer: Any,
        deadletter_topic: str,
        abort: threading.Event,
    ) -> None:
        self.es = es
        self.documents = Documents(es.index_prefix)
        self._client = make_client(es, sink)
        self._writer = BulkWriter(
            self._client, deadletter_producer, self.documents, sink, deadletter_topic, abort
        )
        self._decoders = {
            "enriched": self.documents.enriched,
            "aggregate": self.documents.aggregate,
            "deadletter": self.documents.deadletter,
            "alert_event": self.documents.alert_event,
        }

    def decode(self, kind: Kind, value: bytes | None, origin: Origin) -> Decoded:
        return self._decoders[kind](value, origin)

    def write(self, batch: Batch) -> BatchResult:
        return self._writer.write(batch)

    @property
    def failing(self) -> bool:
        return self._writer.failing

    @property
    def retries(self) -> int:
        return self._writer.retries

    def describe(self) -> dict[str, Any]:
        return {"elasticsearch": self.es.safe_url, "index_prefix": self.es.index_prefix}

    def close(self) -> None:
        self._client.close()
