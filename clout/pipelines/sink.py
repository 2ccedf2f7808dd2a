"""Keep each window's running totals and write them to Redis: absolute values, window-versioned keys.

Keyed by (window start, shard), this stateful step adds each delta to the window's totals and, at
the end of the bundle, writes the new absolute figures of every user the bundle's deltas touched:
Redis is fresh while the window is open, and a user touched by many deltas of a bundle is written
once, in one pipelined round trip for the whole bundle.

Lateness is decided at the source (events beyond the allowed lateness are dead-lettered there), so
every delta that reaches this step counts. An event-time timer only garbage-collects the state, a
grace period after the window's end + lateness: a delta that reaches the window late through
processing lag (a runner may move the watermark before this step has drained its input) is still
added. A delta after that is left out, counted in `deltas_after_close_dropped`, rather than written
as a partial result. (On Prism, whose one worker process holds every key, the in-memory totals outlive
the state until the cache evicts them, and keep counting such deltas.)

Idempotent and replay-safe: every write sets a value (never increments), so a re-run or a restart
that recomputes a window overwrites it with the same result.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.coders import BooleanCoder, PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from clout.model.kinds import KIND_ORDER
from clout.model.windows import WindowPolicy, window_id
from clout.pipelines.aggregates import ENGAGERS, SENT, Activity, ActivityByUser, merge_into
from clout.pipelines.state_cache import Receipts, cache_for, digest
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout

# (window start ms, shard); a delta is (its id, what it adds)
WindowShard = tuple[int, int]
Delta = tuple[Any, ActivityByUser]
CLOSE_GRACE_MS = 3_600_000  # state outlives end + lateness by this much event time, for processing lag


@dataclass
class _Totals:
    """A window shard's running totals: what its deltas in state add up to."""

    closed: bool = False
    ids: set[Any] = field(default_factory=set)
    by_user: ActivityByUser = field(default_factory=dict)

    @classmethod
    def from_state(cls, deltas: Any, closed: Any) -> _Totals:
        totals = cls(closed=any(closed.read()))
        if not totals.closed:
            for delta_id, delta in deltas.read():
                if delta_id not in totals.ids:
                    totals.add(delta_id, delta)
        return totals

    def add(self, delta_id: Any, delta: ActivityByUser) -> None:
        self.ids.add(delta_id)
        merge_into(self.by_user, delta)


def activity_json(activity: Activity) -> bytes:
    """The reader-facing value of one user in one window (see schemas/redis_layout.py)."""
    received = {KIND_ORDER[i]: n for i, n in enumerate(activity[:SENT]) if n}
    sent = {KIND_ORDER[i]: n for i, n in enumerate(activity[SENT:ENGAGERS]) if n}
    return orjson.dumps({
        "received": received,
        "sent": sent,
        "engagers": len(activity[ENGAGERS]),
        "in": sum(received.values()),
        "out": sum(sent.values()),
    })


