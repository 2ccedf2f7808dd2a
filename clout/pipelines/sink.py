"""Keep each window's running totals and write them to Redis: absolute values, window-versioned keys.

Keyed by (window start, shard), this stateful step adds each delta to the window's totals and, at
the end of the bundle, writes the new absolute figures of every user the bundle's deltas touched:
Redis is fresh while the window is open, and a user touched by many deltas of a bundle is written
once, in one pipelined round trip for the whole bundle.

Lateness is decided at the source (events beyond the allowed lateness are dead-lettered there), so
every delta that reaches this step counts. An event-time timer at the window's end + lateness only
garbage-collects the state; the worker's in-memory totals outlive it, so a delta that reaches a
closed window late through processing lag (a runner may move the watermark before this step has
drained its input) is still added. Only when no worker holds the totals any more is such a delta
left out, counted in `deltas_after_close_dropped`, rather than written as a partial result.

Idempotent and replay-safe: every write sets a value (never increments), so a re-run or a restart
that recomputes a window overwrites it with the same result.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.coders import BooleanCoder, PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from clout.model.kinds import KIND_ORDER
from clout.model.windows import WindowPolicy, window_id
from clout.pipelines.aggregates import ENGAGERS, SENT, Activity, ActivityByUser, merge_into
from clout.pipelines.worker_memory import shared
from clout.store.client import RedisTarget
from clout.store.layout import KeyLayout

# (window start ms, shard); a delta is (its id, what it adds)
WindowShard = tuple[int, int]
Delta = tuple[Any, ActivityByUser]
_MAX_MEMO_KEYS = 50_000
Memo = OrderedDict[WindowShard, tuple[set[Any], ActivityByUser]]


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

    State is append-only bags: the Python SDK commits a value-state write as clear + append without
    ordering the two, and Prism can apply them out of order, losing the value. Deltas carry an id
    (a replayed delta is merged once); the running totals live in worker memory, shared by every
    instance of this DoFn in the process (a runner processes one key in one bundle at a time, but
    successive bundles of a key may go to different instances), and are rebuilt from the bag only
    when the worker does not hold them.
    """

    DELTAS = BagStateSpec("deltas", PickleCoder())
    CLOSED = BagStateSpec("closed", BooleanCoder())
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, target: RedisTarget, layout: KeyLayout, policy: WindowPolicy, retention_s: int,
                 horizon_ms: int | None) -> None:
        self.target = target
        self.layout = layout
        self.size_ms = policy.size_ms
        self.lateness_ms = policy.lateness_s * 1000
        self.retention_s = retention_s
        self.horizon_ms = horizon_ms
        self.memo_token = uuid.uuid4().hex  # names this transform's memo in the worker's shared memory
        self.users_written = Metrics.counter("clout.sink", "users_written")
        self.late_dropped = Metrics.counter("clout.sink", "deltas_after_close_dropped")
        self.panes_skipped = Metrics.counter("clout.sink", "deltas_before_replay_horizon")

    def setup(self) -> None:
        self.client = self.target.connect()
        self.memo_lock, self.memo = shared(self.memo_token, lambda: (threading.Lock(), Memo()))
        self.reported_ends: set[int] = set()
        self.touched: dict[WindowShard, tuple[ActivityByUser, set[str]]] = {}

    def start_bundle(self) -> None:
        self.touched = {}

    def process(self, element: tuple[WindowShard, Delta], deltas: Any = beam.DoFn.StateParam(DELTAS),
                closed: Any = beam.DoFn.StateParam(CLOSED), close: Any = beam.DoFn.TimerParam(CLOSE)) -> Iterator[int]:
        key, (delta_id, delta) = element
        start_ms = key[0]
        end_ms = start_ms + self.size_ms
        if self.horizon_ms is not None and start_ms < self.horizon_ms:
            self.panes_skipped.inc()  # a restart replays only part of this window: its stored result stands
            return
        with self.memo_lock:  # one key's deltas are merged and written in one order, whatever the threads
            window_totals = self._totals(key, delta_id, delta, deltas, closed)
            if window_totals is None:
                self.late_dropped.inc()
                return
            self.touched.setdefault(key, (window_totals, set()))[1].update(delta)
        close.set(Timestamp(micros=(end_ms + self.lateness_ms) * 1000))
        if end_ms not in self.reported_ends:  # progress needs each window end once, not once per delta
            self.reported_ends.add(end_ms)
            yield end_ms

    @on_timer(CLOSE)
    def close_window(self, fired: Any = beam.DoFn.TimestampParam,
                     deltas: Any = beam.DoFn.StateParam(DELTAS), closed: Any = beam.DoFn.StateParam(CLOSED),
                     forget: Any = beam.DoFn.TimerParam(FORGET)) -> Iterator[int]:
        deltas.clear()
        closed.add(True)
        forget.set(Timestamp(micros=fired.micros + self.retention_s * 1_000_000))
        return iter(())

    @on_timer(FORGET)
    def forget_window(self, closed: Any = beam.DoFn.StateParam(CLOSED)) -> Iterator[int]:
        closed.clear()
        return iter(())

    def _totals(self, key: WindowShard, delta_id: Any, delta: ActivityByUser, deltas: Any,
                closed: Any) -> ActivityByUser | None:
        """The window's totals with this delta added, or None when the window is closed.

        State is only appended to on the hot path: Prism serves every state read from the runner
        (no cache tokens), which costs milliseconds. The worker's memo is authoritative while it
        holds the key; without it (a new worker, an evicted key) the totals are rebuilt from state.
        """
        memo = self.memo.pop(key, None)
        if memo is None:
            if any(closed.read()):
                return None
            memo = (set(), {})
            for old_id, old_delta in deltas.read():
                if old_id not in memo[0]:
                    memo[0].add(old_id)
                    merge_into(memo[1], old_delta)
        if delta_id not in memo[0]:
            memo[0].add(delta_id)
            merge_into(memo[1], delta)
            deltas.add((delta_id, delta))
        self.memo[key] = memo
        while len(self.memo) > _MAX_MEMO_KEYS:
            self.memo.popitem(last=False)
        return memo[1]

    def finish_bundle(self) -> None:
        """Writes the touched users' current totals; the bundle (and the window ends it emitted for
        progress) is not done until they are in Redis."""
        if not self.touched:
            return
        with self.memo_lock:  # current totals, written under the lock: never an older total after a newer one
            by_window: dict[int, ActivityByUser] = {}
            for key, (totals, users) in self.touched.items():
                memo = self.memo.get(key)
                current = memo[1] if memo is not None else totals
                by_window.setdefault(key[0], {}).update({user: current[user] for user in users})
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
                 horizon_ms: int | None) -> None:
        super().__init__()
        self.write = AccumulateAndWrite(target, layout, policy, retention_s, horizon_ms)

    def expand(self, deltas: beam.PCollection) -> beam.PCollection:
        # Typed so Beam picks a deterministic key coder: state is keyed by the encoded (start, shard).
        return deltas | "AccumulateAndWrite" >> beam.ParDo(self.write).with_input_types(
            tuple[tuple[int, int], Any])
