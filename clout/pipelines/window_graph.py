"""Each window's interaction graph in one place, analysed when the window is complete.

Influence (PageRank) and the anomaly detectors need a whole window's events, and some need more:
bot-likeness looks at a day of an actor's activity, bursts compare a window with earlier ones. So
this step gathers events by slice (one window period) on a single key and keeps `context` of event
time behind every window it still has to analyse. Each slice is held once, not once per window.

Panes, as Beam's default trigger gives them: an on-time pane when the watermark passes a window's
end (results visible while late data may still come), and a final pane at end + allowed lateness,
recomputed only when late data arrived in between. Every pane is a pure function of the window's
events and its context, so a restart that replays them (see recovery.py: the read starts
`context` earlier than the oldest open window) writes exactly the same results.

State is append-only bags, as in sink.py; the slices live in worker memory, shared by the DoFn's
instances, and are rebuilt from the bags only when the worker does not hold them. Bags rotate:
a slice goes to bag (slice // span) % 4, and a bag is cleared once all its slices are older than
anything still needed. A cleared bag is written again only two spans later, so a clear and an
append never meet in one bundle (Prism may reorder the two).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from clout.model.events import Event
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy
from clout.pipelines.decode import EventBatch
from clout.pipelines.worker_memory import shared

N_BAGS = 4
GRAPH_KEY = "graph"
# (batch id, slice start): names a chunk so a replayed chunk is held once
ChunkId = tuple[Any, int]
Chunk = tuple[ChunkId, int, list[Event]]




# Analyses a pane and writes its results; returns a summary (for the log and the tests).
Analyse = Callable[[Pane], dict[str, int]]


@dataclass
class _Slices:
    """The worker's copy of the events by slice and the windows' progress."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded: bool = False
    events: dict[int, list[Event]] = field(default_factory=dict)
    chunk_ids: dict[int, set[ChunkId]] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # window starts with events not yet in a pane
    on_time: set[int] = field(default_factory=set)  # window starts whose on-time pane is written
    final: set[int] = field(default_factory=set)  # window starts whose final pane is written
    floor_ms: int = -(2**62)  # slices before this are forgotten

    def add(self, chunk_id: ChunkId, slice_start: int, events: list[Event]) -> bool:
        ids = self.chunk_ids.setdefault(slice_start, set())
        if chunk_id in ids:
            return False
        ids.add(chunk_id)
        self.events.setdefault(slice_start, []).extend(events)
        return True

    def between(self, start_ms: int, end_ms: int) -> list[Event]:
        return [e for s in sorted(self.events) if start_ms <= s < end_ms for e in self.events[s]]

    def slices_between(self, start_ms: int, end_ms: int) -> dict[int, list[Event]]:
        """The slices themselves (copies of the lists: more events may reach a slice later)."""
        return {s: list(events) for s, events in self.events.items() if start_ms <= s < end_ms}

    def forget_before(self, cutoff_ms: int) -> None:
        for slice_start in [s for s in self.events if s < cutoff_ms]:
            del self.events[slice_start]
            del self.chunk_ids[slice_start]
        for starts in (self.on_time, self.final, self.dirty):
            starts.difference_update({w for w in starts if w < cutoff_ms})
        self.floor_ms = max(self.floor_ms, cutoff_ms)


