"""Drop events whose id was already seen: a publisher's retries and replays land in the original's
partition (records are keyed by actor), so de-duplication is keyed by partition.

State is the truth: each batch's event ids are appended to one of four rotating bags (by event time,
one horizon each); a bag is cleared only when all it holds is two horizons old, so a clear and an
append never meet in one bundle (Prism may reorder the two). The process keeps the recent ids as a
cache that is valid only for the batch that follows the last one it took in (the batch's first
offset is the cache's next offset); anything else — another worker took batches of the partition,
a bundle failed after the cache took it in, a new process — rebuilds the cache from the bags.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import BagStateSpec

from clout.pipelines.decode import DEAD_LETTERS, DecodedBatch, EventBatch
from clout.pipelines.state_cache import Receipts, cache_for

N_BAGS = 4


class RecentIds:
    """Event ids seen within `horizon_ms` of event time: catches events published twice by mistake.

    Bounded: ids older than the newest event time minus the horizon are forgotten, oldest first.
    """

    def __init__(self, horizon_ms: int, single_worker: bool = False) -> None:
        self.horizon_ms = horizon_ms
        self.single_worker = single_worker
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

    @property
    def newest(self) -> int:
        return self._newest

    def _forget_before(self, cutoff: int) -> None:
        order, ids = self._order, self._ids
        while order and order[0][0] < cutoff:
            _, old = order.popleft()
            ids.pop(old, None)


@dataclass
class _Seen:
    """The cache: recent ids, and the offset the next batch of the partition starts at."""

    ids: RecentIds
    next_offset: int = -1
    bags_with_data: set[int] = field(default_factory=set)


class DropRepeats(beam.DoFn):
    """(partition, decoded batch) -> the batch's first-seen events."""

    BAGS = tuple(BagStateSpec(f"ids{i}", PickleCoder()) for i in range(N_BAGS))

    def __init__(self, horizon_ms: int, single_worker: bool = False) -> None:
        self.horizon_ms = horizon_ms
        self.single_worker = single_worker
        self.token = uuid.uuid4().hex
        self.duplicates = Metrics.counter("clout.decode", "duplicates_dropped")
        self.valid = Metrics.counter("clout.decode", "events_valid")
        self.late = Metrics.counter("clout.decode", "events_too_late")

    def process(self, element: tuple[Any, DecodedBatch], ids0: Any = beam.DoFn.StateParam(BAGS[0]),
                ids1: Any = beam.DoFn.StateParam(BAGS[1]), ids2: Any = beam.DoFn.StateParam(BAGS[2]),
                ids3: Any = beam.DoFn.StateParam(BAGS[3])) -> Iterator[EventBatch | pvalue.TaggedOutput]:
        key, batch = element
        bags = (ids0, ids1, ids2, ids3)
        first_offset = batch.batch_id[2]
        # The receipts here are the offset chain: valid only for the batch right after the last one taken in.
        chain = Receipts(1, first_offset)
        cache = cache_for(self.token, self.single_worker)
        with cache.holding(key, lambda: chain, lambda: self._rebuild(bags)) as entry:
            seen: _Seen = entry.value
            keep = np.fromiter((not seen.ids.seen(i, t) for i, t in zip(
                batch.event_ids, batch.events.ts.tolist(), strict=True)), dtype=bool, count=len(batch.event_ids))
            bag = self._bag_of(int(batch.events.ts.max()) if len(batch.events) else seen.ids.newest)
            bags[bag].add((first_offset, batch.next_offset, batch.event_ids, batch.events.ts))
            seen.bags_with_data.add(bag)
            self._clear_old_bags(seen, bags, bag)
            seen.next_offset = batch.next_offset
            entry.receipts = Receipts(1, batch.next_offset)
        self.duplicates.inc(int((~keep).sum()))
        for row, letter in batch.late.items():
            if keep[row]:  # first seen, but beyond the allowed lateness: dead-lettered, not counted
                keep[row] = False
                self.late.inc()
                yield pvalue.TaggedOutput(DEAD_LETTERS, letter)
        self.valid.inc(int(keep.sum()))
        events = batch.events if keep.all() else batch.events.take(keep)
        if len(events):
            yield EventBatch(batch.batch_id, events)

    def _rebuild(self, bags: tuple[Any, ...]) -> _Seen:
        """The recent ids from state, batches in offset order."""
        stored = sorted(((entry, i) for i, bag in enumerate(bags) for entry in bag.read()), key=lambda e: e[0][:2])
        seen = _Seen(RecentIds(self.horizon_ms))
        for (_first, following, ids, ts), bag in stored:
            for event_id, t in zip(ids, ts.tolist(), strict=True):
                seen.ids.seen(event_id, t)
            seen.next_offset = max(seen.next_offset, following)
            seen.bags_with_data.add(bag)
        return seen

    def _bag_of(self, ts_ms: int) -> int:
        return (ts_ms // self.horizon_ms) % N_BAGS

    def _clear_old_bags(self, seen: _Seen, bags: tuple[Any, ...], current: int) -> None:
        """Bags two or more horizons behind the newest event time hold only forgotten ids."""
        newest_span = seen.ids.newest // self.horizon_ms
        live = {(newest_span - k) % N_BAGS for k in range(2)} | {current}
        for bag in sorted(seen.bags_with_data - live):
            bags[bag].clear()
            seen.bags_with_data.discard(bag)
