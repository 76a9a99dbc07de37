"""The alert worker: a faust-streaming app, a thin shell around the pure core.

    aggregates ─► route_updates ─► alerts.series        (re-keyed by series, partition = its own)
    alerts.series ─► apply_updates ─► table alert-windows (newest version of each window)
                                   └► evaluate the series' alert groups (evaluate.py, state.py)
                                      transitions and the deliveries they owe ─► table alert-states
    deliver (loop): owed deliveries ─► alerts.events (the record), webhook, Slack, e-mail
    evaluate_all (timer): every series, for what time alone changes (windows sliding, a new day)
    watch (timer): consumer lag, dead-letter topic ends ─► table alert-samples

Every table key belongs to one series, and every table places it on that series' partition, so
a worker owns a series' windows, samples and alert states together, and recovers them together
from the changelogs when it takes the partition over. Delivery is an outbox: a transition and
the deliveries it owes are one record in `alert-states`, written (and flushed) before anything is
sent; a delivery leaves the outbox once its target took it. See docs/alerts.md, "Guarantees".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from callstream.errors import MissingExtraError

try:
    import faust
except ImportError as exc:
    raise MissingExtraError("alert", "faust-streaming") from exc

from callstream import logs, topics
from callstream.alerts.config import AlertConfig
from callstream.alerts.delivery import Sender, Sent, backoff_ms
from callstream.alerts.evaluate import groups_for, observe
from callstream.alerts.notify import batches, describe_target
from callstream.alerts.series import (
    CONSUMER_DIMENSION,
    DEADLETTER_DIMENSION,
    InvalidAggregate,
    SeriesData,
    SeriesId,
    SeriesUpdate,
    WindowStats,
    updates_from_aggregate,
)
from callstream.alerts.silences import SilenceBook, SilenceFollower
from callstream.alerts.state import RECORD, AlertState, Delivery, step
from callstream.alerts.watch import PartitionLag, Sampler, lag_sample
from callstream.metrics import Metrics
from callstream.producers.deadletter import dead_letter, encode_dead_letter
from callstream.producers.prepare import Fields, contract_fields
from callstream.settings import KafkaSettings
from callstream.streams.contract import WindowAggregate
from callstream.streams.frame import byte_table, forget_unowned, settled, worker_app

log = logs.get(__name__)
AGGREGATE_FIELDS = contract_fields(objects=WindowAggregate.model_fields)
"""What an unreadable aggregate's dead letter keeps of it."""


@dataclass
class Counters:
    aggregates: int = 0
    series_updates: int = 0
    windows_stored: int = 0
    evaluations: int = 0
    events: int = 0
    delivered: int = 0
    retries: int = 0
    dead_letters: int = 0


def _key(*parts: Any) -> str:
    return orjson.dumps(parts).decode()


def _series_of_key(key: str) -> SeriesId:
    parts = orjson.loads(key)
    return SeriesId(parts[0], parts[1])


