"""A window pane -> influence scores (raw and clean), flags and groups -> Redis.

Everything written is a function of the pane's events and context, and of the score history the
pipeline itself wrote for earlier windows, so a restart that replays the pane writes the same
values (absolute sets, never increments). The layout is `clout/store/layout.py`.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer

from clout.anomalies.config import Thresholds
from clout.anomalies.detect import EpochMidas, Findings, WindowDetectors
from clout.influence.scores import (
    InfluenceConfig,
    UserInfluence,
    clean_influence,
    long_term_score,
    rounded_score,
    window_influence,
)
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy, window_id
from clout.pipelines.worker_memory import shared
from clout.store.client import RedisTarget, script
from clout.store.flags import FlagWriter
from clout.store.layout import KeyLayout

_CHUNK = 5_000  # users per pipelined round trip
_PRUNE_SLACK = 8  # history entries the copy may hold beyond the history length before it prunes
# KEYS: history, latest. ARGV: window id, history entry, latest JSON ('' keeps the stored one), ttl, and the
# cutoff: entries of windows ending at or before it are dropped (a window id ends with its end, in epoch s).
_USER_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local cutoff = tonumber(ARGV[5])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local ends = tonumber(string.match(field, '%-(%d+)$'))
  if ends and ends <= cutoff then redis.call('HDEL', KEYS[1], field) end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
return 1
"""


History = dict[str, dict[str, Any]]  # window id -> {"end", "score", "clean_score"}


class UserDocs:
    """The users' documents (history and `latest`) as this process last wrote them, so a pane does
    not read back what the pipeline itself wrote: the graph step is the only writer of these keys.

    The copy is used only while this process is the last writer: each pane first checks the
    `users:writer` key (one GET) and, when another process wrote since (a runner moved the graph
    key, a restart), forgets everything and reads users from Redis again. Entries older than half
    the retention are re-read too, since their keys may have expired. Bounded, oldest out first.
    """

    MAX_USERS = 200_000

    def __init__(self, retention_s: int) -> None:
        self.token = uuid.uuid4().hex
        self.fresh_s = retention_s / 2
        self._docs: OrderedDict[str, tuple[float, History, dict[str, Any] | None]] = OrderedDict()

    def claim(self, client: Any, key: str, ttl: int) -> None:
        """Become the last writer; forget the copy if another process wrote after this one."""
        if client.get(key) != self.token.encode():
            self.forget()
            client.set(key, self.token, ex=ttl)

    def forget(self) -> None:
        self._docs.clear()

    def get(self, user: str) -> tuple[History, dict[str, Any] | None] | None:
        doc = self._docs.get(user)
        if doc is None or time.monotonic() - doc[0] > self.fresh_s:
            return None
        return doc[1], doc[2]

    def put(self, user: str, history: History, latest: dict[str, Any] | None) -> None:
        self._docs[user] = (time.monotonic(), history, latest)
        self._docs.move_to_end(user)
        while len(self._docs) > self.MAX_USERS:
            self._docs.popitem(last=False)


@dataclass(frozen=True)
class ResultsConfig:
    redis: RedisTarget
    layout: KeyLayout
    influence: InfluenceConfig
    policy: WindowPolicy
    retention_s: int
    thresholds: Thresholds = field(default_factory=Thresholds)
    kafka: dict[str, Any] | None = None  # kafka-python client settings for the `flags` topic; None: no topic
    flags_topic: str = "flags"
    shards: int = 4  # MIDAS-R shards
    memo_token: str = field(default_factory=lambda: uuid.uuid4().hex)  # names the process-wide MIDAS-R state

    @property
    def period_s(self) -> int:
        return self.policy.period_s


