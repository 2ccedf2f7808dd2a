"""A pane's flags and coordination groups -> Redis (and new flags -> the Redis Stream and Kafka).

A window's flagged sets and group list are replaced whole on every pane (one MULTI), so a final
pane's verdict supersedes the on-time pane's. Flags are announced (the Redis Stream and the `flags`
topic) from final panes only, which late data can no longer change, and each (window, detector,
user) once: the window's `announced` set remembers them, so a replay announces nothing twice. The
topic is written before Redis records the announcement: a crash in between repeats a flag on the
topic rather than losing it (at least once; consumers de-duplicate on user, window, detector).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis
from kafka import KafkaProducer

from clout.anomalies.detect import Findings
from clout.anomalies.flag import DETECTORS, Flag, Group
from clout.store.layout import KeyLayout

STREAM_MAXLEN = 100_000
# KEYS: the user's flags hash. ARGV: detector, flag JSON, window end, window start (epoch s), ttl.
# Sets the detector's flag unless the stored one is of a newer window (by end, then start): windows
# are written concurrently and in any order, and the newest must win whatever the order.
_NEWEST_FLAG = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  local s, e = string.match(cjson.decode(stored)['window'], '^(%d+)-(%d+)$')
  local stored_end, stored_start = tonumber(e), tonumber(s)
  local end_s, start_s = tonumber(ARGV[3]), tonumber(ARGV[4])
  if stored_end > end_s or (stored_end == end_s and stored_start > start_s) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class FlagWriter:
    def __init__(self, client: redis.Redis, layout: KeyLayout, retention_s: int,
                 producer: KafkaProducer | None, flags_topic: str) -> None:
        self.client = client
        self.layout = layout
        self.retention_s = retention_s
        self.producer = producer
        self.flags_topic = flags_topic
        self._newest_flag = client.register_script(_NEWEST_FLAG)

    def earlier_groups(self, window_ids: Iterable[str]) -> list[Group]:
        """The groups written for these windows (the lockstep detector's memory)."""
        pipe = self.client.pipeline(transaction=False)
        for wid in window_ids:
            pipe.zrange(self.layout.groups(wid), 0, -1)
        ids = sorted({gid.decode() for members in pipe.execute() for gid in members})
        if not ids:
            return []
        stored = self.client.mget([self.layout.group(gid) for gid in ids])
        return [_group(orjson.loads(value)) for value in stored if value]

    def write(self, wid: str, findings: Findings, final: bool) -> list[Flag]:
        """Replace the window's flags and groups; on a final pane, announce the flags not announced
        yet and return them."""
        new = self._unannounced(wid, findings.flags) if final else []
        self._publish(new)
        layout, ttl = self.layout, self.retention_s
        start_s, end_s = wid.split("-")
        pipe = self.client.pipeline(transaction=True)
        keys = [layout.flagged(wid), layout.groups(wid), *(layout.flagged(wid, d) for d in DETECTORS)]
        pipe.delete(*keys)
        for flag in findings.flags:
            pipe.zadd(layout.flagged(wid, flag.detector), {flag.user: flag.score})
            pipe.zadd(layout.flagged(wid), {flag.user: flag.score}, gt=True)
            self._newest_flag(keys=[layout.user_flags(flag.user)],
                              args=[flag.detector, flag.to_json(), end_s, start_s, ttl], client=pipe)
        for group in findings.groups:
            pipe.zadd(layout.groups(wid), {group.id: len(group.members)})
            pipe.set(layout.group(group.id), group.to_json(), ex=ttl)
        for key in keys:
            pipe.expire(key, ttl)
        for flag in new:
            pipe.xadd(layout.flag_stream(), {"flag": flag.to_json()}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.sadd(layout.announced(wid), _announcement(flag))
        if new:
            pipe.expire(layout.announced(wid), ttl)
        pipe.execute()
        return new

    def _unannounced(self, wid: str, flags: Sequence[Flag]) -> list[Flag]:
        if not flags:
            return []
        known = self.client.smismember(self.layout.announced(wid), [_announcement(f) for f in flags])
        return [flag for flag, seen in zip(flags, known, strict=True) if not seen]

    def _publish(self, flags: Sequence[Flag]) -> None:
        if self.producer is None or not flags:
            return
        for flag in flags:
            self.producer.send(self.flags_topic, key=flag.user.encode(), value=flag.to_json())
        self.producer.flush()


def _announcement(flag: Flag) -> str:
    return f"{flag.detector}:{flag.user}"


def _group(value: dict[str, Any]) -> Group:
    return Group(value["id"], value["window"], tuple(value["members"]), tuple(value["targets"]),
                 value["synchrony"], value["score"])
