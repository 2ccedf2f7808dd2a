"""Each account shard's events with a day of context, analysed when each window is complete.

Bot-likeness looks at a day of an actor's activity, bursts compare a window with earlier ones,
MIDAS-R is a stream over the epoch: per-account verdicts that need context. So this step is keyed
by account shard (see slices.py: a shard gets the rows its accounts are in), gathers its events by
slice (one window period), as columns, and keeps `context` of event time behind every window it
still has to analyse. Each slice is held once, not once per window.

Panes, as Beam's default trigger gives them: an on-time pane when the watermark passes a window's
end (results visible while late data may still come), and a final pane at end + allowed lateness,
recomputed only when late data arrived in between. Every pane is a pure function of the window's
events and its context, so a restart that replays them (see recovery.py: the read starts
`context` earlier than the oldest open window) finds exactly the same. Each pane analysed goes on
as a `PaneResult` to the window's scoring step (window_scores.py).

State is the truth: the chunks and a record of every pane written are appended to rotating bags
(a chunk to bag (slice // span) % 4, a pane record to its window's), each with a receipts bag beside
it; a bag is cleared once all it holds is older than anything still needed, and written again only
two spans later, so a clear and an append never meet in one bundle (Prism may reorder the two). The
slices in worker memory are a cache checked against the receipts (state_cache.py), rebuilt from the
bags whenever they differ; so are the analysis's own derived structures (`_Slices.derived`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from clout.model.columns import EventColumns, canonical, concat
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy
from clout.pipelines.slices import Chunk, ChunkId, to_shards
from clout.pipelines.state_cache import Receipts, cache_for, digest

N_BAGS = 4
_PANE = "pane"  # first field of a pane record in a bag: (_PANE, window start, final)

# Analyses a pane of the key (a shard) and returns what goes on to the window's scoring. The dict is
# the analysis's own cache for this key, emptied whenever the slices are rebuilt from state.
Analyse = Callable[[Pane, dict[str, Any], Any], Any]


class PaneResult(NamedTuple):
    """One key's analysis of one pane of a window: `events` is how many events of the window the key
    held (a later pane of the same window holds at least as many)."""

    key: Any
    start_ms: int
    final: bool
    events: int
    value: Any


@dataclass
class _Slices:
    """The worker's copy of the events by slice and the windows' progress, as state holds them."""

    events: dict[int, list[EventColumns]] = field(default_factory=dict)
    chunk_ids: dict[int, set[ChunkId]] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # window starts with events not yet in a pane
    on_time: set[int] = field(default_factory=set)  # window starts whose on-time pane is written
    final: set[int] = field(default_factory=set)  # window starts whose final pane is written
    floor_ms: int = -(2**62)  # slices before this are forgotten
    bag_receipts: list[Receipts] = field(default_factory=lambda: [Receipts()] * N_BAGS)
    derived: dict[str, Any] = field(default_factory=dict)
    canonical: dict[int, EventColumns] = field(default_factory=dict)  # slice start -> its merged chunks
    armed: set[int] = field(default_factory=set)  # deadlines this worker has set a timer for

    def add(self, chunk_id: ChunkId, slice_start: int, events: EventColumns) -> bool:
        ids = self.chunk_ids.setdefault(slice_start, set())
        if chunk_id in ids:
            return False
        ids.add(chunk_id)
        self.events.setdefault(slice_start, []).append(events)
        self.canonical.pop(slice_start, None)
        return True

    def slice(self, slice_start: int) -> EventColumns:
        """One slice's events, canonical (sorted names, rows in a fixed order) whatever the chunks' order."""
        merged = self.canonical.get(slice_start)
        if merged is None:
            merged = self.canonical[slice_start] = canonical(concat(self.events.get(slice_start, [])))
        return merged

    def between(self, start_ms: int, end_ms: int, slice_ms: int) -> EventColumns:
        return canonical(concat([self.slice(s) for s in range(start_ms, end_ms, slice_ms) if s in self.events]))

    def slices_between(self, start_ms: int, end_ms: int) -> dict[int, EventColumns]:
        return {s: self.slice(s) for s in sorted(self.events) if start_ms <= s < end_ms}

    def forget_before(self, cutoff_ms: int) -> None:
        for slice_start in [s for s in self.events if s < cutoff_ms]:
            del self.events[slice_start]
            del self.chunk_ids[slice_start]
            self.canonical.pop(slice_start, None)
        for starts in (self.on_time, self.final, self.dirty):
            starts.difference_update({w for w in starts if w < cutoff_ms})
        self.floor_ms = max(self.floor_ms, cutoff_ms)


def _receipt(item: tuple[Any, ...]) -> int:
    """A bag item's receipt: its chunk id, or the whole pane record."""
    return digest(item if item[0] == _PANE else item[0])


