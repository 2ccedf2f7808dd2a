"""Decode Kafka record batches into columns of events; invalid records go to the dead-letter output.

Decoding is stateless (it spreads over workers as the source's partitions do); repeated event ids
are dropped after it, keyed by partition (dedup.py), where a publisher's repeats land.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from clout.model.columns import EventColumns
from clout.model.kinds import KIND_INDEX
from clout.pipelines.source import RecordBatch
from clout.schemas import InvalidEvent, parse_event

DEAD_LETTERS = "dead_letters"
TOO_LATE = "too_late"  # DLQ reason for valid events that arrived beyond the allowed lateness


BatchId = tuple[str, int, int]  # (topic, partition, first offset)


class EventBatch(NamedTuple):
    """Valid, first-seen events of one Kafka batch, as columns; `batch_id` names it."""

    batch_id: BatchId
    events: EventColumns


class DecodedBatch(NamedTuple):
    """Valid events of one Kafka batch before de-duplication: columns, each row's event id, the
    offset after the batch (so the next batch of the partition can tell it follows this one), and the
    rows that came too late with their dead letters: a repeat is dropped as a repeat even when late
    (the original counted), so lateness is applied after de-duplication."""

    batch_id: BatchId
    next_offset: int
    events: EventColumns
    event_ids: list[str]
    late: dict[int, DeadLetter]  # row -> its `too_late` dead letter


class DeadLetter(NamedTuple):
    raw: bytes
    reason: str
    detail: str
    source: str



class DecodeBatch(beam.DoFn):
    """One batch of records in, one batch of valid events (as columns) out; the per-element cost of
    Beam is paid once per batch, not once per event."""

    def __init__(self) -> None:
        self.rejected = Metrics.counter("clout.decode", "events_rejected")

    def process(self, batch: RecordBatch) -> Iterator[DecodedBatch | pvalue.TaggedOutput]:
        columns, late = _Columns(), {}
        for record in batch.records:
            source = f"{batch.topic}/{batch.partition}@{record.offset}"
            try:
                event = parse_event(record.value or b"")
            except InvalidEvent as error:
                self.rejected.inc()
                yield pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter(record.value or b"", error.reason.value,
                                                                   error.detail, source))
                continue
            if record.late_by_ms:
                detail = (f"event time {record.ts} is {record.late_by_ms} ms beyond the allowed lateness "
                          "behind its partition's watermark")
                late[len(columns.ids)] = DeadLetter(record.value, TOO_LATE, detail, source)
            columns.add(event.event_id, event.ts, event.actor, event.target, KIND_INDEX[event.kind], event.platform)
        if batch.records:
            batch_id = (batch.topic, batch.partition, batch.records[0].offset)
            yield DecodedBatch(batch_id, batch.records[-1].offset + 1, columns.build(), columns.ids, late)


class _Columns:
    """Grows one batch's columns, interning accounts and platforms as they come."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.ts: list[int] = []
        self.actor: list[int] = []
        self.target: list[int] = []
        self.kind: list[int] = []
        self.platform: list[int] = []
        self.names: dict[str, int] = {}
        self.platforms: dict[str, int] = {}

    def add(self, event_id: str, ts: int, actor: str, target: str, kind: int, platform: str) -> None:
        names, platforms = self.names, self.platforms
        self.ids.append(event_id)
        self.ts.append(ts)
        self.actor.append(names.setdefault(actor, len(names)))
        self.target.append(names.setdefault(target, len(names)))
        self.kind.append(kind)
        self.platform.append(platforms.setdefault(platform, len(platforms)))

    def build(self) -> EventColumns:
        return EventColumns(np.asarray(self.ts, np.int64), np.asarray(self.actor, np.int32),
                            np.asarray(self.target, np.int32), np.asarray(self.kind, np.int8),
                            np.asarray(self.platform, np.int16), list(self.names), list(self.platforms) or [""])
