"""Decode Kafka record batches into compact events; invalid records go to the dead-letter output."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from clout.model.events import Event
from clout.model.kinds import KIND_INDEX
from clout.pipelines.source import RecordBatch
from clout.pipelines.worker_memory import shared
from clout.schemas import InvalidEvent, parse_event

DEAD_LETTERS = "dead_letters"
TOO_LATE = "too_late"  # DLQ reason for valid events that arrived beyond the allowed lateness


class EventBatch(NamedTuple):
    """Valid events of one Kafka batch; `batch_id` (topic, partition, first offset) names it."""

    batch_id: tuple[str, int, int]
    events: list[Event]


class DeadLetter(NamedTuple):
    raw: bytes
    reason: str
    detail: str
    source: str


class RecentIds:
    """Event ids seen within `horizon_ms` of event time: catches events published twice by mistake.

    Bounded: ids older than the newest event time minus the horizon are forgotten, oldest first.
    """

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._ids: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()
        self._newest = 0

    def seen(self, event_id: str, ts: int) -> bool:
        if event_id in self._ids:
            return True
        self._ids[event_id] = ts
        self._order.append((ts, event_id))
        if ts > self._newest:
            self._newest = ts
            self._forget_before(ts - self.horizon_ms)
        return False

    def __len__(self) -> int:
        return len(self._ids)

    def _forget_before(self, cutoff: int) -> None:
        order, ids = self._order, self._ids
        while order and order[0][0] < cutoff:
            _, old = order.popleft()
            ids.pop(old, None)


class DecodeBatch(beam.DoFn):
    """One batch in, one batch of valid, first-seen events out (the per-element cost stays low)."""

    def __init__(self, dedup_horizon_ms: int = 3_600_000) -> None:
        self.dedup_horizon_ms = dedup_horizon_ms
        self.token = uuid.uuid4().hex
        self.duplicates = Metrics.counter("clout.decode", "duplicates_dropped")
        self.valid = Metrics.counter("clout.decode", "events_valid")
        self.rejected = Metrics.counter("clout.decode", "events_rejected")
        self.late = Metrics.counter("clout.decode", "events_too_late")

    def process(self, batch: RecordBatch) -> Iterator[EventBatch | pvalue.TaggedOutput]:
        events: list[Event] = []
        # Events are keyed by actor, so a record published twice lands in its original's partition;
        # a partition's batches are decoded one at a time, in order, possibly by different instances.
        recent = shared((self.token, batch.topic, batch.partition), lambda: RecentIds(self.dedup_horizon_ms))
        for record in batch.records:
            source = f"{batch.topic}/{batch.partition}@{record.offset}"
            try:
                event = parse_event(record.value or b"")
            except InvalidEvent as error:
                self.rejected.inc()
                yield pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter(record.value or b"", error.reason.value,
                                                                   error.detail, source))
                continue
            if recent.seen(event.event_id, event.ts):
                self.duplicates.inc()
                continue
            if record.late_by_ms:
                self.late.inc()
                detail = (f"event time {record.ts} is {record.late_by_ms} ms beyond the allowed lateness "
                          "behind its partition's watermark")
                yield pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter(record.value, TOO_LATE, detail, source))
                continue
            events.append(Event(event.ts, event.actor, event.target, KIND_INDEX[event.kind], event.platform))
        self.valid.inc(len(events))
        if events:
            yield EventBatch((batch.topic, batch.partition, batch.records[0].offset), events)
