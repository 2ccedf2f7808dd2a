"""Snapshots of the per-shard account state, so a restarted pipeline resumes the long-horizon evidence.

Why in Redis: the account verdicts read days of evidence per account (clout/anomalies/accounts.py),
and a local runner's Beam state dies with its process, while a restart replays only about two days
of the topic (recovery.py). So the account stage writes each shard's state, folded exactly through
a day boundary, as bytes (zlib) under one hash per group and shard count, a field per day. A restart
picks the newest day every shard has a snapshot of, at or before the oldest window it recomputes,
and replays the topic from there. The newest `KEEP` days are kept: one of them is always old enough.

The bytes are a pure function of the events folded (AccountState.to_bytes: equal states, equal
bytes), so a replayed write is the same write.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from clout.store.layout import KeyLayout

KEEP = 3  # days of snapshots per shard: the replay horizon lies up to 2 days behind the newest


def write_snapshot(client: Any, layout: KeyLayout, group: str, shard: int, shards: int, through_ms: int,
                   blob: bytes, ttl_s: int) -> None:
    """Store the shard's state folded through `through_ms`, and drop all but the newest KEEP days."""
    key = layout.account_snapshots(group, shards, shard)
    client.hset(key, str(through_ms), zlib.compress(blob, 1))
    older = sorted((int(f) for f in client.hkeys(key)), reverse=True)[KEEP:]
    if older:
        client.hdel(key, *(str(t) for t in older))
    client.expire(key, ttl_s)


def snapshot_days(client: Any, layout: KeyLayout, group: str, shards: int) -> list[set[int]]:
    """Per shard, the days (through_ms) it has a snapshot of."""
    return [{int(f) for f in client.hkeys(layout.account_snapshots(group, shards, shard))} for shard in range(shards)]


def common_snapshot(days: Sequence[set[int]], at_or_before_ms: int) -> int | None:
    """The newest day every shard has, not after `at_or_before_ms`; None if there is none."""
    common = set.intersection(*map(set, days)) if days else set()
    usable = [t for t in common if t <= at_or_before_ms]
    return max(usable) if usable else None


def read_snapshot(client: Any, layout: KeyLayout, group: str, shard: int, shards: int, through_ms: int) -> bytes:
    """The shard's state bytes folded through `through_ms`; a clear error if Redis no longer has them."""
    blob = client.hget(layout.account_snapshots(group, shards, shard), str(through_ms))
    if blob is None:
        raise LookupError(f"account state of shard {shard}/{shards} through {through_ms} is gone from Redis "
                          f"(group {group!r}): restart with --from-beginning to rebuild it from the topic")
    return zlib.decompress(blob)


def drop_snapshots(client: Any, layout: KeyLayout, group: str, shards: int) -> None:
    """Forget the group's snapshots (a --reset: the account state starts over)."""
    for shard in range(shards):
        client.delete(layout.account_snapshots(group, shards, shard))
