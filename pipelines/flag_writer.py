"""A pane's flags and coordination groups -> Redis (and new flags -> the Redis Stream and Kafka).

A window's flagged sets and group list are replaced whole on every pane (one MULTI), so a final
pane's verdict supersedes the on-time pane's. A flag is new when its user was not yet in the
window's set for that detector: only new flags go to the stream and the `flags` topic, so a replay
of the same window publishes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import redis
from kafka import KafkaProducer

from clout.pipelines.anomalies.detect import Findings
from clout.pipelines.anomalies.flag import Flag, Group
from clout.schemas.redis_layout import KeyLayout

DETECTORS = ("burst", "bot", "lockstep", "microcluster")
STREAM_MAXLEN = 100_000


class FlagWriter:
    def __init__(self, client: redis.Redis, layout: KeyLayout, retention_s: int,
                 producer: KafkaProducer | None, flags_topic: str) -> None:
        self.client = client
        self.layout = layout
        self.retention_s = retention_s
        self.producer = producer
        self.flags_topic = flags_topic

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

    def write(self, wid: str, findings: Findings) -> list[Flag]:
        """Replace the window's flags and groups; returns the flags that are new."""
        new = self._new_flags(wid, findings.flags)
        stored_windows = self._users_flag_windows(findings.flags)
        layout, ttl = self.layout, self.retention_s
        pipe = self.client.pipeline(transaction=True)
        keys = [layout.flagged(wid), layout.groups(wid), *(layout.flagged(wid, d) for d in DETECTORS)]
        pipe.delete(*keys)
        for flag in findings.flags:
            pipe.zadd(layout.flagged(wid, flag.detector), {flag.user: flag.score})
            pipe.zadd(layout.flagged(wid), {flag.user: flag.score}, gt=True)
            if stored_windows.get((flag.user, flag.detector), "") <= _sortable(wid):
                pipe.hset(layout.user_flags(flag.user), flag.detector, flag.to_json())
                pipe.expire(layout.user_flags(flag.user), ttl)
        for group in findings.groups:
            pipe.zadd(layout.groups(wid), {group.id: len(group.members)})
            pipe.set(layout.group(group.id), group.to_json(), ex=ttl)
        for key in keys:
            pipe.expire(key, ttl)
        for flag in new:
            pipe.xadd(layout.flag_stream(), {"flag": flag.to_json()}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.execute()
        self._publish(new)
        return new

    def _new_flags(self, wid: str, flags: Sequence[Flag]) -> list[Flag]:
        pipe = self.client.pipeline(transaction=False)
        for flag in flags:
            pipe.zscore(self.layout.flagged(wid, flag.detector), flag.user)
        return [flag for flag, known in zip(flags, pipe.execute(), strict=True) if known is None]

    def _users_flag_windows(self, flags: Sequence[Flag]) -> dict[tuple[str, str], str]:
        """(user, detector) -> the window of the stored flag, so an older window never overwrites a newer one."""
        pipe = self.client.pipeline(transaction=False)
        for flag in flags:
            pipe.hget(self.layout.user_flags(flag.user), flag.detector)
        stored = {}
        for flag, value in zip(flags, pipe.execute(), strict=True):
            if value:
                stored[flag.user, flag.detector] = _sortable(orjson.loads(value)["window"])
        return stored

    def _publish(self, flags: Sequence[Flag]) -> None:
        if self.producer is None or not flags:
            return
        for flag in flags:
            self.producer.send(self.flags_topic, key=flag.user.encode(), value=flag.to_json())
        self.producer.flush()


def _sortable(wid: str) -> str:
    """Window ids compared by end time (zero-padded), then start."""
    start, end = wid.split("-")
    return f"{int(end):012d}-{int(start):012d}"


def _group(value: dict[str, Any]) -> Group:
    return Group(value["id"], value["window"], tuple(value["members"]), tuple(value["targets"]),
                 value["synchrony"], value["score"])