class AnalyseWindows(beam.DoFn):
    """(key, chunk) -> panes analysed by `analyse` when the watermark passes each window's end and
    end + lateness. Windows that start before `horizon_ms` (complete in Redis before a restart)
    only serve as context."""

    DUE = TimerSpec("due", TimeDomain.WATERMARK)
    BAG0, BAG1, BAG2, BAG3 = (BagStateSpec(f"slices{i}", PickleCoder()) for i in range(N_BAGS))
    RCPT0, RCPT1, RCPT2, RCPT3 = (BagStateSpec(f"receipts{i}", VarIntCoder()) for i in range(N_BAGS))

    def __init__(self, policy: WindowPolicy, context_ms: int, horizon_ms: int | None,
                 analyse_factory: Callable[[], Analyse], single_worker: bool = False) -> None:
        self.policy = policy
        self.single_worker = single_worker
        self.context_ms = max(context_ms, policy.size_ms)
        self.horizon_ms = horizon_ms
        self.analyse_factory = analyse_factory
        self.cache_token = uuid.uuid4().hex
        self.keep_ms = self.context_ms + policy.size_ms + policy.lateness_s * 1000 + policy.slice_ms
        # One bag spans `keep`: at most three are in use, and a cleared bag is next written two spans later.
        self.bag_span_ms = self.keep_ms - self.keep_ms % policy.slice_ms + policy.slice_ms
        self.panes = Metrics.counter("clout.graph", "shard_panes_analysed")
        self.late_chunks = Metrics.counter("clout.graph", "chunks_after_final")
        self.dropped_chunks = Metrics.counter("clout.graph", "chunks_after_forget_dropped")
        self.rebuilds = Metrics.counter("clout.graph", "cache_rebuilds")

    def setup(self) -> None:
        self.analyse = self.analyse_factory()
        self.cache = cache_for(self.cache_token, self.single_worker, max_keys=64)

    def teardown(self) -> None:
        close = getattr(getattr(self, "analyse", None), "close", None)
        if close is not None:
            close()  # the analysis's Redis and Kafka clients

    def process(self, element: tuple[Any, Chunk], key: Any = beam.DoFn.KeyParam, due: Any = beam.DoFn.TimerParam(DUE),
                bag0: Any = beam.DoFn.StateParam(BAG0), bag1: Any = beam.DoFn.StateParam(BAG1),
                bag2: Any = beam.DoFn.StateParam(BAG2), bag3: Any = beam.DoFn.StateParam(BAG3),
                rcpt0: Any = beam.DoFn.StateParam(RCPT0), rcpt1: Any = beam.DoFn.StateParam(RCPT1),
                rcpt2: Any = beam.DoFn.StateParam(RCPT2), rcpt3: Any = beam.DoFn.StateParam(RCPT3)) -> Iterator[None]:
        chunk_id, slice_start, events = element[1]
        bags, receipts = (bag0, bag1, bag2, bag3), (rcpt0, rcpt1, rcpt2, rcpt3)
        with self._holding(key, bags, receipts) as entry:
            memo: _Slices = entry.value
            if slice_start < memo.floor_ms:
                self.dropped_chunks.inc()  # its windows were analysed and forgotten long ago
            elif memo.add(chunk_id, slice_start, events):
                self._append(entry, bags, receipts, self._bag_of(slice_start), (chunk_id, slice_start, events))
                touched = self._own_windows(slice_start)
                memo.dirty.update(touched)
                if touched & memo.final:
                    self.late_chunks.inc()  # processing lag: its final pane is recomputed
            self._arm(memo, due)
        return iter(())

    @on_timer(DUE)
    def fire(self, key: Any = beam.DoFn.KeyParam, when: Any = beam.DoFn.TimestampParam,
             due: Any = beam.DoFn.TimerParam(DUE),
             bag0: Any = beam.DoFn.StateParam(BAG0), bag1: Any = beam.DoFn.StateParam(BAG1),
             bag2: Any = beam.DoFn.StateParam(BAG2), bag3: Any = beam.DoFn.StateParam(BAG3),
             rcpt0: Any = beam.DoFn.StateParam(RCPT0), rcpt1: Any = beam.DoFn.StateParam(RCPT1),
             rcpt2: Any = beam.DoFn.StateParam(RCPT2), rcpt3: Any = beam.DoFn.StateParam(RCPT3)
             ) -> Iterator[PaneResult]:
        bags, receipts = (bag0, bag1, bag2, bag3), (rcpt0, rcpt1, rcpt2, rcpt3)
        now = when.micros // 1000
        results = []
        with self._holding(key, bags, receipts) as entry:
            memo: _Slices = entry.value
            memo.armed = {at for at in memo.armed if at > now}  # fired, or about to: may be needed again
            for start in self._windows_due(memo, now):
                final, result = self._write_pane(key, memo, start, now)
                self._append(entry, bags, receipts, self._bag_of(start), (_PANE, start, final))
                if result is not None:
                    results.append(result)
            self._forget(memo, now, bags, receipts, entry)
            self._arm(memo, due)
        return iter(results)

    # --- state ------------------------------------------------------------------------------------

    def _holding(self, key: Any, bags: tuple[Any, ...], receipts: tuple[Any, ...]) -> Any:
        return self.cache.holding(key, lambda: Receipts.of(d for bag in receipts for d in bag.read()),
                                  lambda: self._rebuild(bags), _Slices)

    def _append(self, entry: Any, bags: tuple[Any, ...], receipts: tuple[Any, ...], bag: int, item: Any) -> None:
        receipt = _receipt(item)
        bags[bag].add(item)
        receipts[bag].add(receipt)
        entry.receipts = entry.receipts.plus(receipt)
        memo: _Slices = entry.value
        memo.bag_receipts[bag] = memo.bag_receipts[bag].plus(receipt)

    def _rebuild(self, bags: tuple[Any, ...]) -> _Slices:
        """The slices and the windows' progress from state, when this process does not hold exactly them."""
        self.rebuilds.inc()
        memo = _Slices()
        panes = []
        for i, bag in enumerate(bags):
            for item in bag.read():
                memo.bag_receipts[i] = memo.bag_receipts[i].plus(_receipt(item))
                if item[0] == _PANE:
                    panes.append(item[1:])
                elif memo.add(item[0], item[1], item[2]):
                    memo.dirty.update(self._own_windows(item[1]))
        for start, final in sorted(panes):  # a pane's record follows the chunks it saw: replay in order
            memo.on_time.add(start)
            if final:
                memo.final.add(start)
        # Chunks that reached a window after its last pane keep it dirty: unknowable here, so a window
        # with a final pane is taken as clean and one without is recomputed at its next deadline.
        memo.dirty.difference_update(memo.final)
        return memo

    def _forget(self, memo: _Slices, now: int, bags: tuple[Any, ...], receipts: tuple[Any, ...], entry: Any) -> None:
        """Drop slices nothing can need any more: older than every open window's context."""
        cutoff = now - self.keep_ms
        cutoff -= cutoff % self.policy.slice_ms
        memo.forget_before(cutoff)
        still_used = ({self._bag_of(s) for s in memo.events} | {self._bag_of(now)}
                      | {self._bag_of(s) for s in memo.on_time | memo.dirty})
        for bag in range(N_BAGS):
            held = memo.bag_receipts[bag]
            if bag in still_used or held.count == 0:
                continue
            bags[bag].clear()
            receipts[bag].clear()
            entry.receipts = Receipts(entry.receipts.count - held.count, entry.receipts.xor ^ held.xor)
            memo.bag_receipts[bag] = Receipts()

    # --- panes ------------------------------------------------------------------------------------

    def _write_pane(self, key: Any, memo: _Slices, start: int, now: int) -> tuple[bool, PaneResult | None]:
        """Analyse the window's pane, unless it is a final pane with nothing new since the on-time one
        (whose result then stands)."""
        end = start + self.policy.size_ms
        final = now >= self._final_at(start)
        changed = start in memo.dirty
        result = None
        if changed or not final:
            pane = Pane(start, end, memo.between(start, end, self.policy.slice_ms),
                        memo.slices_between(end - self.context_ms, end), final, changed=changed)
            result = PaneResult(key, start, final, len(pane.events), self.analyse(pane, memo.derived, key))
            self.panes.inc()
        memo.dirty.discard(start)
        memo.on_time.add(start)
        if final:
            memo.final.add(start)
        return final, result

    def _next_pane_at(self, memo: _Slices, start: int) -> int | None:
        """When window `start` is next due: on time at its end, final at end + lateness, and again
        at once if events reached it after its final pane (processing lag, not event lateness)."""
        if start in memo.final:
            return self._final_at(start) if start in memo.dirty else None
        if start not in memo.on_time:
            return start + self.policy.size_ms
        return self._final_at(start)

    def _pending(self, memo: _Slices) -> dict[int, int]:
        pending = {}
        for start in memo.dirty | (memo.on_time - memo.final):
            at = self._next_pane_at(memo, start)
            if at is not None:
                pending[start] = at
        return pending

    def _windows_due(self, memo: _Slices, now: int) -> list[int]:
        return sorted(start for start, at in self._pending(memo).items() if at <= now)

    def _arm(self, memo: _Slices, due: Any) -> None:
        """One timer per deadline (tagged by it), so a watermark that passes several deadlines at once
        fires them in one bundle: a single re-armed timer would cost the runner one round per window."""
        for at in set(self._pending(memo).values()) - memo.armed:
            due.set(Timestamp(micros=at * 1000), dynamic_timer_tag=str(at))
            memo.armed.add(at)

    def _final_at(self, start: int) -> int:
        return self.policy.final_ms(start)

    def _own_windows(self, slice_start: int) -> set[int]:
        starts = self.policy.window_starts(slice_start)
        return {s for s in starts if self.horizon_ms is None or s >= self.horizon_ms}

    def _bag_of(self, ms: int) -> int:
        return (ms // self.bag_span_ms) % N_BAGS


class AccountShardPanes(beam.PTransform):
    """Chunks -> each account shard's panes analysed by `analyse` (a `PaneResult` per shard and pane)."""

    def __init__(self, policy: WindowPolicy, context_ms: int, horizon_ms: int | None,
                 analyse_factory: Callable[[], Analyse], shards: int, single_worker: bool = False) -> None:
        super().__init__()
        self.shards = shards
        self.analyse = AnalyseWindows(policy, context_ms, horizon_ms, analyse_factory, single_worker)

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return (
            chunks
            # Typed where the keys are made: the state key's coder is the one of this step's output
            # (VarIntCoder, deterministic, as a runner that routes keys by their bytes needs).
            | "ToShards" >> beam.FlatMap(to_shards, self.shards).with_output_types(tuple[int, Any])
            | "Global" >> beam.WindowInto(GlobalWindows())
            | "AnalyseShards" >> beam.ParDo(self.analyse).with_input_types(tuple[int, Any])
        )
