"""Restart safety: where to start reading, and which windows a restart must leave alone.

State held by a local runner dies with the process. So the pipeline records in Redis how far its
results are complete ("sealed"): every window whose end + allowed lateness is at or before
`sealed_ms` has had its final pane written. A final pane is not yet the last word: input that
reached a window's scoring after it (Prism's watermark can run ahead of data in flight) rewrites it,
until the window closes `REWRITES_END_AFTER_FINAL_MS` later. On start, each partition is rewound to
the first offset at or after the start of the oldest window that might still change (Kafka's
offsets-for-times), and those windows are recomputed from all their events; absolute writes make the
recomputation overwrite cleanly. Windows that start before that point are closed in Redis and see
only part of their events in the replay, so the sink skips them (the "replay horizon").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.coders import VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Timestamp
from kafka import KafkaConsumer, TopicPartition

from clout.model.windows import WindowPolicy
from clout.pipelines.window_scores import REWRITES_END_AFTER_FINAL_MS
from clout.store.account_snapshots import common_snapshot, drop_snapshots, snapshot_days
from clout.store.client import RedisTarget, script
from clout.store.layout import KeyLayout


@dataclass(frozen=True)
class StartPlan:
    """Where each partition starts and which windows the sink must skip (start before horizon_ms)."""

    start_offsets: dict[int, int]
    horizon_ms: int | None
    sealed_ms: int | None
    resumed: bool
    rebuilt: bool = False  # Redis had lost the group's progress: every window is recomputed
    accounts_from_ms: int | None = None  # the account shards resume from their snapshots of this day

    def describe(self) -> str:
        if self.rebuilt:
            return (f"Redis had lost the group's progress and results: rebuilding every window from the "
                    f"beginning of the topic, offsets {self.start_offsets}")
        if not self.resumed:
            return f"fresh start at offsets {self.start_offsets}"
        if self.sealed_ms is None:
            return f"resuming before any result was final: every window again, offsets {self.start_offsets}"
        accounts = ("account evidence from its snapshot of " + utc_minute(self.accounts_from_ms)
                    if self.accounts_from_ms is not None else "account evidence rebuilt from the group's first offsets")
        return (f"resuming: results complete up to {utc_minute(self.sealed_ms)}, recomputing windows from "
                f"{utc_minute(self.horizon_ms)}, {accounts}, offsets {self.start_offsets}")


def utc_minute(ms: int) -> str:
    """An event time (ms) as people read it in progress lines: to the minute, in UTC."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


class RedisLost(RuntimeError):
    """Redis no longer holds what the pipeline wrote (restarted without persistence, flushed, evicted)."""


def lost_message(group: str) -> str:
    return (f"Redis lost the results and progress of group {group!r} (restarted without persistence, flushed "
            "or evicted?): what it held cannot be trusted. `clout run --from-beginning` with the same group "
            "rebuilds every window from the topic; `--reset` starts the group over at the end instead")


