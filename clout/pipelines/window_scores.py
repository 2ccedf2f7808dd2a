"""Each window scored and written on a key of its own, once its measures and every shard's verdicts are in.

A window's key hears three things: its measured pane (window_measures.py: events, raw influence,
lockstep groups), each account shard's verdicts on it (window_graph.py: bots, bursts,
microclusters), and the lockstep groups of the earlier windows its recurrence test reads. They
are all stamped at or before the pane's deadline, so when the watermark passes the window's end
(+1 ms) the on-time pane's inputs are all here, and at end + lateness (+1 ms) the final pane's.
The pane is then scored (clean scores leave out flagged fake engagers) and written.

What a pane uses is chosen by rule, not by arrival: the fullest message of each sender that its
version allows (a final pane may use final messages; an earlier window's final groups count once
that window's final deadline has passed). So a replay chooses the same inputs, and writes the same.
A message that comes after its pane was written (Prism's watermark can run ahead of data in flight)
is taken in by the next pane: after the on-time pane by the final one, after the final pane by the
window's close, which writes the final pane again if what it would choose changed. Timers are
never set behind the watermark (a runner may drop them).
Groups of windows before the replay horizon were written before a restart: they are read from Redis.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from clout.anomalies.config import Thresholds
from clout.anomalies.detect import Findings, ShardDetectors, in_order
from clout.anomalies.flag import Group
from clout.anomalies.lockstep import recurring_flags
from clout.anomalies.verdicts import Context, flags_of
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy, window_id
from clout.pipelines.account_verdicts import AccountPane, AccountShards, AccountSnapshots
from clout.pipelines.sink import CLOSE_GRACE_MS
from clout.pipelines.slices import SliceChunks
from clout.pipelines.state_cache import Receipts, cache_for, digest
from clout.pipelines.window_graph import AccountShardPanes, PaneResult
from clout.pipelines.window_measures import WINDOW_GRACE_MS, EarlierGroups, MeasuredPane, Measures, MeasureWindows
from clout.store.window_results import ResultsConfig, ScoredPane, WindowResults

Message = MeasuredPane | PaneResult | EarlierGroups | AccountPane
# How long after its final pane a window's results may still be rewritten: ScoreWindow's close, after
# the measuring key's grace and the sink's. A restart recomputes windows not closed (recovery.py).
REWRITES_END_AFTER_FINAL_MS = WINDOW_GRACE_MS + CLOSE_GRACE_MS
_log = logging.getLogger(__name__)


def fullest(messages: Sequence[Any], final_allowed: bool) -> Any | None:
    """The message to use: the one with most events, a final one before an on-time one of as many;
    final ones only if `final_allowed`."""
    usable = [m for m in messages if final_allowed or not m.final]
    return max(usable, key=lambda m: (_events(m), m.final), default=None)


def _identity(message: Message) -> tuple[Any, ...]:
    """Who sent a message and which pane it is: what its receipt names."""
    if isinstance(message, AccountPane):
        return ("account", message.shard), message.start_ms, True, len(message.candidates)
    sender = message.key if isinstance(message, PaneResult) else type(message).__name__
    return sender, message.start_ms, message.final, _events(message)


def _events(message: Message) -> int:
    return len(message.events) if isinstance(message, MeasuredPane) else message.events


def account_flags(messages: Sequence[Message], shards: int, config: Any) -> tuple[list[Any], bool]:
    """The window's account verdicts, once every shard's AccountPane is in: (flags, whether complete).
    Every shard's Summary makes the Context; each shard's candidates are judged against it."""
    panes = {m.shard: m for m in messages if isinstance(m, AccountPane)}
    if len(panes) < shards:
        return [], False
    context = Context.combine([panes[s].summary for s in range(shards)], config)
    return [f for s in range(shards) for f in flags_of(panes[s].candidates, context, config)], True


@dataclass
class _Inbox:
    """The worker's copy of one window's messages and what its last pane used, as state holds them."""

    messages: list[Message] = field(default_factory=list)
    written: Any = None  # (final, what it used) of the last pane written
    closed: bool = False


class ScoreWindow(beam.DoFn):
    """(window start, message) -> the window's panes scored and written; emits each written window's end.

    State is the truth (the messages, what the last pane used, the closed mark); the worker's copy is
    checked against the messages' receipts before use (state_cache.py), so no state is read per
    message on a runner with one worker process."""

    DUE = TimerSpec("due", TimeDomain.WATERMARK)
    GC = TimerSpec("gc", TimeDomain.WATERMARK)
    INBOX = BagStateSpec("inbox", PickleCoder())
    RECEIPTS = BagStateSpec("receipts", VarIntCoder())
    WRITTEN = ReadModifyWriteStateSpec("written", PickleCoder())  # (final, what it used)
    CLOSED = ReadModifyWriteStateSpec("closed", VarIntCoder())

    def __init__(self, config: ResultsConfig, shards: int, horizon_ms: int | None,
                 results_factory: Callable[[ResultsConfig], WindowResults] = WindowResults,
                 rewrites_end_after_final_ms: int = REWRITES_END_AFTER_FINAL_MS,
                 single_worker: bool = False) -> None:
        self.config = config
        self.policy = config.policy
        self.shards = shards
        self.horizon_ms = horizon_ms
        self.results_factory = results_factory
        self.rewrites_end_after_final_ms = rewrites_end_after_final_ms
        self.single_worker = single_worker
        self.cache_token = uuid.uuid4().hex
        self.memory_ms = int(config.thresholds.lockstep.memory_hours * 3_600_000)
        self._account_config = replace(config.thresholds.account, window_ms=self.policy.size_ms)
        self.written = Metrics.counter("clout.graph", "panes_written")
        self.rewritten = Metrics.counter("clout.graph", "panes_rewritten_for_late_inputs")
        self.incomplete = Metrics.counter("clout.graph", "panes_missing_a_shard")
        self.dropped = Metrics.counter("clout.graph", "messages_after_close_dropped")

    def setup(self) -> None:
        self.results = self.results_factory(self.config)
        self.cache = cache_for(self.cache_token, self.single_worker, max_keys=4096)

    def teardown(self) -> None:
        results = getattr(self, "results", None)
        if results is not None:
            results.close()  # its Redis and Kafka clients

    def process(self, element: tuple[int, Message], key: Any = beam.DoFn.KeyParam,
                due: Any = beam.DoFn.TimerParam(DUE), gc: Any = beam.DoFn.TimerParam(GC),
                inbox: Any = beam.DoFn.StateParam(INBOX), receipts: Any = beam.DoFn.StateParam(RECEIPTS),
                written: Any = beam.DoFn.StateParam(WRITTEN), closed: Any = beam.DoFn.StateParam(CLOSED),
                timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[int]:
        with self._holding(key, inbox, receipts, written, closed) as entry:
            memo: _Inbox = entry.value
            if memo.closed:
                self.dropped.inc()
                return iter(())
            message = element[1]
            receipt = digest((_identity(message), len(memo.messages)))
            inbox.add(message)
            receipts.add(receipt)
            entry.receipts = entry.receipts.plus(receipt)
            memo.messages.append(message)
            if memo.written is None:
                due.set(Timestamp(micros=(key + self.policy.size_ms + 1) * 1000))
            elif not memo.written[0]:  # came after the on-time pane: the final pane takes it in
                due.set(Timestamp(micros=(self._final_at(key) + 1) * 1000))
            elif isinstance(message, AccountPane):  # the verdicts, a grace after the final pane: write it again
                due.set(Timestamp(micros=timestamp.micros + 1000))
        # After the window's measuring key has closed (and sent its last pane), the close catches up.
        gc.set(Timestamp(micros=(self._final_at(key) + self.rewrites_end_after_final_ms) * 1000))
        return iter(())

    @on_timer(DUE)
    def fire(self, key: Any = beam.DoFn.KeyParam, when: Any = beam.DoFn.TimestampParam,
             due: Any = beam.DoFn.TimerParam(DUE), inbox: Any = beam.DoFn.StateParam(INBOX),
             receipts: Any = beam.DoFn.StateParam(RECEIPTS), written: Any = beam.DoFn.StateParam(WRITTEN),
             closed: Any = beam.DoFn.StateParam(CLOSED)) -> Iterator[int]:
        with self._holding(key, inbox, receipts, written, closed) as entry:
            memo: _Inbox = entry.value
            before = memo.written
            final = (before is not None and before[0]) or when.micros // 1000 > self._final_at(key)
            out = self._write(key, memo, written, final, when.micros // 1000)
        if not final:
            due.set(Timestamp(micros=(self._final_at(key) + 1) * 1000))
        return iter(out)

    @on_timer(GC)
    def close(self, key: Any = beam.DoFn.KeyParam, when: Any = beam.DoFn.TimestampParam,
              inbox: Any = beam.DoFn.StateParam(INBOX), receipts: Any = beam.DoFn.StateParam(RECEIPTS),
              written: Any = beam.DoFn.StateParam(WRITTEN), closed: Any = beam.DoFn.StateParam(CLOSED)
              ) -> Iterator[int]:
        """The final pane once more if anything came after it was written, then the window is closed."""
        with self._holding(key, inbox, receipts, written, closed) as entry:
            memo: _Inbox = entry.value
            out = self._write(key, memo, written, True, when.micros // 1000)
            memo.messages, memo.closed = [], True
        inbox.clear()
        receipts.clear()
        written.clear()
        closed.write(1)
        return iter(out)

    def _holding(self, key: Any, inbox: Any, receipts: Any, written: Any, closed: Any) -> Any:
        return self.cache.holding(key, lambda: Receipts.of(receipts.read()),
                                  lambda: _Inbox(list(inbox.read()), written.read(), bool(closed.read())), _Inbox)

    def _write(self, key: int, memo: _Inbox, written: Any, final: bool, now: int) -> list[int]:
        """Write the pane its inputs choose, unless exactly that was written; the window's end if written."""
        before = memo.written
        chosen = self._choose(key, memo.messages, final, now)
        if chosen is None or (final, chosen[1]) == before:
            return []
        pane, used = chosen
        # A final pane that uses what the on-time pane used only marks the window final.
        self.results.write(pane._replace(write_users=before is None or before[1] != used))
        memo.written = (final, used)
        written.write(memo.written)
        self.written.inc()
        if before is not None and before[0] == final:
            self.rewritten.inc()
        return [key + self.policy.size_ms]

    def _choose(self, start: int, messages: list[Message], final: bool, now: int
                ) -> tuple[ScoredPane, tuple[Any, ...]] | None:
        """The pane to write from the inbox, and a record of which messages it used; None before the
        window's own measures are in (a window with no events never has any)."""
        pane = fullest([m for m in messages if isinstance(m, MeasuredPane) and m.start_ms == start], final)
        if pane is None:
            return None
        shard_results = [fullest([m for m in messages if isinstance(m, PaneResult) and m.key == shard], final)
                         for shard in range(self.shards)]
        if any(r is None for r in shard_results):
            self.incomplete.inc()
            _log.debug("window %s pane (final=%s, at %d) has no verdicts from shards %s yet",
                         window_id(start, start + self.policy.size_ms), final, now,
                         [s for s, r in enumerate(shard_results) if r is None])
        by_window: dict[int, list[EarlierGroups]] = {}
        for m in messages:
            if isinstance(m, EarlierGroups):
                by_window.setdefault(m.start_ms, []).append(m)
        earlier = {w: fullest(ms, now > self._final_at(w)) for w, ms in sorted(by_window.items())}
        groups = [g for m in earlier.values() if m is not None for g in m.groups] + self._groups_before_horizon(start)
        flags = [f for r in shard_results if r is not None for f in r.value]
        flags += recurring_flags(pane.groups, groups, self.config.thresholds.lockstep)
        # Account verdicts join the final pane: each shard sends its part a processing-lag grace after
        # the window is final (account_verdicts.py), and the final pane is written again with them.
        verdicts, complete = account_flags(messages, self.shards, self._account_config) if final else ([], False)
        flags += verdicts
        findings = Findings(in_order(flags), list(pane.groups.groups))
        used = ((len(pane.events), pane.final),
                tuple(None if r is None else (r.events, r.final) for r in shard_results),
                tuple((w, None if m is None else (m.events, m.final)) for w, m in earlier.items()), complete)
        end = start + self.policy.size_ms
        return ScoredPane(start, end, final, pane.events, pane.raw, findings), used

    def _groups_before_horizon(self, start: int) -> list[Group]:
        """Groups of the earlier windows a restart does not recompute, as the run before it wrote them."""
        if self.horizon_ms is None or start - self.memory_ms >= self.horizon_ms:
            return []
        size, period = self.policy.size_ms, self.policy.slice_ms
        ids = [window_id(s, s + size) for s in range(start - self.memory_ms, min(start, self.horizon_ms), period)]
        return self.results.flag_writer.earlier_groups(ids)

    def _final_at(self, start: int) -> int:
        return self.policy.final_ms(start)


