"""Write one batch to Elasticsearch until every document is stored or dead-lettered.

Runs on a pool thread, several batches at once. Retryable failures (429, 5xx, connection errors)
back off with jitter and retry forever; only an abort (a second stop signal, or the end of the
shutdown grace period) ends a batch early, and then its unfinished documents are simply not
acknowledged, so their offsets are not committed. Refused documents go to the sink dead-letter
topic and index before they count as done.
"""

from __future__ import annotations

import functools
import random
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson
from elastic_transport import SerializationError, TransportError

from callstream.errors import MissingExtraError

try:
    from elasticsearch import ApiError, Elasticsearch
    from elasticsearch.serializer import OrjsonSerializer
except ImportError as exc:
    raise MissingExtraError("sink", "elasticsearch") from exc


from callstream import logs
from callstream.producers.redaction import scrub
from callstream.settings import ElasticsearchSettings
from callstream.sinks.batching import Batch
from callstream.sinks.destination import BatchResult
from callstream.sinks.documents import Doc, Documents, Failure
from callstream.sinks.outcome import (
    BulkSplit,
    RequestOutcome,
    backoff_s,
    classify_request,
    rejection,
    split_response,
)
from callstream.sinks.settings import SinkSettings

log = logs.get(__name__)

# Per-item fields the sink reads back; the rest of a bulk response is not worth parsing.
FILTER_PATH = "errors,items.*.status,items.*.error"


def make_client(es: ElasticsearchSettings, sink: SinkSettings) -> Elasticsearch:
    """A client that leaves retries to the sink (backoff with jitter, no retry budget)."""
    return Elasticsearch(
        **es.client_kwargs(),
        http_compress=sink.http_compress,
        max_retries=0,
        retry_on_timeout=False,
        connections_per_node=sink.max_in_flight_requests + 2,
        serializers={"application/json": OrjsonSerializer()},
    )


def bulk_body(docs: list[Doc]) -> bytes:
    lines: list[bytes] = []
    for doc in docs:
        meta: dict[str, Any] = {"_index": doc.index, "_id": doc.id}
        if doc.version is not None:
            meta["version"] = doc.version
            meta["version_type"] = "external"
        lines.append(orjson.dumps({"index": meta}))
        lines.append(doc.source)
    lines.append(b"")
    return b"\n".join(lines)


def _record_delivery(outcome: dict[int, Any], index: int, err: Any, _msg: Any) -> None:
    """Delivery callback; runs on whichever thread polls the producer."""
    outcome[index] = err


def _status(exc: Exception) -> int | None:
    meta = getattr(exc, "meta", None)
    status = getattr(meta, "status", None)
    return status if isinstance(status, int) else None


