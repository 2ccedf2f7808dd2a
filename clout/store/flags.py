"""A pane's flags and coordination groups -> Redis (and new flags -> the Redis Stream and Kafka).

A window's flagged sets and group list are replaced whole on every pane (one MULTI on the window's
hash slot), so a final pane's verdict supersedes the on-time pane's. The records they point to (the
users' newest flags, the groups) are written first, so a reader that finds an id in the window's sets
finds its record. Flags are announced (the Redis Stream and the `flags` topic) from final panes
only, which late data can no longer change, and each (window, detector, user) once: the window's
`announced` set remembers them, in the same MULTI as the stream entries (the layout puts the set in
the stream's hash slot), so a replay announces nothing twice. The topic is written before Redis
records the announcement: a crash in between repeats a flag on the topic rather than losing it (at
least once; consumers de-duplicate on user, window, detector).

Every transaction stays within one hash slot and every other batch is a non-transactional
pipeline of single-key commands, so the same code runs on one Redis and on a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from kafka import KafkaProducer

from clout.anomalies.detect import Findings
from clout.anomalies.flag import DETECTORS, Flag, Group
from clout.store.client import SyncClient, script
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
    def __init__(self, client: SyncClient, layout: KeyLayout, retention_s: int,
                 producer: KafkaProducer | None, flags_topic: str) -> None:
        self.client = client
        self.layout = layout
        self.retention_s = retention_s
        self.producer = producer
        self.flags_topic = flags_topic
        self._newest_flag = script(client, _NEWEST_FLAG)

    def earlier_groups(self, window_ids: Iterable[str]) -> list[Group]:
        """The groups written for these windows (the lockstep detector's memory)."""
        pipe = self.client.pipeline(transaction=False)
        for wid in window_ids:
            pipe.zrange(self.layout.groups(wid), 0, -1)
        ids = sorted({gid.decode() for members in pipe.execute() for gid in members})
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)  # one GET per group: their keys lie in many slots
        for gid in ids:
            pipe.get(self.layout.group(gid))
        return [_group(orjson.loads(value)) for value in pipe.execute() if value]

    def write(self, wid: str, findings: Findings, final: bool) -> list[Flag]:
        """Replace the window's flags and groups; on a final pane, announce the flags not announced
        yet and return them."""
        new = self._unannounced(wid, findings.flags) if final else []
        self._publish(new)
        self._forget_superseded_groups(wid, findings)
        self._write_records(wid, findings)
        self._replace_window_sets(wid, findings)
        self._announce(wid, new)
        return new

    def _forget_superseded_groups(self, wid: str, findings: Findings) -> None:
        """Deletes the records of the window's groups that this pane no longer finds. An on-time pane's
        group can vanish from the final pane (more events, other groups); left behind, its record would
        depend on which panes a run happened to write (a restart that recomputed the window whole never
        wrote it). Deleted before the window's list is replaced: a crash in between leaves the list
        naming records that are gone (readers skip those), and the recomputed window deletes again."""
        kept = {group.id for group in findings.groups}
        stale = [gid for gid in (m.decode() for m in self.client.zrange(self.layout.groups(wid), 0, -1))
                 if gid not in kept]
        if stale:
            pipe = self.client.pipeline(transaction=False)  # one DEL per record: they lie in many slots
            for gid in stale:
                pipe.delete(self.layout.group(gid))
            pipe.execute()

    def _write_records(self, wid: str, findings: Findings) -> None:
        """The users' newest flags (a script per flag keeps the newest window's whatever the order windows
        are written in) and the groups' records: single-key writes, in one round trip."""
        layout, ttl = self.layout, self.retention_s
        start_s, end_s = wid.split("-")
        pipe = self.client.pipeline(transaction=False)
        for flag in findings.flags:
            self._newest_flag(keys=[layout.user_flags(flag.user)],
                              args=[flag.detector, flag.to_json(), end_s, start_s, ttl], client=pipe)
        for group in findings.groups:
            pipe.set(layout.group(group.id), group.to_json(), ex=ttl)
        if len(pipe):
            pipe.execute()

    def _replace_window_sets(self, wid: str, findings: Findings) -> None:
        """The window's flagged sets and group list, replaced whole: one MULTI, all keys in the window's slot."""
        layout, ttl = self.layout, self.retention_s
        pipe = self.client.pipeline(transaction=True)
        keys = [layout.flagged(wid), layout.groups(wid), *(layout.flagged(wid, d) for d in DETECTORS)]
        pipe.delete(*keys)
        for flag in findings.flags:
            pipe.zadd(layout.flagged(wid, flag.detector), {flag.user: flag.score})
            pipe.zadd(layout.flagged(wid), {flag.user: flag.score}, gt=True)
        for group in findings.groups:
            pipe.zadd(layout.groups(wid), {group.id: len(group.members)})
        for key in keys:
            pipe.expire(key, ttl)
        pipe.execute()

    def _announce(self, wid: str, new: Sequence[Flag]) -> None:
        """Stream entries and the record that they were made: one MULTI, both keys in the stream's slot."""
        if not new:
            return
        layout = self.layout
        pipe = self.client.pipeline(transaction=True)
        for flag in new:
            pipe.xadd(layout.flag_stream(), {"flag": flag.to_json()}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.sadd(layout.announced(wid), _announcement(flag))
        pipe.expire(layout.announced(wid), self.retention_s)
        pipe.execute()

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
