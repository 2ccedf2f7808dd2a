"""Decode Kafka record batches into compact events; invalid records go to the dead-letter output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from clout.pipelines.source import RecordBatch
from clout.schemas import KINDS, InvalidEvent, parse_event

DEAD_LETTERS = "dead_letters"
KIND_ORDER: tuple[str, ...] = ("follow", "mention", "reply", "repost", "quote", "like", "message")
KIND_INDEX = {kind: i for i, kind in enumerate(KIND_ORDER)}
assert set(KIND_ORDER) == KINDS, "KIND_ORDER must list every schema kind"


class Event(NamedTuple):
    """What the aggregates need of an InteractionEvent, cheap to pickle in batches."""

    ts: int
    actor: str
    target: str
    kind: int  # index into KIND_ORDER


class EventBatch(NamedTuple):
    """Valid events of one Kafka batch; `batch_id` (topic, partition, first offset) names it."""

    batch_id: tuple[str, int, int]
    events: list[Event]


class DeadLetter(NamedTuple):
    raw: bytes
    reason: str
    detail: str
    source: str


class DecodeBatch(beam.DoFn):
    """One batch in, one batch of valid events out (same element count: the per-element cost stays low)."""

    def __init__(self) -> None:
        self.valid = Metrics.counter("clout.decode", "events_valid")
        self.rejected = Metrics.counter("clout.decode", "events_rejected")

    def process(self, batch: RecordBatch) -> Iterator[EventBatch | pvalue.TaggedOutput]:
        events: list[Event] = []
        for record in batch.records:
            try:
                event = parse_event(record.value or b"")
            except InvalidEvent as error:
                self.rejected.inc()
                source = f"{batch.topic}/{batch.partition}@{record.offset}"
                letter = DeadLetter(record.value or b"", error.reason.value, error.detail, source)
                yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
                continue
            events.append(Event(event.ts, event.actor, event.target, KIND_INDEX[event.kind]))
        self.valid.inc(len(events))
        if events:
            yield EventBatch((batch.topic, batch.partition, batch.records[0].offset), events)