class ShardFindings:
    """An account shard's analysis of a pane: its accounts' flags (picklable factory, one detector
    set per shard key, kept in the key's derived cache so it is rebuilt with the slices)."""

    def __init__(self, thresholds: Thresholds, policy: WindowPolicy, shards: int) -> None:
        self.thresholds = thresholds
        self.policy = policy
        self.shards = shards

    def __call__(self) -> Callable[[Pane, dict[str, Any], Any], Any]:
        def analyse(pane: Pane, derived: dict[str, Any], shard: Any) -> Any:
            if "detectors" not in derived:
                derived["detectors"] = ShardDetectors(self.thresholds, self.policy, int(shard), self.shards)
            return derived["detectors"].find(pane)
        return analyse


class WindowGraphs(beam.PTransform):
    """Event batches -> every window measured, judged by every account shard, scored and written;
    emits the end (ms) of each window a pane was written for."""

    def __init__(self, config: ResultsConfig, context_ms: int, horizon_ms: int | None,
                 snapshots: AccountSnapshots, single_worker: bool = False,
                 results_factory: Callable[[ResultsConfig], WindowResults] = WindowResults) -> None:
        super().__init__()
        self.config = config
        self.snapshots = snapshots
        self.results_factory = results_factory
        self.context_ms = context_ms
        self.horizon_ms = horizon_ms
        self.single_worker = single_worker

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        config, policy, shards = self.config, self.config.policy, self.config.shards
        memory_ms = int(config.thresholds.lockstep.memory_hours * 3_600_000)
        chunks = batches | "SliceChunks" >> beam.ParDo(SliceChunks(policy.slice_ms))
        measured = chunks | "MeasureWindows" >> MeasureWindows(
            policy, Measures(config.influence, config.thresholds.lockstep), memory_ms, self.horizon_ms,
            self.single_worker)
        judged = (chunks | "JudgeAccountShards" >> AccountShardPanes(
            policy, self.context_ms, self.horizon_ms, ShardFindings(config.thresholds, policy, shards), shards,
            self.single_worker)
            | "ByWindow" >> beam.Map(lambda result: (result.start_ms, result)).with_output_types(tuple[int, Any]))
        accounts = chunks | "FoldAccountShards" >> AccountShards(
            policy, config.thresholds.account, shards, self.snapshots, self.horizon_ms, self.single_worker)
        return ((measured, judged, accounts) | "Inputs" >> beam.Flatten()
                | "ScoreWindow" >> beam.ParDo(ScoreWindow(config, shards, self.horizon_ms, self.results_factory,
                                                         single_worker=self.single_worker))
                .with_input_types(tuple[int, Any]))
