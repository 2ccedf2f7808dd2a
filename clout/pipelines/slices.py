"""Event batches -> chunks of one slice (one window period) each, and the keys they travel under.

The analysis is keyed two ways so it spreads over workers: by window start for what needs a whole
window (PageRank, lockstep groups, the scores) and by account shard for what judges one account
over a day of its activity (bot-likeness, bursts, MIDAS-R microclusters). A chunk goes to each of
the `size/period` windows its slice belongs to, and to each shard owning one of its accounts, with
the rows that shard's accounts are in (as actor or target): at most two copies of an event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import TimestampedValue

from clout.anomalies.microclusters import shard_of
from clout.model.columns import EventColumns
from clout.model.windows import WindowPolicy
from clout.pipelines.decode import EventBatch

# (batch id, slice start): names a chunk so a replayed chunk is held once
ChunkId = tuple[Any, int]
Chunk = tuple[ChunkId, int, EventColumns]


class SliceChunks(beam.DoFn):
    """A batch of events -> one chunk per slice of event time, stamped at its slice (or its earliest event)."""

    def __init__(self, slice_ms: int) -> None:
        self.slice_ms = slice_ms

    def process(self, batch: EventBatch) -> Iterator[TimestampedValue]:
        batch_id, events = batch
        slices = events.ts - events.ts % self.slice_ms
        earliest = int(events.ts.min())
        for slice_start in np.unique(slices).tolist():
            chunk = events.take(slices == slice_start, compact=True)
            yield TimestampedValue(((batch_id, slice_start), slice_start, chunk), max(slice_start, earliest) / 1000)


def to_windows(chunk: Chunk, policy: WindowPolicy, horizon_ms: int | None) -> Iterator[tuple[int, Chunk]]:
    """(window start, chunk) for every window of the chunk's slice that is analysed (not before the horizon)."""
    for start in policy.window_starts(chunk[1]):
        if horizon_ms is None or start >= horizon_ms:
            yield start, chunk


def to_shards(chunk: Chunk, shards: int) -> Iterator[tuple[int, Chunk]]:
    """(shard, the chunk's rows with an account of the shard) for every shard, the empty ones too: each
    shard then knows every window that has events, and reports on it."""
    chunk_id, slice_start, events = chunk
    owner = np.fromiter((shard_of(n, shards) for n in events.names), dtype=np.int64, count=len(events.names))
    actor, target = owner[events.actor], owner[events.target]
    for shard in range(shards):
        rows = (actor == shard) | (target == shard)
        yield shard, (chunk_id, slice_start, events.take(rows, compact=True))
