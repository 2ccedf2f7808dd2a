"""Each account shard's long-horizon evidence, folded slice by slice, and its candidates at every window end.

The account verdicts (clout/anomalies/verdicts.py) read days of evidence per account: steady
amplification, no human rhythm, the same co-amplifiers again and again. So this step is keyed by
account shard and keeps the shard's `AccountState`: every slice (one window period) is folded into
it once, in slice order, when the watermark passes the slice's end + the allowed lateness + a grace
for processing lag (FOLD_GRACE_MS: the fold must not depend on when a chunk arrived). At each
window end, that long after it, the shard sends the window's scoring step
(window_scores.py) its Summary (its part of the cross-shard Context) and its Candidates (the
accounts that acted in the window, with their numbers); the scoring step combines every shard's
Summary and judges the candidates, so no second pass over the shards is needed.

Every shard gets every event of a slice, not only its accounts' rows: the replicated target
popularity and the fast co-amplification pairs read all of them (accounts.py). That is the step's
price: one copy of the stream per shard.

State is the truth: the chunks not yet in a snapshot, and a marker per window end reported, go to
rotating bags (by day of the slice they fold into, four days apart, so a clear and an append never
meet in one bundle) with receipts beside them; once a day the folded state is snapshotted (Beam
state, and Redis for a restart: clout/store/account_snapshots.py) and the bags it covers are
cleared. The state in worker memory is a cache checked against the receipts (state_cache.py) and
rebuilt from the snapshot and the bags whenever they differ. A chunk that comes even after its slice
was folded is folded with the next slice, on every process alike (counted: chunks_after_fold); one
older than the snapshot is already in it.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from clout.anomalies.accounts import DAY_BITS, DAY_MS, AccountState, update
from clout.anomalies.verdicts import Candidates, Summary, VerdictConfig, candidates_of, summarise
from clout.model.columns import EventColumns, canonical, concat
from clout.model.windows import WindowPolicy
from clout.pipelines.slices import Chunk, ChunkId
from clout.pipelines.state_cache import Receipts, cache_for, digest
from clout.pipelines.window_measures import WINDOW_GRACE_MS
from clout.store.account_snapshots import read_snapshot, write_snapshot
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout

N_BAGS = 4
# Event time after a window is final before its slices are folded. Prism's watermark can pass a slice
# while chunks of it are still in flight (the window's scoring takes such input in until it closes,
# window_scores.py); a chunk folded with a later slice would make the evidence depend on arrival, so
# the fold waits as long as the windows' measuring keys do (WINDOW_GRACE_MS).
FOLD_GRACE_MS = WINDOW_GRACE_MS
_REPORTED = "reported"  # first field of a marker in a bag: (_REPORTED, window end)
NEVER = -(2**62)
_log = logging.getLogger(__name__)


class AccountPane(NamedTuple):
    """One account shard's part of a window's account verdicts, sent once the window is final."""

    shard: int
    start_ms: int
    summary: Summary
    candidates: Candidates


@dataclass(frozen=True)
class AccountSnapshots:
    """Where the shards' daily snapshots go (redis None: Beam state only, for pipelines that never
    restart, as tests), and the day a restart resumes from (None: from nothing)."""

    redis: RedisTarget | None
    layout: KeyLayout = field(default_factory=KeyLayout)
    group: str = ""
    ttl_s: int = 0
    resume_from_ms: int | None = None


@dataclass
class _Accounts:
    """The worker's copy of one shard's account state and what is still to fold and report."""

    state: AccountState
    snapshot_ms: int = NEVER  # slices before this are in the snapshot
    folded_ms: int = NEVER  # slices before this are folded; every window end up to it is reported
    pending: dict[int, dict[ChunkId, EventColumns]] = field(default_factory=dict)  # fold slice -> chunks
    seen: set[ChunkId] = field(default_factory=set)  # the chunks the bags hold
    ends: set[int] = field(default_factory=set)  # window ends still to report
    bag_days: list[set[int]] = field(default_factory=lambda: [set() for _ in range(N_BAGS)])
    bag_receipts: list[Receipts] = field(default_factory=lambda: [Receipts()] * N_BAGS)
    armed: set[int] = field(default_factory=set)  # deadlines this worker has set a timer for


def _receipt(item: tuple[Any, ...]) -> int:
    return digest(item if item[0] == _REPORTED else item[0])


class FoldAccounts(beam.DoFn):
    """(shard, chunk of a whole slice) -> (window start, AccountPane) at each window's final deadline,
    for windows that start at or after `horizon_ms`."""

    DUE = TimerSpec("due", TimeDomain.WATERMARK)
    BAG0, BAG1, BAG2, BAG3 = (BagStateSpec(f"chunks{i}", PickleCoder()) for i in range(N_BAGS))
    RCPT0, RCPT1, RCPT2, RCPT3 = (BagStateSpec(f"receipts{i}", VarIntCoder()) for i in range(N_BAGS))
    SNAPSHOT = ReadModifyWriteStateSpec("snapshot", PickleCoder())  # (through ms, zlib of AccountState bytes)

    def __init__(self, policy: WindowPolicy, config: VerdictConfig, shards: int, snapshots: AccountSnapshots,
                 horizon_ms: int | None, single_worker: bool = False, grace_ms: int = FOLD_GRACE_MS) -> None:
        self.policy = policy
        self.grace_ms = grace_ms
        self.config = replace(config, window_ms=policy.size_ms)
        self.shards = shards
        self.snapshots = snapshots
        self.horizon_ms = horizon_ms
        self.single_worker = single_worker
        self.cache_token = uuid.uuid4().hex
        self.folded = Metrics.counter("clout.accounts", "slices_folded")
        self.late = Metrics.counter("clout.accounts", "chunks_after_fold")
        self.dropped = Metrics.counter("clout.accounts", "chunks_before_snapshot_dropped")
        self.rebuilds = Metrics.counter("clout.accounts", "account_cache_rebuilds")
        self.snapshots_written = Metrics.counter("clout.accounts", "snapshots_written")

    def setup(self) -> None:
        self.cache = cache_for(self.cache_token, self.single_worker, max_keys=self.shards)
        self.client: Any = None

    def teardown(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()

    def process(self, element: tuple[int, Chunk], key: Any = beam.DoFn.KeyParam, due: Any = beam.DoFn.TimerParam(DUE),
                bag0: Any = beam.DoFn.StateParam(BAG0), bag1: Any = beam.DoFn.StateParam(BAG1),
                bag2: Any = beam.DoFn.StateParam(BAG2), bag3: Any = beam.DoFn.StateParam(BAG3),
                rcpt0: Any = beam.DoFn.StateParam(RCPT0), rcpt1: Any = beam.DoFn.StateParam(RCPT1),
                rcpt2: Any = beam.DoFn.StateParam(RCPT2), rcpt3: Any = beam.DoFn.StateParam(RCPT3),
                snapshot: Any = beam.DoFn.StateParam(SNAPSHOT)) -> Iterator[None]:
        chunk_id, slice_start, events = element[1]
        bags, receipts = (bag0, bag1, bag2, bag3), (rcpt0, rcpt1, rcpt2, rcpt3)
        with self._holding(int(key), bags, receipts, snapshot) as entry:
            memo: _Accounts = entry.value
            if slice_start < memo.snapshot_ms:
                self.dropped.inc()  # folded into the snapshot already (a restart's replay starts before it)
            elif chunk_id not in memo.seen:
                fold_at = max(slice_start, memo.folded_ms)
                if fold_at > slice_start:
                    self.late.inc()
                self._append(entry, bags, receipts, (chunk_id, slice_start, fold_at, events))
                self._hold(memo, chunk_id, slice_start, fold_at, events)
            self._arm(memo, due)
        return iter(())

    @on_timer(DUE)
    def fire(self, key: Any = beam.DoFn.KeyParam, when: Any = beam.DoFn.TimestampParam,
             due: Any = beam.DoFn.TimerParam(DUE),
             bag0: Any = beam.DoFn.StateParam(BAG0), bag1: Any = beam.DoFn.StateParam(BAG1),
             bag2: Any = beam.DoFn.StateParam(BAG2), bag3: Any = beam.DoFn.StateParam(BAG3),
             rcpt0: Any = beam.DoFn.StateParam(RCPT0), rcpt1: Any = beam.DoFn.StateParam(RCPT1),
             rcpt2: Any = beam.DoFn.StateParam(RCPT2), rcpt3: Any = beam.DoFn.StateParam(RCPT3),
             snapshot: Any = beam.DoFn.StateParam(SNAPSHOT)) -> Iterator[tuple[int, AccountPane]]:
        bags, receipts = (bag0, bag1, bag2, bag3), (rcpt0, rcpt1, rcpt2, rcpt3)
        now = when.micros // 1000
        shard = int(key)
        out = []
        with self._holding(shard, bags, receipts, snapshot) as entry:
            memo: _Accounts = entry.value
            memo.armed = {at for at in memo.armed if at > now}
            for end in sorted(e for e in memo.ends if self._deadline(e) <= now):
                self._fold_before(memo, end)
                memo.ends.discard(end)
                self._append(entry, bags, receipts, (_REPORTED, end))
                start = end - self.policy.size_ms
                if self.horizon_ms is None or start >= self.horizon_ms:
                    out.append((start, self._pane(memo, shard, start, end)))
                if end // DAY_MS > memo.snapshot_ms // DAY_MS:
                    self._snapshot(memo, shard, end, snapshot, entry, bags, receipts)
            self._arm(memo, due)
        return iter(out)

    # --- folding and reporting ---------------------------------------------------------------------

    def _hold(self, memo: _Accounts, chunk_id: ChunkId, slice_start: int, fold_at: int, events: EventColumns) -> None:
        memo.seen.add(chunk_id)
        memo.pending.setdefault(fold_at, {})[chunk_id] = events
        memo.ends.update(e for e in self._window_ends(slice_start) if e > memo.folded_ms)

    def _fold_before(self, memo: _Accounts, end: int) -> None:
        """Fold every pending slice before `end`, in slice order, each slice's chunks in a fixed order."""
        for fold_at in sorted(s for s in memo.pending if s < end):
            chunks = memo.pending.pop(fold_at)
            update(memo.state, canonical(concat(list(chunks.values()))))
            self.folded.inc()
        memo.folded_ms = max(memo.folded_ms, end)

    def _pane(self, memo: _Accounts, shard: int, start: int, end: int) -> AccountPane:
        state = memo.state
        first = state.view("first_ms")
        config = replace(self.config, stream_start_ms=int(first.min()) if len(first) else end)
        return AccountPane(shard, start, summarise(state, end, config), candidates_of(state, end, config))

    def _snapshot(self, memo: _Accounts, shard: int, through: int, snapshot: Any, entry: Any,
                  bags: tuple[Any, ...], receipts: tuple[Any, ...]) -> None:
        """Once a day: the state folded through `through` to Beam state and Redis, idle accounts
        dropped first (bounded memory), and the bags it makes unneeded cleared."""
        memo.state.forget_idle(through - DAY_BITS * DAY_MS)
        blob = memo.state.to_bytes()
        snapshot.write((through, zlib.compress(blob, 1)))
        s = self.snapshots
        if s.redis is not None:
            if self.client is None:
                self.client = s.redis.connect()
            write_snapshot(self.client, s.layout, s.group, shard, self.shards, through, blob, s.ttl_s)
        self.snapshots_written.inc()
        memo.snapshot_ms = through
        # A bag is cleared once all it holds is in the snapshot and older than any window still to
        # report (a rebuild learns those windows from the chunks).
        last_needed_day = (through - self.policy.size_ms) // DAY_MS
        for bag, days in enumerate(memo.bag_days):
            held = memo.bag_receipts[bag]
            if held.count == 0 or not days or max(days) >= last_needed_day:
                continue
            bags[bag].clear()
            receipts[bag].clear()
            entry.receipts = Receipts(entry.receipts.count - held.count, entry.receipts.xor ^ held.xor)
            memo.bag_receipts[bag], memo.bag_days[bag] = Receipts(), set()
        memo.seen = {c for chunks in memo.pending.values() for c in chunks} | {
            c for c in memo.seen if c[1] >= through - self.policy.size_ms}

    # --- state -------------------------------------------------------------------------------------

    def _holding(self, shard: int, bags: tuple[Any, ...], receipts: tuple[Any, ...], snapshot: Any) -> Any:
        return self.cache.holding(shard, lambda: Receipts.of(d for bag in receipts for d in bag.read()),
                                  lambda: self._rebuild(shard, bags, snapshot), lambda: self._start(shard, None))

    def _append(self, entry: Any, bags: tuple[Any, ...], receipts: tuple[Any, ...], item: tuple[Any, ...]) -> None:
        day = (item[1] - self.policy.slice_ms if item[0] == _REPORTED else item[2]) // DAY_MS
        bag = day % N_BAGS
        receipt = _receipt(item)
        bags[bag].add(item)
        receipts[bag].add(receipt)
        entry.receipts = entry.receipts.plus(receipt)
        memo: _Accounts = entry.value
        memo.bag_receipts[bag] = memo.bag_receipts[bag].plus(receipt)
        memo.bag_days[bag].add(day)

    def _start(self, shard: int, stored: Any) -> _Accounts:
        """The state a shard starts from: its snapshot in Beam state, else the restart's in Redis, else empty."""
        if stored is not None:
            through, blob = stored
            return _Accounts(AccountState.from_bytes(zlib.decompress(blob)), through, through)
        s = self.snapshots
        if s.resume_from_ms is None or s.redis is None:
            return _Accounts(AccountState.empty(shard, self.shards))
        client = s.redis.connect()
        try:
            blob = read_snapshot(client, s.layout, s.group, shard, self.shards, s.resume_from_ms)
        finally:
            client.close()
        return _Accounts(AccountState.from_bytes(blob), s.resume_from_ms, s.resume_from_ms)

    def _rebuild(self, shard: int, bags: tuple[Any, ...], snapshot: Any) -> _Accounts:
        """The shard's state from its snapshot and its bags, when this process does not hold exactly them."""
        self.rebuilds.inc()
        memo = self._start(shard, snapshot.read())
        reported = memo.folded_ms
        chunks = []
        for bag, items in enumerate(b.read() for b in bags):
            for item in items:
                memo.bag_receipts[bag] = memo.bag_receipts[bag].plus(_receipt(item))
                if item[0] == _REPORTED:
                    reported = max(reported, item[1])
                    memo.bag_days[bag].add((item[1] - self.policy.slice_ms) // DAY_MS)
                else:
                    chunks.append(item)
                    memo.bag_days[bag].add(item[2] // DAY_MS)
        memo.folded_ms = reported
        for chunk_id, slice_start, fold_at, events in chunks:
            memo.seen.add(chunk_id)
            if fold_at < memo.snapshot_ms:
                continue  # in the snapshot already
            memo.pending.setdefault(fold_at, {})[chunk_id] = events
            memo.ends.update(e for e in self._window_ends(slice_start) if e > reported)
        folded_to, memo.folded_ms = memo.folded_ms, memo.snapshot_ms
        self._fold_before(memo, folded_to)
        return memo

    def _arm(self, memo: _Accounts, due: Any) -> None:
        for at in {self._deadline(e) for e in memo.ends} - memo.armed:
            due.set(Timestamp(micros=at * 1000), dynamic_timer_tag=str(at))
            memo.armed.add(at)

    def _deadline(self, end: int) -> int:
        """When the slices before `end` are folded: the window ending there is final, and the grace
        for processing lag has passed (a chunk still to come could not enter its slice any more)."""
        return end + self.policy.lateness_s * 1000 + self.grace_ms

    def _window_ends(self, slice_start: int) -> list[int]:
        return [start + self.policy.size_ms for start in self.policy.window_starts(slice_start)]


class AccountShards(beam.PTransform):
    """Chunks -> (window start, AccountPane) from every account shard at each window's final deadline."""

    def __init__(self, policy: WindowPolicy, config: VerdictConfig, shards: int, snapshots: AccountSnapshots,
                 horizon_ms: int | None, single_worker: bool = False, grace_ms: int = FOLD_GRACE_MS) -> None:
        super().__init__()
        self.shards = shards
        self.fold = FoldAccounts(policy, config, shards, snapshots, horizon_ms, single_worker, grace_ms)

    def expand(self, chunks: beam.PCollection) -> beam.PCollection:
        shards = self.shards
        return (
            chunks
            | "ToEveryShard" >> beam.FlatMap(lambda chunk: ((shard, chunk) for shard in range(shards)))
            .with_output_types(tuple[int, Any])
            | "Global" >> beam.WindowInto(GlobalWindows())
            | "FoldAccounts" >> beam.ParDo(self.fold).with_input_types(tuple[int, Any])
            .with_output_types(tuple[int, Any])
        )