class WindowResults:
    """Finds flags in a pane, scores it and writes both. One instance per DoFn instance (it keeps
    clients); the window step calls it under its lock, one pane at a time."""

    def __init__(self, config: ResultsConfig) -> None:
        self.config = config
        self.client = config.redis.connect()
        self._user_script = script(self.client, _USER_SCRIPT)
        producer = KafkaProducer(**config.kafka, acks="all", linger_ms=20) if config.kafka is not None else None
        self.flag_writer = FlagWriter(self.client, config.layout, config.retention_s, producer, config.flags_topic)
        self.user_docs = shared((config.memo_token, "users"), lambda: UserDocs(config.retention_s))

    def __call__(self, pane: Pane, derived: dict[str, Any]) -> dict[str, int]:
        """`derived`: this analysis's cache beside the window step's slices, emptied whenever those are
        rebuilt from state: the detectors' streaming sketches and the on-time panes' results."""
        wid = window_id(pane.start_ms, pane.end_ms)
        if "detectors" not in derived:
            midas = EpochMidas(self.config.thresholds, self.config.shards)
            derived["detectors"] = WindowDetectors(self.config.thresholds, self.config.policy, midas)
            derived["on_time"] = {}
        self.detectors: WindowDetectors = derived["detectors"]
        on_time: dict[int, tuple[dict[str, UserInfluence], dict[str, float], Findings]] = derived["on_time"]
        cached = on_time.pop(pane.start_ms, None)
        fresh = pane.changed or cached is None
        if fresh:
            findings = self._findings(pane)
            raw, clean = self._scores(pane, findings)
        else:  # a final pane with nothing new: the on-time pane's results stand, now final
            raw, clean, findings = cached
        if not pane.final:
            on_time[pane.start_ms] = (raw, clean, findings)
        # Users who received nothing score the floor (1): they are left out, which readers take as 1.
        active = sorted(user for user, influence in raw.items() if influence.reach > 0)
        self._write_window(wid, pane, active, raw, clean)
        if fresh:  # users' documents are as the on-time pane wrote them unless something changed
            self._write_users(wid, pane.end_ms // 1000, active, raw, clean)
        new = self.flag_writer.write(wid, findings, pane.final)  # a final pane announces the flags
        return {"users": len(raw), "active": len(active), "flags": len(findings.flags), "new_flags": len(new)}

    def close(self) -> None:
        if self.flag_writer.producer is not None:
            self.flag_writer.producer.close()
        self.client.close()

    def _findings(self, pane: Pane) -> Findings:
        """The detectors' verdicts; lockstep remembers the groups written for the windows of the last
        `memory_hours` before this one."""
        memory_ms = int(self.config.thresholds.lockstep.memory_hours * 3_600_000)
        period, size = self.config.policy.slice_ms, self.config.policy.size_ms
        earlier = [window_id(s, s + size) for s in range(pane.start_ms - memory_ms, pane.start_ms, period)]
        return self.detectors.find(pane, self.flag_writer.earlier_groups(earlier))

    def _scores(self, pane: Pane, findings: Findings) -> tuple[dict[str, UserInfluence], dict[str, float]]:
        """Raw scores, and clean ones with the engagement of flagged fake engagers left out."""
        raw = window_influence(pane.events, self.config.influence)
        ignore = findings.engagers_to_ignore()
        clean = (clean_influence(pane.events, self.config.influence, raw, ignore)
                 if ignore else {u: float(i.raw) for u, i in raw.items()})
        return raw, clean

    def _write_window(self, wid: str, pane: Pane, active: list[str], raw: dict[str, UserInfluence],
                      clean: dict[str, float]) -> None:
        layout, ttl = self.config.layout, self.config.retention_s
        keys = {layout.influence(wid), layout.score_board(wid), layout.clean_board(wid), layout.window_meta(wid)}
        for users in _chunks(active):
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(layout.influence(wid), mapping={
                u: raw[u].to_json(clean_score=clean[u], final=pane.final) for u in users})
            pipe.zadd(layout.score_board(wid), {u: raw[u].raw for u in users})
            pipe.zadd(layout.clean_board(wid), {u: clean[u] for u in users})
            for platform, members in _by_platform(raw, users).items():
                board = layout.score_board(wid, platform)
                pipe.zadd(board, {u: raw[u].raw for u in members})
                keys.add(board)
            pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(layout.window_meta(wid), mapping={
            "users": len(raw), "active": len(active), "events": len(pane.events), "final": int(pane.final)})
        pipe.zadd(layout.windows(), {wid: pane.end_ms // 1000})
        pipe.zadd(layout.scored_windows(), {wid: pane.end_ms // 1000})
        pipe.expire(layout.scored_windows(), ttl)
        for key in keys:
            pipe.expire(key, ttl)
        pipe.execute()

    def _write_users(self, wid: str, end_s: int, active: list[str], raw: dict[str, UserInfluence],
                     clean: dict[str, float]) -> None:
        """History entry and `latest` (with the long-term score) of each active user.

        The long-term score is always computed from the history itself, so it depends only on the
        entries, not on the order panes were written in: a window recomputed after a newer one (a
        restart's replay, a final pane with data the on-time pane missed) rewrites its entry and,
        if its score changed, the long-term score of the newer `latest`. In windows where a user
        received nothing their score is the floor, which the long-term score counts as absent."""
        layout, config, docs = self.config.layout, self.config, self.user_docs
        cutoff_s = end_s - config.influence.history_len * config.period_s
        docs.claim(self.client, layout.users_writer(), config.retention_s)
        for users in _chunks(active):
            try:
                written = self._write_chunk(wid, end_s, cutoff_s, users, raw, clean)
            except BaseException:
                docs.forget()  # the copy may be ahead of Redis (entries are set in place): Redis is the truth again
                raise
            for user, history, latest in written:  # only once Redis holds them
                docs.put(user, history, latest)

    def _write_chunk(self, wid: str, end_s: int, cutoff_s: int, users: list[str], raw: dict[str, UserInfluence],
                     clean: dict[str, float]) -> list[tuple[str, History, dict[str, Any] | None]]:
        """One script call per user, in one round trip; returns the documents as now stored."""
        layout, config = self.config.layout, self.config
        stored = self._stored_docs(users)
        pipe = self.client.pipeline(transaction=False)
        written = []
        for user in users:
            history, latest = stored[user]
            entry = {"end": end_s, "score": raw[user].score, "clean_score": rounded_score(clean[user])}
            changed = history.get(wid) != entry
            history[wid] = entry
            new_latest = self._latest(wid, end_s, raw[user], clean[user], latest, history, changed)
            keys = [layout.user_history(user), layout.user_latest(user)]
            latest_json = b"" if new_latest is None else orjson.dumps(new_latest)
            self._user_script(keys=keys, args=[wid, orjson.dumps(entry), latest_json, config.retention_s, cutoff_s],
                              client=pipe)
            written.append((user, _pruned(history, cutoff_s, config.influence.history_len),
                            latest if new_latest is None else new_latest))
        pipe.execute()
        return written

    def _stored_docs(self, users: list[str]) -> dict[str, tuple[History, dict[str, Any] | None]]:
        """Each user's history and `latest` as stored: this process's copy, else read from Redis."""
        found: dict[str, tuple[History, dict[str, Any] | None]] = {}
        missing = []
        for user in users:
            doc = self.user_docs.get(user)
            if doc is None:
                missing.append(user)
            else:
                found[user] = doc
        if missing:
            pipe = self.client.pipeline(transaction=False)
            for user in missing:
                pipe.get(self.config.layout.user_latest(user))
                pipe.hgetall(self.config.layout.user_history(user))
            replies = pipe.execute()
            for user, latest, stored in zip(missing, replies[0::2], replies[1::2], strict=True):
                history = {k.decode(): orjson.loads(v) for k, v in stored.items()}
                found[user] = (history, orjson.loads(latest) if latest else None)
        return found

    def _latest(self, wid: str, end_s: int, influence: UserInfluence, clean: float, latest: dict[str, Any] | None,
                history: History, changed: bool) -> dict[str, Any] | None:
        """The new `latest` document, or None to keep the stored one (a newer window holds it and this
        window's entry did not change). Whether the window is final is the window's meta, not the user's."""
        if latest is not None and latest["end"] > end_s:
            return self._with_long_term(latest, history) if changed else None
        return self._with_long_term({**influence.to_dict(clean), "window": wid, "end": end_s}, history)

    def _with_long_term(self, value: dict[str, Any], history: History) -> dict[str, Any]:
        config = self.config
        long_term = long_term_score([(e["end"], e["score"]) for e in history.values()], value["end"],
                                    config.period_s, config.influence.half_life_s, config.influence.history_len)
        return {**value, "long_term": round(long_term, 2)}


@dataclass(frozen=True)
class WindowResultsFactory:
    """Picklable: each worker builds its own WindowResults (and Redis client) in setup()."""

    config: ResultsConfig

    def __call__(self) -> WindowResults:
        return WindowResults(self.config)


def _pruned(history: History, cutoff_s: int, history_len: int) -> History:
    """The script drops entries ending at or before the cutoff on every write; the copy drops them
    once it holds a few more than the history's length. Older entries are outside the long-term
    score's horizon (it is taken at the user's newest window, never before this cutoff), so they
    change nothing."""
    if len(history) <= history_len + _PRUNE_SLACK:
        return history
    return {w: e for w, e in history.items() if e["end"] > cutoff_s}


def _chunks(users: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(users), _CHUNK):
        yield users[i:i + _CHUNK]


def _by_platform(raw: dict[str, UserInfluence], users: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for user in users:
        if raw[user].platform:
            groups.setdefault(raw[user].platform, []).append(user)
    return groups
