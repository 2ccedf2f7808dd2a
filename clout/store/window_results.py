"""A scored window pane -> influence scores (raw and clean), flags and groups -> Redis.

Everything written is a function of the pane's inputs (events, raw influence, findings), so a
restart that replays the pane writes the same values (absolute sets, never increments). Windows
are written concurrently, in any order, by whichever worker holds their key: so what several
windows share, a user's history and `latest`, is updated by one script per user that decides in
Redis, from what Redis holds (the history decides `latest` and its long-term score), and gives the
same result whatever order the windows are written in. The layout is `clout/store/layout.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from clout.anomalies.config import Thresholds
from clout.anomalies.detect import Findings
from clout.connectors.topics import connect_producer
from clout.influence.scores import (
    InfluenceConfig,
    InfluenceTable,
    UserInfluence,
    clean_influence,
    full_weight,
    rounded_score,
)
from clout.model.columns import EventColumns
from clout.model.windows import WindowPolicy, window_id
from clout.store.client import RedisTarget, script
from clout.store.flags import FlagWriter
from clout.store.layout import KeyLayout

_CHUNK = 5_000  # users per pipelined round trip
# KEYS: history and latest of each user in turn. ARGV: 1 window id, 2 window end (epoch s), 3 ttl,
# 4 history length x period (s), 5 half-life (s), 6 the long-term score's full weight; then for each
# user its history entry (JSON) and its `latest` for this window as JSON without its closing brace.
# Per user: the newest end held (this window's or `latest`'s) sets the horizon: entries ending at or
# before newest - horizon are dropped and never added, so the history is the same whatever order
# windows come in; `latest` is the newest window's document, its long-term score recomputed from the
# history (oldest entry first, as clout.influence.scores.long_term_score sums them). One call takes
# many users on a single server; on a cluster one user (a call's keys must share a hash slot).
_USERS_SCRIPT = """
local end_s = tonumber(ARGV[2])
local ttl, horizon = ARGV[3], tonumber(ARGV[4])
local half_life, weight = tonumber(ARGV[5]), tonumber(ARGV[6])
for u = 1, #KEYS / 2 do
  local history, latest = KEYS[2 * u - 1], KEYS[2 * u]
  local entry_json, document = ARGV[5 + 2 * u], ARGV[6 + 2 * u]
  local stored = redis.call('GET', latest)
  local newest, base = end_s, document
  if stored then
    local stored_end = cjson.decode(stored)['end']
    if stored_end > end_s then
      newest = stored_end
      base = string.sub(stored, 1, string.find(stored, ',"long_term":', 1, true) - 1)
    end
  end
  if end_s > newest - horizon then redis.call('HSET', history, ARGV[1], entry_json) end
  local entries = {}
  local fields = redis.call('HGETALL', history)
  for i = 1, #fields, 2 do
    local entry = cjson.decode(fields[i + 1])
    if entry['end'] <= newest - horizon then
      redis.call('HDEL', history, fields[i])
    elseif entry['end'] <= newest then
      entries[#entries + 1] = entry
    end
  end
  table.sort(entries, function(a, b) return a['end'] < b['end'] end)
  local total, last_end = 0.0, nil
  for _, entry in ipairs(entries) do
    if entry['end'] ~= last_end then
      total = total + entry['score'] * 2 ^ (-(newest - entry['end']) / half_life)
      last_end = entry['end']
    end
  end
  redis.call('EXPIRE', history, ttl)
  redis.call('SET', latest, base .. ',"long_term":' .. string.format('%.2f', total / weight) .. '}', 'EX', ttl)
end
return 1
"""
_USERS_PER_CALL = 20  # on a single server: about a millisecond of Redis time, so readers are not held up


class ScoredPane(NamedTuple):
    """What a window's pane writes: its events, raw influence and everything the detectors found."""

    start_ms: int
    end_ms: int
    final: bool
    events: EventColumns
    raw: InfluenceTable
    findings: Findings
    write_users: bool = True  # False: the users' documents stand as an earlier pane of these inputs wrote them


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
    shards: int = 4  # account shards (MIDAS-R's among them)

    @property
    def period_s(self) -> int:
        return self.policy.period_s


class WindowResults:
    """Scores a pane (clean scores leave out flagged fake engagers) and writes it with its flags.
    One instance per DoFn instance (it keeps clients)."""

    def __init__(self, config: ResultsConfig) -> None:
        self.config = config
        self.client = config.redis.connect()
        self._users_script = script(self.client, _USERS_SCRIPT)
        producer = connect_producer(config.kafka, acks="all", linger_ms=20) if config.kafka is not None else None
        self.flag_writer = FlagWriter(self.client, config.layout, config.retention_s, producer, config.flags_topic)

    def write(self, pane: ScoredPane) -> dict[str, int]:
        wid = window_id(pane.start_ms, pane.end_ms)
        ignore = pane.findings.engagers_to_ignore()
        # Users who received nothing score the floor (1): they are left out, which readers take as 1.
        raw = pane.raw.receiving_rows()  # the objects of the users written, built once for this write
        clean = (clean_influence(pane.events, self.config.influence, raw, ignore)
                 if ignore else {u: float(i.raw) for u, i in raw.items()})
        active = sorted(raw)
        self._write_window(wid, pane, active, raw, clean)
        if pane.write_users:
            self._write_users(wid, pane.end_ms // 1000, active, raw, clean)
        new = self.flag_writer.write(wid, pane.findings, pane.final)  # a final pane announces the flags
        users = len(pane.raw)
        return {"users": users, "active": len(active), "flags": len(pane.findings.flags), "new_flags": len(new)}

    def close(self) -> None:
        if self.flag_writer.producer is not None:
            self.flag_writer.producer.close()
        self.client.close()

    def _write_window(self, wid: str, pane: ScoredPane, active: list[str], raw: Mapping[str, UserInfluence],
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
            "users": len(pane.raw), "active": len(active), "events": len(pane.events), "final": int(pane.final)})
        pipe.zadd(layout.windows(), {wid: pane.end_ms // 1000})
        pipe.zadd(layout.scored_windows(), {wid: pane.end_ms // 1000})
        pipe.expire(layout.scored_windows(), ttl)
        for key in keys:
            pipe.expire(key, ttl)
        pipe.execute()

    def _write_users(self, wid: str, end_s: int, active: list[str], raw: Mapping[str, UserInfluence],
                     clean: dict[str, float]) -> None:
        """History entry and `latest` (with the long-term score) of each active user, decided in Redis.
        In windows where a user received nothing their score is the floor, which the long-term score
        counts as absent."""
        layout, config = self.config.layout, self.config
        influence = config.influence
        horizon_s = influence.history_len * config.period_s
        weight = full_weight(config.period_s, influence.half_life_s, influence.history_len)
        per_call = 1 if self._users_script.cluster else _USERS_PER_CALL
        common = [wid, end_s, config.retention_s, horizon_s, influence.half_life_s, repr(weight)]
        for users in _chunks(active):
            pipe = self.client.pipeline(transaction=False)
            for i in range(0, len(users), per_call):
                keys, args = [], list(common)
                for user in users[i:i + per_call]:
                    entry = {"end": end_s, "score": raw[user].score, "clean_score": rounded_score(clean[user])}
                    latest = orjson.dumps({**raw[user].to_dict(clean[user]), "window": wid, "end": end_s})[:-1]
                    keys += [layout.user_history(user), layout.user_latest(user)]
                    args += [orjson.dumps(entry), latest]
                self._users_script(keys=keys, args=args, client=pipe)
            pipe.execute()


def _chunks(users: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(users), _CHUNK):
        yield users[i:i + _CHUNK]


def _by_platform(raw: Mapping[str, UserInfluence], users: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for user in users:
        if raw[user].platform:
            groups.setdefault(raw[user].platform, []).append(user)
    return groups