def plan_start(consumer: KafkaConsumer, redis_target: RedisTarget, layout: KeyLayout, topic: str, group: str,
               policy: WindowPolicy, from_beginning: bool, reset: bool = False, context_ms: int = 0,
               group_committed: bool = False, shards: int = 4) -> StartPlan:
    """Decide start offsets from the group's progress in Redis (or from --from-beginning/--from-latest).

    A resumed read starts `context_ms` before the replay horizon: analyses that look back further
    than a window (bot-likeness, bursts) see the same events as in a run without the restart. The
    account evidence looks back over the whole stream: the read starts at the newest day every one
    of the `shards` account shards has a snapshot of, at or before the horizon, if that is earlier,
    and from the group's first offsets if there is none.

    Progress that Redis lost (`initial` gone, or nothing at all while the group has offsets
    committed in Kafka, `group_committed`) is rebuilt from the beginning of the topic with
    --from-beginning; without it, RedisLost says so: starting at the end would leave the lost
    windows missing for good."""
    client = redis_target.connect()
    key = layout.progress(group)
    try:
        if reset:
            client.delete(key)
        progress = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist or has no partitions (run `clout topics create`)")
        lost = not reset and ("initial" not in progress if progress else group_committed)
        if lost and not from_beginning:
            raise RedisLost(lost_message(group))
        if lost or not progress:
            client.delete(key)  # a remnant written after the loss (sealed_ms) describes nothing whole
            drop_snapshots(client, layout, group, shards)  # an earlier run's account state is not this one's
            plan = _fresh_plan(consumer, partitions, from_beginning, rebuilt=lost)
            client.hset(key, mapping={"policy": _policy_text(policy), "initial": orjson.dumps(
                {str(p): o for p, o in plan.start_offsets.items()}).decode()})
            return plan
        _check_same_policy(progress, policy, group)
        days = snapshot_days(client, layout, group, shards)
        return _resume_plan(consumer, partitions, progress, policy, context_ms, days)
    finally:
        client.close()


def progress_intact(client: Any, layout: KeyLayout, group: str) -> bool | None:
    """Whether Redis still holds the group's progress as plan_start wrote it; None if Redis cannot say now."""
    from redis.exceptions import RedisError

    try:
        return bool(client.hexists(layout.progress(group), "initial"))
    except RedisError:
        return None


def _fresh_plan(consumer: KafkaConsumer, partitions: list[TopicPartition], from_beginning: bool,
                rebuilt: bool = False) -> StartPlan:
    edge = consumer.beginning_offsets(partitions) if from_beginning else consumer.end_offsets(partitions)
    return StartPlan({tp.partition: edge[tp] for tp in partitions}, None, None, False, rebuilt)


def _resume_plan(consumer: KafkaConsumer, partitions: list[TopicPartition], progress: dict[str, str],
                 policy: WindowPolicy, context_ms: int, snapshot_days: list[set[int]]) -> StartPlan:
    initial = {int(p): o for p, o in orjson.loads(progress["initial"]).items()}
    earliest = consumer.beginning_offsets(partitions)
    floor = {tp.partition: initial.get(tp.partition, earliest[tp]) for tp in partitions}
    if "sealed_ms" not in progress:
        return StartPlan(floor, None, None, True)
    sealed = int(progress["sealed_ms"])
    horizon = replay_horizon(sealed, policy)
    accounts_from = common_snapshot(snapshot_days, horizon)
    if accounts_from is None:
        return StartPlan(floor, horizon, sealed, True)
    read_from = min(horizon - context_ms, accounts_from)
    at_horizon = consumer.offsets_for_times({tp: max(read_from, 0) for tp in partitions})
    ends = consumer.end_offsets(partitions)
    offsets = {}
    for tp in partitions:
        found = at_horizon.get(tp)
        offsets[tp.partition] = max(floor[tp.partition], found.offset if found else ends[tp])
    return StartPlan(offsets, horizon, sealed, True, accounts_from_ms=accounts_from)


def replay_horizon(sealed_ms: int, policy: WindowPolicy) -> int:
    """Start of the oldest window whose results may still change: windows starting earlier all had
    end + lateness + REWRITES_END_AFTER_FINAL_MS <= sealed_ms, so they are closed. Sealed but open
    windows are recomputed too: a kill between a final pane and its rewrite by input that came after
    it would otherwise leave the first version for good. Aligned to the period, as window starts are."""
    period = policy.slice_ms
    bound = sealed_ms - policy.lateness_s * 1000 - policy.size_s * 1000 - REWRITES_END_AFTER_FINAL_MS
    return bound - bound % period + period


def _policy_text(policy: WindowPolicy) -> str:
    return f"size={policy.size_s},period={policy.period_s},lateness={policy.lateness_s}"