class BulkWriter:
    """Thread-safe: one instance shared by the pool's threads."""

    def __init__(
        self,
        client: Elasticsearch,
        producer: Any,
        documents: Documents,
        settings: SinkSettings,
        deadletter_topic: str,
        abort: threading.Event,
    ) -> None:
        self._client = client
        self._producer = producer
        self._documents = documents
        self._settings = settings
        self._deadletter_topic = deadletter_topic
        self._abort = abort
        self._lock = threading.Lock()
        self._failing_batches = 0  # batches whose last attempt failed
        self.retries = 0  # every backoff of every batch so far
        self._random = random.Random()

    @property
    def failing(self) -> bool:
        """Some batch's last attempt failed and it has not succeeded since: Elasticsearch (or Kafka,
        for dead letters) is overloaded or down."""
        return self._failing_batches > 0

    def _streak(self, failed: bool) -> None:
        """A batch starts (`failed`) or ends a streak of failed attempts."""
        with self._lock:
            self._failing_batches += 1 if failed else -1

    def write(self, batch: Batch) -> BatchResult:
        result = BatchResult(batch)
        done, refused, complete = self._index(batch.docs, result)
        for doc in done:
            result.acked[(doc.origin.partition_key, doc.origin.offset)] += 1
        failures = list(batch.failures) + refused
        if complete and failures:
            complete = self._deadletter(failures, result)
            if complete:
                result.deadlettered += len(failures)
                for failure in failures:
                    result.acked[(failure.origin.partition_key, failure.origin.offset)] += 1
        result.complete = complete
        return result

    # -- indexing with retries

    def _index(self, docs: list[Doc], result: BatchResult) -> tuple[list[Doc], list[Failure], bool]:
        """Index until every document is stored or refused: (stored, refused, finished)."""
        stored: list[Doc] = []
        refused: list[Failure] = []
        work: deque[list[Doc]] = deque([docs] if docs else [])
        attempt = 0
        try:
            while work:
                if self._abort.is_set():
                    return stored, refused, False
                attempt = self._index_chunk(work, stored, refused, result, attempt)
            return stored, refused, True
        finally:
            if attempt:
                self._streak(False)

    def _index_chunk(
        self,
        work: deque[list[Doc]],
        stored: list[Doc],
        refused: list[Failure],
        result: BatchResult,
        attempt: int,
    ) -> int:
        """Send the next chunk of `work`; returns the number of failed attempts in the current streak."""
        chunk = work.popleft()
        try:
            split = self._send(chunk)
            result.requests += 1
        except (ApiError, TransportError, SerializationError) as exc:
            status = _status(exc)
            if classify_request(status) is RequestOutcome.SPLIT:
                if len(chunk) > 1:  # halve until the culprit is alone, then dead-letter it
                    middle = len(chunk) // 2
                    work.extendleft([chunk[middle:], chunk[:middle]])
                else:
                    refused.append(
                        rejection(chunk[0], status, {"type": "request_refused", "reason": str(exc)})
                    )
                return attempt
            work.appendleft(chunk)
            return self._back_off(
                attempt, "bulk request failed", docs=len(chunk), status=status, error=str(exc)[:300]
            )
        stored += split.indexed
        stored += split.superseded
        result.indexed += len(split.indexed)
        result.superseded += len(split.superseded)
        refused += split.rejected
        if split.retry:
            work.appendleft(split.retry)
            return self._back_off(attempt, "bulk items to retry", docs=len(split.retry))
        if attempt:
            self._streak(False)
        return 0

    def _send(self, docs: list[Doc]) -> BulkSplit:
        body_bytes: Any = bulk_body(docs)  # pre-encoded NDJSON: the client sends bytes as they are
        response = self._client.bulk(operations=body_bytes, filter_path=FILTER_PATH)
        body = response.body
        if body.get("errors") is False:
            return BulkSplit(indexed=list(docs))
        return split_response(docs, body.get("items") or [])

    def _back_off(self, attempt: int, event: str, **fields: Any) -> int:
        """Wait before the next attempt (or until abort); returns the new failed-attempt count."""
        attempt += 1
        if attempt == 1:
            self._streak(True)
        delay = backoff_s(
            attempt,
            self._settings.retry_backoff_min_ms,
            self._settings.retry_backoff_max_ms,
            self._random.random(),
        )
        log.warning(event, attempt=attempt, retry_in_s=round(delay, 3), **fields)
        with self._lock:
            self.retries += 1
        self._abort.wait(delay)
        return attempt

    # -- dead letters: topic first, then index; both before the originals count as done

    def _deadletter(self, failures: list[Failure], result: BatchResult) -> bool:
        failed_at = datetime.now(UTC)
        for failure in failures:
            log.warning(
                "document dead-lettered",
                reason=scrub(failure.reason[:500]),
                status=failure.status,
                target_index=failure.target_index,
                doc_id=failure.doc_id,
                topic=failure.origin.topic,
                partition=failure.origin.partition,
                offset=failure.origin.offset,
                item=failure.item,
            )
        records = [self._documents.sink_deadletter_record(f, failed_at) for f in failures]
        messages = [
            self._documents.sink_deadletter_message(r, f) for r, f in zip(records, failures, strict=True)
        ]
        if not self._produce_all(messages):
            return False
        docs = [
            self._documents.sink_deadletter_doc(r, f, failed_at)
            for r, f in zip(records, failures, strict=True)
        ]
        scratch = BatchResult(result.batch)  # dead letters are not counted as indexed documents
        _, refused, complete = self._index(docs, scratch)
        result.requests += scratch.requests
        # The dead-letter topic already holds these, so a refusal here is logged, not retried.
        for failure in refused:
            result.deadletter_index_refused += 1
            log.error(
                "sink dead-letter index refused a document", reason=failure.reason, doc_id=failure.doc_id
            )
        return complete

    def _produce_all(self, messages: list[tuple[bytes, bytes]]) -> bool:
        """Produce every message and wait for its delivery report; retry the failed ones."""
        todo = list(range(len(messages)))
        attempt = 0
        try:
            while todo:
                if self._abort.is_set():
                    return False
                outcome: dict[int, Any] = {}
                for index in todo:
                    key, value = messages[index]
                    callback = functools.partial(_record_delivery, outcome, index)
                    while True:
                        try:
                            self._producer.produce(
                                self._deadletter_topic, value=value, key=key, on_delivery=callback
                            )
                            break
                        except BufferError:  # the producer's queue is full: let it drain
                            self._producer.poll(0.1)
                while len(outcome) < len(todo) and not self._abort.is_set():
                    self._producer.poll(0.1)
                failed = [i for i in todo if i not in outcome or outcome[i] is not None]
                if failed:
                    errors = sorted({str(outcome.get(i)) for i in failed})[:3]
                    attempt = self._back_off(
                        attempt, "dead-letter produce failed", messages=len(failed), errors=errors
                    )
                todo = failed
            return True
        finally:
            if attempt:
                self._streak(False)