class AlertWorker:
    """The alert worker's state and steps; faust only moves messages in and out."""

    def __init__(
        self,
        app: faust.App,
        config: AlertConfig,
        kafka: KafkaSettings,
        metrics: Metrics,
        silences: SilenceBook,
    ) -> None:
        self.app = app
        self.config = config
        self.settings = settings = config.settings
        self.kafka = kafka
        self.metrics = metrics
        self.silences = silences
        self.zone = config.budgets.zone
        self.partitions = settings.partitions
        raw: dict[str, Any] = {"value_serializer": "raw", "key_serializer": "raw"}
        self.aggregates = app.topic(kafka.topic(topics.AGGREGATES), **raw)
        self.series_name = kafka.topic(topics.ALERT_SERIES)
        self.series_topic = app.topic(self.series_name, partitions=self.partitions, **raw)
        self.events_topic = app.topic(kafka.topic(topics.ALERT_EVENTS), **raw)
        self.deadletter_topic = app.topic(kafka.topic(topics.ALERT_DEADLETTER), **raw)
        partitions = self.partitions

        def series_partition(key: str) -> int:
            return _series_of_key(key).partition(partitions)

        # Keys are placed by their series, from agents and timers alike (no current event needed).
        self.tables = {
            name: byte_table(app, f"alert-{name}", partitions, series_partition)
            for name in ("windows", "samples", "states")
        }
        self.windows = self.tables["windows"].table
        self.samples = self.tables["samples"].table
        self.states = self.tables["states"].table
        self.series: dict[SeriesId, SeriesData] = {}
        self.alerts: dict[str, AlertState] = {}
        self.alert_series: dict[str, SeriesId] = {}
        self.loaded = False
        self.generation = 0
        self.paused = True  # until recovery completed
        self.wake = asyncio.Event()
        self.quiet = asyncio.Event()
        self.quiet.set()
        self.counters = Counters()
        self.sender: Sender | None = None
        self.sampler: Sampler | None = None
        self._metrics()

    def _metrics(self) -> None:
        m = self.metrics
        self.m_updates = m.counter("series_updates_total", "Window updates applied to series")
        self.m_events = m.counter("events_total", "Alert events decided", ["rule", "kind"])
        self.m_deliveries = m.counter("deliveries_total", "Delivery attempts", ["target", "outcome"])
        self.m_dead = m.counter("dead_letters_total", "Inputs or notifications given up", ["stage"])
        self.m_firing = m.gauge("alerts_firing", "Alerts firing on this worker", ["rule"])
        self.m_owed = m.gauge("outbox_deliveries", "Deliveries owed by this worker")
        self.m_lag = m.gauge(
            "consumer_lag_messages", "End offset minus committed", ["group", "topic", "partition"]
        )
        self.m_lag_total = m.gauge("consumer_lag_total_messages", "Lag over all partitions", ["group"])
        self.m_dl_end = m.gauge("deadletter_topic_end_offset", "Dead letters ever written", ["topic"])
        self.m_delivery_s = m.histogram("delivery_seconds", "Time one delivery took", ["target"])
        self.m_notify_s = m.histogram(
            "event_to_delivery_seconds", "From deciding an event to a receiver having it", ["target"]
        )

    # -- clock and readiness -------------------------------------------------------------------

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    @property
    def ready(self) -> bool:
        return settled(self.app) and not self.paused

    def owned_partitions(self) -> set[int]:
        consumer = cast(Any, self.app.consumer)
        return {tp.partition for tp in consumer.assignment() if tp.topic == self.series_name}

    # -- caches rebuilt from the tables after recovery --------------------------------------------

    def load(self) -> None:
        if self.loaded:
            return
        self.series.clear()
        self.alerts.clear()
        self.alert_series.clear()
        # What this worker wrote for series it gave up stays in its memory store: read as current,
        # it would be evaluated and its deliveries sent here as well as by the new owner.
        forget_unowned(self.tables, self.owned_partitions())
        for key, raw in list(self.windows.items()):
            if raw:
                dimension, series_key, source, size, start = orjson.loads(key)
                data = self.series.setdefault(SeriesId(dimension, series_key), SeriesData())
                data.restore(source, size, start, WindowStats.from_wire(orjson.loads(raw)))
        for key, raw in list(self.samples.items()):
            if raw:
                dimension, series_key, at = orjson.loads(key)
                data = self.series.setdefault(SeriesId(dimension, series_key), SeriesData())
                data.add_sample(at, orjson.loads(raw))
        for key, raw in list(self.states.items()):
            if raw:
                dimension, series_key, alert_id = orjson.loads(key)
                self.alerts[alert_id] = AlertState.from_bytes(raw)
                self.alert_series[alert_id] = SeriesId(dimension, series_key)
        self.loaded = True
        owed = sum(len(s.outbox) for s in self.alerts.values())
        log.info(
            "alert state loaded",
            series=len(self.series),
            alerts=len(self.alerts),
            firing=sum(1 for s in self.alerts.values() if s.status == "firing"),
            owed_deliveries=owed,
        )
        self.paused = False
        self.wake.set()

    async def on_revoked(self) -> None:
        """Finish the deliveries under way and record them while the partitions are still ours,
        then forget the caches (the tables are recovered for whatever is assigned next)."""
        self.paused = True
        try:
            await asyncio.wait_for(self.quiet.wait(), self.settings.delivery_timeout_s + 5)
        except TimeoutError:
            log.warning("deliveries still under way at a rebalance: they may be sent again (same ids)")
        await self.app.producer.flush()
        self.generation += 1
        self.loaded = False
        self.series.clear()
        self.alerts.clear()
        self.alert_series.clear()

    # -- route_updates: aggregates -> alerts.series ---------------------------------------------------

    async def route(self, events: Sequence[faust.types.EventT]) -> None:
        routing = self.config.routing
        for event in events:
            message = event.message
            self.counters.aggregates += 1
            at_ms = int(message.timestamp * 1000) if message.timestamp else self.now_ms()
            try:
                updates = updates_from_aggregate(orjson.loads(event.value), at_ms, routing)
            except (orjson.JSONDecodeError, InvalidAggregate) as exc:
                await self._dead_letter(
                    f"unreadable aggregate update: {exc}",
                    "alert.route",
                    event.value,
                    message,
                    fields=AGGREGATE_FIELDS,
                )
                continue
            for update in updates:
                await self.series_topic.send(
                    key=update.series.encode().encode(),
                    value=update.to_bytes(),
                    partition=update.series.partition(self.partitions),
                    force=True,
                )
        await self.app.producer.flush()  # forwarded before take_events acks (commits) the inputs

    # -- apply_updates: alerts.series -> windows, evaluation, states --------------------------------

    async def apply(self, events: Sequence[faust.types.EventT]) -> None:
        self.load()
        touched: set[SeriesId] = set()
        for event in events:
            try:
                update = SeriesUpdate.from_bytes(event.value)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                await self._dead_letter(
                    f"unreadable series update: {exc}", "alert.apply", event.value, event.message
                )
                continue
            self.counters.series_updates += 1
            data = self.series.setdefault(update.series, SeriesData())
            stored = data.apply(update)
            if stored is None:
                continue
            key = _key(
                update.series.dimension, update.series.key, update.source_key, update.size, update.start_ms
            )
            self.windows[key] = orjson.dumps(stored.to_wire())
            self.counters.windows_stored += 1
            touched.add(update.series)
        self.m_updates.inc(len(events))
        if touched:
            now = self.now_ms()
            decided = sum(self.evaluate(series, now) for series in sorted(touched))
            await self._settle(decided)

    def evaluate(self, series: SeriesId, now_ms: int) -> int:
        """Evaluate every alert group of a series; returns how many events were decided."""
        data = self.series.get(series) or SeriesData()
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        decided = 0
        for group in groups_for(series, self.config.rules, self.config.budgets):
            self.counters.evaluations += 1
            state = self.alerts.get(group.alert_id)
            if state is None:
                state = AlertState(group.alert_id)
            observation = observe(group, data, now_ms, self.zone)
            silenced = self.silences.matches(group.rule.name, series.dimension, series.key, now)
            created = step(state, group, observation, now_ms, silenced, self.config.targets(group.rule))
            if not created:
                continue
            self.alerts[group.alert_id] = state
            self.alert_series[group.alert_id] = series
            self.states[_key(series.dimension, series.key, group.alert_id)] = state.to_bytes()
            for event in created:
                self.m_events.labels(rule=event["rule"], kind=event["kind"]).inc()
                log.info(
                    "alert event",
                    event_id=event["event_id"],
                    kind=event["kind"],
                    silenced=event["silenced"],
                    message=event["message"],
                )
            decided += len(created)
        return decided

    async def _settle(self, decided: int) -> None:
        """Make the state writes durable before anything they owe is sent."""
        if decided:
            self.counters.events += decided
            await self.app.producer.flush()
            self.wake.set()

    # -- evaluate_all (timer): time alone moves windows, periods and silences -----------------------

    async def evaluate_all(self) -> None:
        if not self.ready:
            return
        self.load()
        now = self.now_ms()
        everything = set(self.series) | set(self.alert_series.values())
        decided = sum(self.evaluate(series, now) for series in sorted(everything))
        self._expire(now)
        await self._settle(decided)
        firing: dict[str, int] = defaultdict(int)
        for alert_id, state in self.alerts.items():
            if state.status == "firing":
                firing[alert_id.split("|", 1)[0]] += 1
        for rule in self.config.rules.rules:
            self.m_firing.labels(rule=rule.name).set(firing.get(rule.name, 0))
        self.m_owed.set(sum(len(s.outbox) for s in self.alerts.values()))
        self.metrics.set_healthy(True, ttl_s=max(60.0, 4 * self.settings.evaluate_interval_s))

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.config.sample_horizon_ms
        for series, data in list(self.series.items()):
            for source, size, start in data.expire(now_ms, self.config.retention_ms):
                self.windows.pop(_key(series.dimension, series.key, source, size, start), None)
            for at in data.expire_samples(horizon):
                self.samples.pop(_key(series.dimension, series.key, at), None)
            if data.empty:
                del self.series[series]

    # -- watch (timer): consumer lag and dead letters, sampled through the admin API ---------------

    async def watch(self) -> None:
        if not self.ready:
            return
        self.load()
        if self.sampler is None:
            self.sampler = Sampler(self.kafka)
        groups = {
            "stream": self.settings.stream_group_id or _stream_group_default(),
            "sink": self.settings.sink_group_id or _sink_group_default(),
        }
        dead_topics = {
            "stream": self.kafka.topic(topics.DEADLETTER),
            "sink": self.kafka.topic(topics.SINK_DEADLETTER),
        }
        try:
            lags, ends = await asyncio.to_thread(self._sample, groups, dead_topics)
        except Exception as exc:  # the broker is away: the stalled rule keeps its state meanwhile
            log.warning("pipeline sampling failed", error=str(exc)[:300])
            return
        now = self.now_ms()
        owned = self.owned_partitions()
        for name, partitions in lags.items():
            for p in partitions:
                self.m_lag.labels(group=groups[name], topic=p.topic, partition=str(p.partition)).set(p.lag)
            self.m_lag_total.labels(group=groups[name]).set(sum(p.lag for p in partitions))
            self._record_sample(
                SeriesId(CONSUMER_DIMENSION, name), now, lag_sample(groups[name], partitions), owned
            )
        for name, end in ends.items():
            self.m_dl_end.labels(topic=dead_topics[name]).set(end)
            self._record_sample(SeriesId(DEADLETTER_DIMENSION, name), now, {"end": end}, owned)
        decided = sum(
            self.evaluate(series, now) for series in self.config.pipeline_series if series in self.series
        )
        await self._settle(decided)

    def _sample(
        self, groups: dict[str, str], dead_topics: dict[str, str]
    ) -> tuple[dict[str, list[PartitionLag]], dict[str, int]]:
        assert self.sampler is not None
        lags = {name: self.sampler.group_lag(group) for name, group in groups.items()}
        ends = {name: self.sampler.topic_end(topic) for name, topic in dead_topics.items()}
        return lags, ends

    def _record_sample(self, series: SeriesId, now_ms: int, values: dict[str, Any], owned: set[int]) -> None:
        if series not in self.config.pipeline_series or series.partition(self.partitions) not in owned:
            return
        self.series.setdefault(series, SeriesData()).add_sample(now_ms, values)
        self.samples[_key(series.dimension, series.key, now_ms)] = orjson.dumps(values)

    # -- deliver (loop): the outbox ---------------------------------------------------------------

    async def deliver_forever(self) -> None:
        self.sender = Sender(self.config)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                self.wake.clear()
                if self.ready and self.loaded:
                    try:
                        await self.deliver_due()
                    except Exception as exc:  # what is owed stays owed: the next round tries again
                        log.error("delivery round failed", error=f"{type(exc).__name__}: {exc}"[:500])
                        await asyncio.sleep(1.0)
        finally:
            await self.sender.close()

    async def deliver_due(self) -> None:
        now = self.now_ms()
        owed: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)  # target -> (alert, event)
        for alert_id, state in self.alerts.items():
            for delivery in state.due(now):
                event = state.events.get(delivery.event_id)
                if event is not None:
                    owed[delivery.target].append((alert_id, event))
        if not owed:
            return
        self.quiet.clear()
        generation = self.generation
        try:
            jobs = []
            for target, items in owed.items():
                alert_of = {event["event_id"]: alert for alert, event in items}
                for batch in batches([event for _, event in items], self.settings.group_max_events):
                    jobs.append(self._deliver(target, batch, alert_of))
            results = await asyncio.gather(*jobs)
            if generation != self.generation:  # the partitions moved meanwhile: the new owner re-sends
                return
            now = self.now_ms()
            changed: set[str] = set()
            letters: list[bytes] = []
            for target, batch, alert_of, sent in results:
                changed.update(self._settle_delivery(target, batch, alert_of, sent, now, letters))
            for letter in letters:
                await self.deadletter_topic.send(value=letter, force=True)
            for alert_id in changed:
                series = self.alert_series[alert_id]
                self.states[_key(series.dimension, series.key, alert_id)] = self.alerts[alert_id].to_bytes()
            await self.app.producer.flush()
            receivers = [(target, len(batch)) for target, batch, _, sent in results if target != RECORD]
            if receivers:  # outcomes are in the changelog now: a restart resumes from here
                log.info("deliveries recorded", targets=[f"{describe_target(t)}:{n}" for t, n in receivers])
        finally:
            self.quiet.set()

    async def _deliver(
        self, target: str, events: list[dict[str, Any]], alert_of: dict[str, str]
    ) -> tuple[str, list[dict[str, Any]], dict[str, str], Sent]:
        started = time.monotonic()
        if target == RECORD:
            futures = [
                await self.events_topic.send(
                    key=event["alert_id"].encode(), value=orjson.dumps(event), force=True
                )
                for event in events
            ]
            try:
                await asyncio.gather(*futures)
                sent = Sent("delivered")
            except Exception as exc:
                sent = Sent("retry", f"{type(exc).__name__}: {exc}"[:500])
        else:
            assert self.sender is not None
            sent = await self.sender.send(target, events)
        kind = describe_target(target).split(":", 1)[0]
        self.m_delivery_s.labels(target=kind).observe(time.monotonic() - started)
        self.m_deliveries.labels(target=kind, outcome=sent.verdict).inc()
        return target, events, alert_of, sent

    def _settle_delivery(
        self,
        target: str,
        events: list[dict[str, Any]],
        alert_of: dict[str, str],
        sent: Sent,
        now_ms: int,
        letters: list[bytes],
    ) -> set[str]:
        """Apply one delivery's outcome to the owed deliveries; returns the alerts it changed."""
        changed: set[str] = set()
        kind = describe_target(target).split(":", 1)[0]
        for event in events:
            alert_id = alert_of[event["event_id"]]
            state = self.alerts.get(alert_id)
            if state is None:
                continue
            delivery = next(
                (d for d in state.outbox if d.event_id == event["event_id"] and d.target == target), None
            )
            if delivery is None:
                continue
            changed.add(alert_id)
            if sent.verdict == "delivered":
                state.delivered(event["event_id"], target)
                self.counters.delivered += 1
                if target != RECORD:
                    decided = datetime.fromisoformat(event["at"]).timestamp()
                    self.m_notify_s.labels(target=kind).observe(max(0.0, now_ms / 1000 - decided))
                    log.info(
                        "notification delivered",
                        event_id=event["event_id"],
                        target=describe_target(target),
                        notification_id=sent.notification_id,
                    )
                continue
            delivery.attempts += 1
            delivery.last_error = sent.reason
            if sent.verdict == "retry" and delivery.attempts < self.settings.delivery_max_attempts:
                wait = backoff_ms(
                    delivery.attempts, self.settings.retry_backoff_min_ms, self.settings.retry_backoff_max_ms
                )
                delivery.due_ms = now_ms + wait
                self.counters.retries += 1
                log.warning(
                    "delivery failed, will retry",
                    event_id=event["event_id"],
                    target=describe_target(target),
                    attempts=delivery.attempts,
                    retry_in_ms=wait,
                    reason=sent.reason,
                )
                continue
            letters.append(self._give_up(state, event, target, sent))
        return changed

    def _give_up(self, state: AlertState, event: dict[str, Any], target: str, sent: Sent) -> bytes:
        """Dead-letter the notification, and record on the event that this target never got it."""
        delivery = next(d for d in state.outbox if d.event_id == event["event_id"] and d.target == target)
        reason = f"{describe_target(target)}: gave up after {delivery.attempts} attempt(s): {sent.reason}"
        letter = dead_letter(
            reason,
            "alert.deliver",
            {"target": describe_target(target), "notification_id": sent.notification_id, "event": event},
            secrets=self.settings.secrets(),
        )
        self.counters.dead_letters += 1
        self.m_dead.labels(stage="alert.deliver").inc()
        log.error(
            "notification dead-lettered",
            event_id=event["event_id"],
            target=describe_target(target),
            reason=reason,
        )
        state.delivered(event["event_id"], target)
        if target != RECORD:  # the record in Elasticsearch says which receivers never got it
            updated = dict(
                event, undelivered=sorted({*event.get("undelivered", []), describe_target(target)})
            )
            state.events[event["event_id"]] = updated
            if not any(d.event_id == event["event_id"] and d.target == RECORD for d in state.outbox):
                state.outbox.append(Delivery(event["event_id"], RECORD, due_ms=0))
        return encode_dead_letter(letter)

    async def _dead_letter(
        self, reason: str, stage: str, original: Any, message: Any, fields: Fields | None = None
    ) -> None:
        letter = dead_letter(
            reason,
            stage,
            original,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            fields=fields,
        )
        await self.deadletter_topic.send(value=encode_dead_letter(letter), force=True)
        self.counters.dead_letters += 1
        self.m_dead.labels(stage=stage).inc()


