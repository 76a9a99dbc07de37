"""The sink's decoder for alert events: monthly index by the event's time, `_id` = event_id."""

from __future__ import annotations

import orjson

from callstream.sinks.documents import INVALID_INPUT, Documents, Origin
from tests.unit.test_alert_delivery import EVENT

ORIGIN = Origin("cs.alerts.events", 2, 17, 1_772_366_400_000)


def test_an_alert_event_goes_to_its_months_index_under_its_own_id() -> None:
    decoded = Documents("cs").alert_event(orjson.dumps(EVENT), ORIGIN)
    (doc,) = decoded.docs
    assert (doc.index, doc.id, doc.version) == ("cs-alerts-2026.03", EVENT["event_id"], None)
    assert orjson.loads(doc.source) == EVENT
    assert decoded.failures == []


def test_an_unreadable_alert_event_is_dead_lettered_with_the_reason() -> None:
    documents = Documents("cs")
    for value, reason in [
        (b"{", "not JSON"),
        (orjson.dumps([EVENT]), "invalid alert event: expected an object"),
        (orjson.dumps({**EVENT, "event_id": ""}), "invalid alert event: event_id must be a non-empty string"),
        (orjson.dumps({**EVENT, "at": "2026-03-01T12:00:00"}), "invalid alert event: at: "),
    ]:
        decoded = documents.alert_event(value, ORIGIN)
        assert decoded.docs == []
        (failure,) = decoded.failures
        assert failure.error_type == INVALID_INPUT and failure.reason.startswith(reason)