def _check_same_policy(progress: dict[str, str], policy: WindowPolicy, group: str) -> None:
    if progress.get("policy") != _policy_text(policy):
        raise ValueError(f"group {group!r} was run with windows {progress.get('policy')}, now {_policy_text(policy)}; "
                         "use another --group, or --reset to recompute from the start")


# Sets the field only forward: whichever worker or thread seals last, sealed_ms never moves back.
_SEAL_FORWARD = """
local current = tonumber(redis.call('HGET', KEYS[1], 'sealed_ms') or '-1')
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'sealed_ms', ARGV[1]) end
return 1
"""


class SealWindows(beam.DoFn):
    """Records `sealed_ms` once the watermark after the sink passes a written window's end + lateness.

    Runs on one key in the global window. An event-time timer fires when everything before it,
    including the sink's writes, is done. Each deadline has its own timer (tagged by it): a replay's
    watermark passes many deadlines at once, and one re-armed timer would seal one window per round
    of the runner, which is what paced whole replays (and, through the read-ahead, their reading).
    Timers may fire in any order within a bundle; the seal only moves forward. State is append-only
    (see sink.AccumulateAndWrite for why) and small — one entry per distinct window deadline and per
    firing — so it is read afresh every time: nothing here depends on a worker's memory.
    """

    DEADLINES = BagStateSpec("deadlines", VarIntCoder())
    FIRED = BagStateSpec("fired", VarIntCoder())
    SEAL = TimerSpec("seal", TimeDomain.WATERMARK)

    def __init__(self, target: RedisTarget, key: str, lateness_ms: int) -> None:
        self.target = target
        self.key = key
        self.lateness_ms = lateness_ms

    def setup(self) -> None:
        self.client = self.target.connect()
        self.seal_forward = script(self.client, _SEAL_FORWARD)

    def start_bundle(self) -> None:
        self.added: set[int] = set()  # deadlines this bundle appended (its own reads may not show them)

    def process(self, element: tuple[str, int], deadlines: Any = beam.DoFn.StateParam(DEADLINES),
                fired: Any = beam.DoFn.StateParam(FIRED), seal: Any = beam.DoFn.TimerParam(SEAL)) -> Iterator[None]:
        deadline = element[1] + self.lateness_ms
        if deadline in self.added:
            return iter(())
        known = set(deadlines.read()) | self.added
        if deadline not in known:
            deadlines.add(deadline)
            self.added.add(deadline)
            last_fired = max(fired.read(), default=None)
            if last_fired is None or deadline > last_fired:
                # One timer per deadline: a watermark past several seals them all in one bundle.
                seal.set(Timestamp(micros=deadline * 1000), dynamic_timer_tag=str(deadline))
        return iter(())

    @on_timer(SEAL)
    def sealed(self, when: Any = beam.DoFn.TimestampParam, fired: Any = beam.DoFn.StateParam(FIRED)) -> Iterator[None]:
        fired_ms = when.micros // 1000
        last_fired = max(fired.read(), default=None)
        if last_fired is not None and fired_ms <= last_fired:
            return iter(())
        self.seal_forward(keys=[self.key], args=[fired_ms])
        fired.add(fired_ms)
        return iter(())

    def teardown(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


class RecordProgress(beam.PTransform):
    """Written window ends -> `sealed_ms` in the group's progress hash. Fed by every writer of
    window results, so a window is sealed only once each of them has written its final figures."""

    def __init__(self, target: RedisTarget, layout: KeyLayout, group: str, policy: WindowPolicy) -> None:
        super().__init__()
        self.target = target
        self.key = layout.progress(group)
        self.lateness_ms = policy.lateness_s * 1000

    def expand(self, window_ends: beam.PCollection) -> beam.PCollection:
        return (
            window_ends
            | "OneKey" >> beam.Map(lambda end_ms: ("progress", end_ms))
            | "Global" >> beam.WindowInto(GlobalWindows())
            | "Seal" >> beam.ParDo(SealWindows(self.target, self.key, self.lateness_ms))
        )

