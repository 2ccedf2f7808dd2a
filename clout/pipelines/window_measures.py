"""Each window's graph on a key of its own: influence (PageRank and the rest) and lockstep groups.

Keyed by window start, so windows are measured concurrently and on different workers. A window's
key gets the chunks of its `size/period` slices (slices.py), measures an on-time pane when the
watermark passes the window's end and a final pane at end + allowed lateness (again only if events
came in between; events that reach it after its final pane, processing lag rather than event
lateness, are measured once more when the window closes). Each pane goes on to the window's
scoring step (window_scores.py), and its lockstep groups also to the later windows whose
recurrence test reads them.

State is the truth: chunks and pane records in one bag with a receipts bag beside it, the worker's
copy checked against the receipts (state_cache.py). Nothing is cleared while the window is open;
`grace_ms` after its final pane the state is dropped and the key marked closed, so a chunk that
comes even later is counted and dropped instead of starting a window of its stragglers alone.
No timer is ever set behind the watermark (a runner may drop it): the close does the catching up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from clout.anomalies.config import LockstepConfig
from clout.anomalies.flag import Group
from clout.anomalies.lockstep import WindowGroups, find_groups
from clout.influence.scores import InfluenceConfig, InfluenceTable, window_influence
from clout.model.columns import EventColumns, canonical, concat
from clout.model.windows import WindowPolicy, window_id
from clout.pipelines.slices import Chunk, ChunkId, to_windows
from clout.pipelines.state_cache import Receipts, cache_for, digest

_PANE = "pane"  # a pane record in the bag: (_PANE, final)
# How long (event time) a window's chunks and panes outlive its final pane. Prism's watermark can run
# ahead of chunks still on their way: by over an hour of event time when a replay runs thousands of
# times faster than real time (the lossy-link fault trial), and a chunk that finds its window closed is
# lost to it. A day of a window's chunks costs little (they are columns, a few MB for the Higgs day).
WINDOW_GRACE_MS = 24 * 3_600_000


class MeasuredPane(NamedTuple):
    """A window's pane measured: its events (canonical), raw influence and lockstep groups."""

    start_ms: int
    final: bool
    events: EventColumns
    raw: InfluenceTable
    groups: WindowGroups


class EarlierGroups(NamedTuple):
    """The lockstep groups of window `start_ms`'s pane, sent to a later window for its recurrence test."""

    start_ms: int
    final: bool
    events: int
    groups: list[Group]


@dataclass
class _Window:
    """The worker's copy of one window's chunks and panes, as state holds them."""

    chunks: dict[ChunkId, EventColumns] = field(default_factory=dict)
    on_time: bool = False
    final: bool = False
    dirty: bool = False
    closed: bool = False

    def events(self) -> EventColumns:
        return canonical(concat([self.chunks[c] for c in sorted(self.chunks, key=repr)]))


@dataclass(frozen=True)
class Measures:
    """What a window's key computes from its events (picklable, Beam-free)."""

    influence: InfluenceConfig
    lockstep: LockstepConfig

    def __call__(self, start_ms: int, end_ms: int, final: bool, events: EventColumns) -> MeasuredPane:
        return MeasuredPane(start_ms, final, events, window_influence(events, self.influence),
                            find_groups(events, window_id(start_ms, end_ms), self.lockstep))