class AnalyseWindows(beam.DoFn):
    """(key, chunk) -> panes analysed by `analyse` when the watermark passes each window's end and
    end + lateness. Windows that start before `horizon_ms` (complete in Redis before a restart)
    only serve as context."""

    DUE = TimerSpec("due", TimeDomain.WATERMARK)
    BAG0, BAG1, BAG2, BAG3 = (BagStateSpec(f"slices{i}", PickleCoder()) for i in range(N_BAGS))

    def __init__(self, policy: WindowPolicy, context_ms: int, horizon_ms: int | None,
                 analyse_factory: Callable[[], Analyse]) -> None:
        self.policy = policy
        self.context_ms = max(context_ms, policy.size_ms)
        self.horizon_ms = horizon_ms
        self.analyse_factory = analyse_factory
        self.memo_token = uuid.uuid4().hex
        self.keep_ms = self.context_ms + policy.size_ms + policy.lateness_s * 1000 + policy.slice_ms
        # One bag spans `keep`: at most three are in use, and a cleared bag is next written two spans later.
        self.bag_span_ms = self.keep_ms - self.keep_ms % policy.slice_ms + policy.slice_ms
        self.panes = Metrics.counter("clout.graph", "panes_written")
        self.late_chunks = Metrics.counter("clout.graph", "chunks_after_final")
        self.dropped_chunks = Metrics.counter("clout.graph", "chunks_after_forget_dropped")

    def setup(self) -> None:
        self.analyse = self.analyse_factory()

    def teardown(self) -> None:
        close = getattr(getattr(self, "analyse", None), "close", None)
        if close is not None:
            close()  # the analysis's Redis and Kafka clients

    def process(self, element: tuple[str, Chunk], due: Any = beam.DoFn.TimerParam(DUE),
                bag0: Any = beam.DoFn.StateParam(BAG0), bag1: Any = beam.DoFn.StateParam(BAG1),
                bag2: Any = beam.DoFn.StateParam(BAG2), bag3: Any = beam.DoFn.StateParam(BAG3)) -> Iterator[None]:
        chunk_id, slice_start, events = element[1]
        bag_list = [bag0, bag1, bag2, bag3]
        memo = self._memo()
        with memo.lock:
            self._load(memo, bag_list)
            if slice_start < memo.floor_ms:
                self.dropped_chunks.inc()  # its windows were analysed and forgotten long ago
            elif memo.add(chunk_id, slice_start, events):
                bag_list[self._bag_of(slice_start)].add((chunk_id, slice_start, events))
                touched = self._own_windows(slice_start)
                memo.dirty.update(touched)
                if touched & memo.final:
                    self.late_chunks.inc()  # processing lag: its final pane is recomputed
            self._arm(memo, due)
        return iter(())

    @on_timer(DUE)
    def fire(self, when: Any = beam.DoFn.TimestampParam, due: Any = beam.DoFn.TimerParam(DUE),
             bag0: Any = beam.DoFn.StateParam(BAG0), bag1: Any = beam.DoFn.StateParam(BAG1),
             bag2: Any = beam.DoFn.StateParam(BAG2), bag3: Any = beam.DoFn.StateParam(BAG3)) -> Iterator[int]:
        bag_list = [bag0, bag1, bag2, bag3]
        now = when.micros // 1000
        memo = self._memo()
        with memo.lock:
            self._load(memo, bag_list)
            written = self._windows_due(memo, now)
            for start in written:
                self._write_pane(memo, start, now)
            self._forget(memo, now, bag_list)
            self._arm(memo, due)
        # Window ends go on to progress tracking, which must not seal a window before its final pane.
        return iter(start + self.policy.size_ms for start in written)

    def _write_pane(self, memo: _Slices, start: int, now: int) -> None:
        end = start + self.policy.size_ms
        final = now >= self._final_at(start)
        pane = Pane(start, end, memo.between(start, end), memo.slices_between(end - self.context_ms, end), final,
                    changed=start in memo.dirty)
        self.analyse(pane)
        self.panes.inc()
        memo.dirty.discard(start)
        memo.on_time.add(start)
        if final:
            memo.final.add(start)

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
        pending = self._pending(memo)
        if pending:
            due.set(Timestamp(micros=min(pending.values()) * 1000))

    def _final_at(self, start: int) -> int:
        return start + self.policy.size_ms + self.policy.lateness_s * 1000

    def _own_windows(self, slice_start: int) -> set[int]:
        starts = self.policy.window_starts(slice_start)
        return {s for s in starts if self.horizon_ms is None or s >= self.horizon_ms}

    def _forget(self, memo: _Slices, now: int, bag_list: list[Any]) -> None:
        """Drop slices nothing can need any more: older than every open window's context."""
        cutoff = now - self.keep_ms
        cutoff -= cutoff % self.policy.slice_ms
        before = {self._bag_of(s) for s in memo.events}
        memo.forget_before(cutoff)
        still_used = {self._bag_of(s) for s in memo.events} | {self._bag_of(now)}
        for bag in before - still_used:
            bag_list[bag].clear()

    def _bag_of(self, slice_start: int) -> int:
        return (slice_start // self.bag_span_ms) % N_BAGS

    def _load(self, memo: _Slices, bag_list: list[Any]) -> None:
        """Rebuild the worker's copy from state when this process does not hold it."""
        if memo.loaded:
            return
        for bag in bag_list:
            for chunk_id, slice_start, events in bag.read():
                if memo.add(chunk_id, slice_start, events):
                    memo.dirty.update(self._own_windows(slice_start))
        memo.loaded = True

    def _memo(self) -> _Slices:
        return shared(self.memo_token, _Slices)


class SliceChunks(beam.DoFn):
    """A batch of events -> one chunk per slice of event time, on the single graph key."""

    def __init__(self, slice_ms: int) -> None:
        self.slice_ms = slice_ms

    def process(self, batch: EventBatch) -> Iterator[TimestampedValue]:
        batch_id, events = batch
        by_slice: dict[int, list[Event]] = {}
        for event in events:
            by_slice.setdefault(event.ts - event.ts % self.slice_ms, []).append(event)
        earliest = min(event.ts for event in events)
        for slice_start, chunk in by_slice.items():
            yield TimestampedValue((GRAPH_KEY, ((batch_id, slice_start), slice_start, chunk)),
                                   max(slice_start, earliest) / 1000)


class WindowGraphs(beam.PTransform):
    """Event batches -> every window's graph analysed (influence, flags) and written by `analyse`;
    emits the end (ms) of each window a pane was written for."""

    def __init__(self, policy: WindowPolicy, context_ms: int, horizon_ms: int | None,
                 analyse_factory: Callable[[], Analyse]) -> None:
        super().__init__()
        self.policy = policy
        self.analyse = AnalyseWindows(policy, context_ms, horizon_ms, analyse_factory)

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return (
            batches
            | "SliceChunks" >> beam.ParDo(SliceChunks(self.policy.slice_ms))
            | "Global" >> beam.WindowInto(GlobalWindows())
            # Typed so Beam picks a deterministic key coder for the state key.
            | "AnalyseWindows" >> beam.ParDo(self.analyse).with_input_types(tuple[str, Any])
        )
