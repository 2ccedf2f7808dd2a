"""Per user and window: interactions received and sent by kind, and distinct engagers.

Events are pre-aggregated inside each batch before the shuffle: per slice of event time (the
window period, so every event of a slice belongs to the same windows) and per shard of users. The
shuffle then moves one small dict per (slice, shard) and batch instead of one element per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from clout.model.events import Event
from clout.model.kinds import KIND_ORDER
from clout.model.sharding import shard_of
from clout.model.windows import WindowPolicy
from clout.pipelines.decode import EventBatch
from clout.pipelines.windows import IntoUserWindows

N_KINDS = len(KIND_ORDER)
SENT = N_KINDS  # activity[0:7] received by kind, [7:14] sent by kind, [14] set of engagers
ENGAGERS = 2 * N_KINDS

# user -> [received x7, sent x7, engagers]
Activity = list[Any]
ActivityByUser = dict[str, Activity]


def new_activity() -> Activity:
    return [0] * ENGAGERS + [set()]


def add_received(by_user: ActivityByUser, event: Event) -> None:
    """The target's half of an event: one more `kind` received, and the actor as an engager."""
    target = by_user.get(event.target)
    if target is None:
        target = by_user[event.target] = new_activity()
    target[event.kind] += 1
    target[ENGAGERS].add(event.actor)


def add_sent(by_user: ActivityByUser, event: Event) -> None:
    """The actor's half of an event: one more `kind` sent."""
    actor = by_user.get(event.actor)
    if actor is None:
        actor = by_user[event.actor] = new_activity()
    actor[SENT + event.kind] += 1


def merge_into(into: ActivityByUser, other: ActivityByUser) -> None:
    for user, activity in other.items():
        mine = into.get(user)
        if mine is None:
            into[user] = [*activity[:ENGAGERS], set(activity[ENGAGERS])]
            continue
        for i in range(ENGAGERS):
            mine[i] += activity[i]
        mine[ENGAGERS] |= activity[ENGAGERS]


class PartialActivity(beam.DoFn):
    """A batch of events -> one partial ActivityByUser per (slice, shard), timestamped in its slice and
    identified by (batch id, slice, shard) so the sink merges each exactly once."""

    def __init__(self, slice_ms: int, shards: int) -> None:
        self.slice_ms = slice_ms
        self.shards = shards

    def process(self, batch: EventBatch) -> Iterator[TimestampedValue]:
        batch_id, events = batch
        partials: dict[tuple[int, int], ActivityByUser] = {}
        for event in events:
            slice_start = event.ts - event.ts % self.slice_ms
            add_received(partials.setdefault((slice_start, shard_of(event.target, self.shards)), {}), event)
            add_sent(partials.setdefault((slice_start, shard_of(event.actor, self.shards)), {}), event)
        earliest = min(event.ts for event in events)
        for (slice_start, shard), by_user in partials.items():
            # Inside the slice (so in the same windows as its events) and not before the batch's timestamp.
            delta_id = (batch_id, slice_start, shard)
            yield TimestampedValue((shard, (delta_id, by_user)), max(slice_start, earliest) / 1000)


class EngagementCounts(beam.PTransform):
    """Event batches -> ((window start, shard), ActivityByUser delta): what each batch adds to each window."""

    def __init__(self, policy: WindowPolicy, shards: int = 8) -> None:
        super().__init__()
        self.policy = policy
        self.shards = shards

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return (
            batches
            | "PreAggregateInBatch" >> beam.ParDo(PartialActivity(self.policy.slice_ms, self.shards))
            | "IntoUserWindows" >> IntoUserWindows(self.policy)
        )