class MeasureWindow(beam.DoFn):
    """(window start, chunk) -> the window's measured panes, keyed by window start, and its groups
    keyed by each later window that reads them."""

    DUE = TimerSpec("due", TimeDomain.WATERMARK)
    GC = TimerSpec("gc", TimeDomain.WATERMARK)
    CHUNKS = BagStateSpec("chunks", PickleCoder())
    RECEIPTS = BagStateSpec("receipts", VarIntCoder())
    CLOSED = ReadModifyWriteStateSpec("closed", VarIntCoder())

    def __init__(self, policy: WindowPolicy, measures: Measures, memory_ms: int, single_worker: bool = False,
                 grace_ms: int = WINDOW_GRACE_MS) -> None:
        self.policy = policy
        self.measures = measures
        self.memory_ms = memory_ms
        self.single_worker = single_worker
        self.grace_ms = grace_ms
        self.cache_token = uuid.uuid4().hex
        self.panes = Metrics.counter("clout.graph", "windows_measured")
        self.dropped = Metrics.counter("clout.graph", "chunks_after_close_dropped")

    def setup(self) -> None:
        self.cache = cache_for(self.cache_token, self.single_worker, max_keys=1024)

    def process(self, element: tuple[int, Chunk], key: Any = beam.DoFn.KeyParam,
                due: Any = beam.DoFn.TimerParam(DUE), gc: Any = beam.DoFn.TimerParam(GC),
                chunks: Any = beam.DoFn.StateParam(CHUNKS), receipts: Any = beam.DoFn.StateParam(RECEIPTS),
                closed: Any = beam.DoFn.StateParam(CLOSED)) -> Iterator[Any]:
        chunk_id, _, events = element[1]
        with self._holding(key, chunks, receipts, closed) as entry:
            memo: _Window = entry.value
            if memo.closed:
                self.dropped.inc()
                return iter(())
            if chunk_id not in memo.chunks:
                memo.chunks[chunk_id] = events
                memo.dirty = True
                self._append(entry, chunks, receipts, (chunk_id, events), digest(chunk_id))
            self._arm(key, memo, due)
        gc.set(Timestamp(micros=(self._final_at(key) + self.grace_ms) * 1000))
        return iter(())

    @on_timer(DUE)
    def fire(self, key: Any = beam.DoFn.KeyParam, when: Any = beam.DoFn.TimestampParam,
             due: Any = beam.DoFn.TimerParam(DUE), chunks: Any = beam.DoFn.StateParam(CHUNKS),
             receipts: Any = beam.DoFn.StateParam(RECEIPTS)) -> Iterator[tuple[int, Any]]:
        now = when.micros // 1000
        with self._holding(key, chunks, receipts) as entry:
            memo: _Window = entry.value
            final = now >= self._final_at(key)
            out: list[tuple[int, Any]] = []
            if memo.dirty or not final:  # else a final pane with nothing new: the on-time pane stands
                measured = self.measures(key, key + self.policy.size_ms, final, memo.events())
                out = [(key, measured), *self._to_later_windows(measured)]
                self.panes.inc()
            memo.dirty, memo.on_time, memo.final = False, True, memo.final or final
            record = (_PANE, final)
            self._append(entry, chunks, receipts, record, digest((record, entry.receipts.count)))
            self._arm(key, memo, due)
        return iter(out)

    @on_timer(GC)
    def close(self, key: Any = beam.DoFn.KeyParam, chunks: Any = beam.DoFn.StateParam(CHUNKS),
              receipts: Any = beam.DoFn.StateParam(RECEIPTS), closed: Any = beam.DoFn.StateParam(CLOSED)
              ) -> Iterator[tuple[int, Any]]:
        """The final pane if it is missing or chunks came after it (processing lag), then the window
        is closed. (A runner draining at the end of input may fire this without the final timer.)"""
        out: list[tuple[int, Any]] = []
        with self._holding(key, chunks, receipts, closed) as entry:
            memo: _Window = entry.value
            if memo.chunks and (memo.dirty or not memo.final):
                measured = self.measures(key, key + self.policy.size_ms, True, memo.events())
                out = [(key, measured), *self._to_later_windows(measured)]
                self.panes.inc()
            memo.chunks.clear()
            memo.closed = True  # the copy stays, closed, until the cache lets it go; then state says so
        chunks.clear()
        receipts.clear()
        closed.write(1)
        return iter(out)

    def _to_later_windows(self, measured: MeasuredPane) -> Iterator[tuple[int, EarlierGroups]]:
        """The pane's groups to every window whose recurrence test reads them: those starting after this
        one ends and at most `memory_ms` after it starts. Empty on-time groups are not sent (a window
        that hears nothing of an earlier one takes it as groupless); a final pane's always are, as
        they replace the on-time pane's."""
        groups = measured.groups.groups
        if not groups and not measured.final:
            return
        message = EarlierGroups(measured.start_ms, measured.final, len(measured.events), groups)
        first = measured.start_ms + self.policy.size_ms
        for later in range(first, measured.start_ms + self.memory_ms + 1, self.policy.slice_ms):
            yield later, message

    def _holding(self, key: Any, chunks: Any, receipts: Any, closed: Any = None) -> Any:
        """The window's copy; built from state when missing or (on several workers) when it differs.
        The closed mark is read only then: a copy that exists knows whether its window closed."""
        return self.cache.holding(key, lambda: Receipts.of(receipts.read()),
                                  lambda: self._rebuild(chunks, closed), _Window)

    @staticmethod
    def _append(entry: Any, chunks: Any, receipts: Any, item: Any, receipt: int) -> None:
        chunks.add(item)
        receipts.add(receipt)
        entry.receipts = entry.receipts.plus(receipt)

    @staticmethod
    def _rebuild(chunks: Any, closed: Any) -> _Window:
        memo = _Window(closed=bool(closed.read()) if closed is not None else False)
        for item in chunks.read():
            if item[0] == _PANE:
                memo.on_time, memo.final = True, memo.final or item[1]
                memo.dirty = False
            elif item[0] not in memo.chunks:
                memo.chunks[item[0]] = item[1]
                memo.dirty = True
        return memo

    def _arm(self, key: int, memo: _Window, due: Any) -> None:
        """On time at the end, final at end + lateness; events after the final pane are measured at the
        close (a timer set behind the watermark may never fire)."""
        if not memo.on_time:
            due.set(Timestamp(micros=(key + self.policy.size_ms) * 1000))
        elif not memo.final:
            due.set(Timestamp(micros=self._final_at(key) * 1000))

    def _final_at(self, start: int) -> int:
        return self.policy.final_ms(start)


class MeasureWindows(beam.PTransform):
    """Chunks -> (window start, MeasuredPane) and (later window start, EarlierGroups)."""

    def __init__(self, policy: WindowPolicy, measures: Measures, memory_ms: int, horizon_ms: int | None,
                 single_worker: bool = False) -> None:
        super().__init__()
        self.policy = policy
        self.horizon_ms = horizon_ms
        self.measure = MeasureWindow(policy, measures, memory_ms, single_worker)

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        return (
            chunks
            # Typed where the keys are made, so the state key's coder is deterministic (VarIntCoder).
            | "ToWindows" >> beam.FlatMap(to_windows, self.policy, self.horizon_ms).with_output_types(tuple[int, Any])
            | "Global" >> beam.WindowInto(GlobalWindows())
            | "MeasureWindow" >> beam.ParDo(self.measure).with_input_types(tuple[int, Any])
            .with_output_types(tuple[int, Any])  # keyed by window start again, for ScoreWindow
        )
