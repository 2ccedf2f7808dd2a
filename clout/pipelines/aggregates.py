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
        shards = self.shards
        user_shard = [shard_of(name, shards) for name in events.names]
        slices = (events.ts - events.ts % self.slice_ms).tolist()
        partials: dict[tuple[int, int], ActivityByUser] = {}
        names = events.names
        for slice_start, actor, target, kind in zip(slices, events.actor.tolist(), events.target.tolist(),
                                                    events.kind.tolist(), strict=True):
            received = partials.setdefault((slice_start, user_shard[target]), {})
            row = received.get(names[target])
            if row is None:
                row = received[names[target]] = new_activity()
            row[kind] += 1
            row[ENGAGERS].add(names[actor])
            sent = partials.setdefault((slice_start, user_shard[actor]), {})
            row = sent.get(names[actor])
            if row is None:
                row = sent[names[actor]] = new_activity()
            row[SENT + kind] += 1
        earliest = int(events.ts.min())
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
