"""A window pane -> influence scores (raw and clean), flags and groups -> Redis.

Everything written is a function of the pane's events and context, and of the score history the
pipeline itself wrote for earlier windows, so a restart that replays the pane writes the same
values (absolute sets, never increments). The layout is `schemas/redis_layout.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from clout.pipelines.influence import (
    InfluenceConfig,
    UserInfluence,
    clean_influence,
    long_term_score,
    rounded_score,
    window_influence,
)
from clout.pipelines.redis_client import RedisTarget
from clout.pipelines.window_graph import Pane
from clout.pipelines.windows import window_id
from clout.schemas.redis_layout import KeyLayout

_CHUNK = 5_000  # users per pipelined round trip
# KEYS: history, latest. ARGV: window id, history entry, latest JSON ('' = a newer window holds it), ttl, stale ids.
_USER_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 5, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
return 1
"""


@dataclass(frozen=True)
class Findings:
    """What the detectors found in a pane: flags by user and the groups they form (JSON-ready)."""

    flags: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    actor_weight: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultsConfig:
    redis: RedisTarget
    layout: KeyLayout
    influence: InfluenceConfig
    period_s: int
    retention_s: int


class WindowResults:
    """Scores a pane and writes it. One instance per worker thread (it keeps a Redis client)."""

    def __init__(self, config: ResultsConfig) -> None:
        self.config = config
        self.client = config.redis.connect()
        self._user_script = self.client.register_script(_USER_SCRIPT)
        self._cache: dict[int, tuple[dict[str, UserInfluence], dict[str, float]]] = {}

    def __call__(self, pane: Pane, findings: Findings | None = None) -> dict[str, int]:
        findings = findings or Findings()
        raw, clean = self._scores(pane, findings)
        wid = window_id(pane.start_ms, pane.end_ms)
        self._write_window(wid, pane, raw, clean)
        if pane.changed:  # a final pane with nothing new leaves the users' documents as the on-time pane wrote them
            self._write_users(wid, pane.end_ms // 1000, raw, clean)
        return {"users": len(raw), "events": len(pane.events)}

    def close(self) -> None:
        self.client.close()

    def _scores(self, pane: Pane, findings: Findings) -> tuple[dict[str, UserInfluence], dict[str, float]]:
        """PageRank is the costly part: a final pane with nothing new reuses the on-time pane's."""
        cached = self._cache.pop(pane.start_ms, None)
        if cached is None or pane.changed:
            raw = window_influence(pane.events, self.config.influence)
            clean = (clean_influence(pane.events, self.config.influence, raw, findings.actor_weight)
                     if findings.actor_weight else {u: float(i.raw) for u, i in raw.items()})
            cached = (raw, clean)
        if not pane.final:
            self._cache[pane.start_ms] = cached
        return cached

    def _write_window(self, wid: str, pane: Pane, raw: dict[str, UserInfluence], clean: dict[str, float]) -> None:
        layout, ttl = self.config.layout, self.config.retention_s
        keys = {layout.influence(wid), layout.score_board(wid), layout.clean_board(wid), layout.window_meta(wid)}
        for users in _chunks(sorted(raw)):
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
            "users": len(raw), "events": len(pane.events), "final": int(pane.final)})
        pipe.zadd(layout.windows(), {wid: pane.end_ms // 1000})
        for key in keys:
            pipe.expire(key, ttl)
        pipe.execute()

    def _write_users(self, wid: str, end_s: int, raw: dict[str, UserInfluence], clean: dict[str, float]) -> None:
        """History entry, long-term score (from that history) and `latest` unless a newer window set it.

        Two commands per user: the history is read, and one script call (both keys share the user's
        hash tag) writes the entry, drops expired entries, refreshes the TTL and sets `latest`."""
        layout, config = self.config.layout, self.config
        cutoff_s = end_s - 2 * config.influence.history_len * config.period_s
        for users in _chunks(sorted(raw)):
            pipe = self.client.pipeline(transaction=False)
            for user in users:
                pipe.hgetall(layout.user_history(user))
            histories = pipe.execute()
            for user, stored in zip(users, histories, strict=True):
                history = {k.decode(): orjson.loads(v) for k, v in stored.items()}
                entry = {"end": end_s, "score": raw[user].score, "clean_score": rounded_score(clean[user])}
                newest = max((e["end"] for e in history.values()), default=end_s)
                history[wid] = entry
                stale = _expired(history, cutoff_s)
                latest = (self._latest_json(wid, end_s, raw[user], clean[user], history)
                          if newest <= end_s else b"")
                self._user_script(keys=[layout.user_history(user), layout.user_latest(user)],
                                  args=[wid, orjson.dumps(entry), latest, config.retention_s, *stale], client=pipe)
            pipe.execute()

    def _latest_json(self, wid: str, end_s: int, influence: UserInfluence, clean: float,
                     history: dict[str, dict[str, Any]]) -> bytes:
        config = self.config
        past = [(e["end"], e["score"]) for e in history.values() if e["end"] <= end_s]
        long_term = long_term_score(past, end_s, config.period_s, config.influence.half_life_s,
                                    config.influence.history_len)
        value = orjson.loads(influence.to_json(clean_score=clean, final=False))
        del value["final"]  # whether the window is final is the window's meta, not the user's
        return orjson.dumps({**value, "window": wid, "end": end_s, "long_term": round(long_term, 2)})


@dataclass(frozen=True)
class WindowResultsFactory:
    """Picklable: each worker builds its own WindowResults (and Redis client) in setup()."""

    config: ResultsConfig

    def __call__(self) -> WindowResults:
        return WindowResults(self.config)


def _chunks(users: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(users), _CHUNK):
        yield users[i:i + _CHUNK]


def _by_platform(raw: dict[str, UserInfluence], users: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for user in users:
        if raw[user].platform:
            groups.setdefault(raw[user].platform, []).append(user)
    return groups


def _expired(history: dict[str, dict[str, Any]], cutoff_s: int) -> list[str]:
    """Entries ending at or before `cutoff_s`. The cutoff trails the window written by twice the span
    the long-term score reads, so a restart that recomputes recent windows still finds their past."""
    stale = [wid for wid, entry in history.items() if entry["end"] <= cutoff_s]
    for wid in stale:
        del history[wid]
    return stale