class AccumulateAndWrite(beam.DoFn):
    """Adds each delta to its window's totals and writes the touched users; emits the window end (ms)
    of every write, for progress tracking.

    State is the truth: append-only bags of the deltas and of their receipts (the Python SDK commits a
    value-state write as clear + append without ordering the two, and Prism can apply them out of
    order). Deltas carry an id, so a replayed delta is merged once. The running totals are a cache of
    the merged deltas, checked against the receipts before every use (see state_cache.py): a worker
    that does not hold exactly the state's deltas rebuilds them from the bag.
    """

    DELTAS = BagStateSpec("deltas", PickleCoder())
    RECEIPTS = BagStateSpec("receipts", VarIntCoder())
    CLOSED = BagStateSpec("closed", BooleanCoder())
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, target: RedisTarget, layout: KeyLayout, policy: WindowPolicy, retention_s: int,
                 horizon_ms: int | None, grace_ms: int = CLOSE_GRACE_MS, single_worker: bool = False) -> None:
        self.target = target
        self.single_worker = single_worker
        self.layout = layout
        self.size_ms = policy.size_ms
        self.close_after_ms = policy.lateness_s * 1000 + grace_ms
        self.retention_s = retention_s
        self.horizon_ms = horizon_ms
        self.cache_token = uuid.uuid4().hex  # names this transform's cache in the worker process
        self.users_written = Metrics.counter("clout.sink", "users_written")
        self.late_dropped = Metrics.counter("clout.sink", "deltas_after_close_dropped")
        self.panes_skipped = Metrics.counter("clout.sink", "deltas_before_replay_horizon")

    def setup(self) -> None:
        self.client = self.target.connect()
        self.cache = cache_for(self.cache_token, self.single_worker)
        self.reported_ends: set[int] = set()
        self.touched: dict[WindowShard, tuple[_Totals, set[str]]] = {}

    def start_bundle(self) -> None:
        self.touched = {}

    def process(self, element: tuple[WindowShard, Delta], deltas: Any = beam.DoFn.StateParam(DELTAS),
                receipts: Any = beam.DoFn.StateParam(RECEIPTS), closed: Any = beam.DoFn.StateParam(CLOSED),
                close: Any = beam.DoFn.TimerParam(CLOSE)) -> Iterator[int]:
        key, (delta_id, delta) = element
        start_ms = key[0]
        end_ms = start_ms + self.size_ms
        if self.horizon_ms is not None and start_ms < self.horizon_ms:
            self.panes_skipped.inc()  # a restart replays only part of this window: its stored result stands
            return
        with self.cache.holding(key, lambda: Receipts.of(receipts.read()),
                                lambda: _Totals.from_state(deltas, closed)) as entry:
            totals: _Totals = entry.value
            if totals.closed:
                self.late_dropped.inc()
                return
            if delta_id not in totals.ids:
                totals.add(delta_id, delta)
                deltas.add((delta_id, delta))
                receipt = digest(delta_id)
                receipts.add(receipt)
                entry.receipts = entry.receipts.plus(receipt)
            self.touched.setdefault(key, (totals, set()))[1].update(delta)
        close.set(Timestamp(micros=(end_ms + self.close_after_ms) * 1000))
        if end_ms not in self.reported_ends:  # progress needs each window end once, not once per delta
            self.reported_ends.add(end_ms)
            yield end_ms

    @on_timer(CLOSE)
    def close_window(self, key: Any = beam.DoFn.KeyParam, fired: Any = beam.DoFn.TimestampParam,
                     deltas: Any = beam.DoFn.StateParam(DELTAS), receipts: Any = beam.DoFn.StateParam(RECEIPTS),
                     closed: Any = beam.DoFn.StateParam(CLOSED),
                     forget: Any = beam.DoFn.TimerParam(FORGET)) -> Iterator[int]:
        deltas.clear()
        receipts.clear()
        closed.add(True)
        entry = self.cache.peek(key)
        # Prism's watermark can run far ahead of data still in flight during a fast replay: on its one
        # worker process the totals outlive the state (bounded by the cache), so such a delta still
        # counts. Elsewhere the copy follows the state: closed, nothing held.
        if entry is not None and not self.single_worker:
            with entry.lock:
                entry.value, entry.receipts = _Totals(closed=True), Receipts()
        forget.set(Timestamp(micros=fired.micros + self.retention_s * 1_000_000))
        return iter(())

    @on_timer(FORGET)
    def forget_window(self, closed: Any = beam.DoFn.StateParam(CLOSED)) -> Iterator[int]:
        closed.clear()
        return iter(())

    def finish_bundle(self) -> None:
        """Writes the touched users' current totals; the bundle (and the window ends it emitted for
        progress) is not done until they are in Redis."""
        if not self.touched:
            return
        with self.cache.write_lock:  # current totals, never an older total written after a newer one
            by_window: dict[int, ActivityByUser] = {}
            for key, (seen, users) in self.touched.items():
                entry = self.cache.peek(key)
                current = entry.value if entry is not None and entry.value is not None else seen
                if current.closed:
                    continue
                by_window.setdefault(key[0], {}).update(
                    {user: current.by_user.get(user) or seen.by_user[user] for user in users})
            self._write(by_window)
        self.touched = {}

    def teardown(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    def _write(self, by_window: dict[int, ActivityByUser]) -> None:
        """One pipelined round trip for every window the bundle touched."""
        layout, pipe, ttl = self.layout, self.client.pipeline(transaction=False), self.retention_s
        for start_ms, users in by_window.items():
            end_ms = start_ms + self.size_ms
            wid = window_id(start_ms, end_ms)
            activity_key = layout.activity(wid)
            received_key, engagers_key = layout.leaderboard(wid, "received"), layout.leaderboard(wid, "engagers")
            pipe.hset(activity_key, mapping={user: activity_json(a) for user, a in users.items()})
            pipe.zadd(received_key, {user: sum(a[:SENT]) for user, a in users.items()})
            pipe.zadd(engagers_key, {user: len(a[ENGAGERS]) for user, a in users.items()})
            pipe.zadd(layout.windows(), {wid: end_ms // 1000})
            for key in (activity_key, received_key, engagers_key):
                pipe.expire(key, ttl)
            self.users_written.inc(len(users))
        pipe.expire(layout.windows(), ttl)
        pipe.execute()


class WriteWindowTotals(beam.PTransform):
    """((window start, shard), delta) -> running totals -> Redis; emits the end of each written window."""

    def __init__(self, target: RedisTarget, layout: KeyLayout, policy: WindowPolicy, retention_s: int,
                 horizon_ms: int | None, single_worker: bool = False) -> None:
        super().__init__()
        self.write = AccumulateAndWrite(target, layout, policy, retention_s, horizon_ms, single_worker=single_worker)

    def expand(self, deltas: beam.PCollection) -> beam.PCollection:
        # State is keyed by the encoded (start, shard): IntoUserWindows types it, so its coder is deterministic.
        return deltas | "AccumulateAndWrite" >> beam.ParDo(self.write).with_input_types(
            tuple[tuple[int, int], Any])