def _stream_group_default() -> str:
    from callstream.streams.settings import StreamSettings

    return StreamSettings().app_id


def _sink_group_default() -> str:
    from callstream.sinks.settings import SinkSettings

    return SinkSettings().group_id


def create_app(
    config: AlertConfig, kafka: KafkaSettings | None = None, metrics: Metrics | None = None
) -> tuple[faust.App, AlertWorker]:
    settings = config.settings
    kafka = kafka or KafkaSettings()
    metrics = metrics or Metrics("alert")
    app = worker_app(
        settings.app_id,
        kafka,
        partitions=settings.partitions,
        data_dir=settings.data_dir,
        web_bind=settings.web_bind,
        web_port=settings.web_port,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        consumer_group_instance_id=settings.group_instance_id,
    )
    book = SilenceBook()
    worker = AlertWorker(app, config, kafka, metrics, book)
    follower = SilenceFollower(kafka, book)
    within = settings.batch_within_ms / 1000

    @app.agent(worker.aggregates, name="route_updates")
    async def route_updates(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_max_updates, within=within):  # type: ignore[attr-defined]
            await worker.route(events)

    @app.agent(worker.series_topic, name="apply_updates")
    async def apply_updates(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_max_updates, within=within):  # type: ignore[attr-defined]
            await worker.apply(events)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        worker.metrics.set_healthy(False, "rebalancing")
        await worker.on_revoked()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
        await worker.on_revoked()
        follower.stop()

    @app.task
    async def start() -> None:
        port = metrics.serve(settings.metrics_host, settings.metrics_port)
        follower.start()
        await asyncio.to_thread(follower.caught_up.wait, 30)
        log.info(
            "alert worker running",
            metrics=f"http://{settings.metrics_host}:{port}/metrics",
            rules=len(config.rules.rules),
            budgets=len(config.budgets.budgets),
            timezone=config.budgets.timezone,
        )
        await worker.deliver_forever()

    @app.timer(interval=1.0)
    async def load_after_recovery() -> None:
        if settled(app) and not worker.loaded:
            worker.load()

    @app.timer(interval=settings.evaluate_interval_s)
    async def evaluate_all() -> None:
        await worker.evaluate_all()

    @app.timer(interval=settings.watch_interval_s)
    async def watch() -> None:
        await worker.watch()

    @app.timer(interval=10.0)
    async def report() -> None:
        log.info("alert progress", **worker.counters.__dict__)

    return app, worker
