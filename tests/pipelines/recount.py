"""The independent recount: per window and user, from raw (actor, target, ts_ms, kind) tuples, in
plain Python. Deliberately shares no code with the pipeline (windows are recomputed from their
definition: [start, start + size) for every start that is a multiple of the period)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import orjson
import redis

Interaction = tuple[str, str, int, str]  # actor, target, ts_ms, kind


def recount(interactions: Iterable[Interaction], size_s: int = 3600, period_s: int = 900) -> dict[str, dict]:
    size, period = size_s * 1000, period_s * 1000
    received: dict = defaultdict(lambda: defaultdict(Counter))
    sent: dict = defaultdict(lambda: defaultdict(Counter))
    engagers: dict = defaultdict(lambda: defaultdict(set))
    for actor, target, ts, kind in interactions:
        start = (ts // period) * period
        while start + size > ts:
            window = f"{start // 1000}-{(start + size) // 1000}"
            received[window][target][kind] += 1
            engagers[window][target].add(actor)
            sent[window][actor][kind] += 1
            start -= period
    result: dict[str, dict] = {}
    for window in set(received) | set(sent):
        users = set(received[window]) | set(sent[window])
        result[window] = {
            user: {
                "received": dict(received[window][user]),
                "sent": dict(sent[window][user]),
                "engagers": len(engagers[window][user]),
                "in": sum(received[window][user].values()),
                "out": sum(sent[window][user].values()),
            }
            for user in users
        }
    return result


def read_back(client: redis.Redis, prefix: str) -> dict[str, dict]:
    """Everything the pipeline wrote, by the documented key layout."""
    windows = [w.decode() for w in client.zrange(f"{prefix}:v1:windows", 0, -1)]
    activity = {window: client.hgetall(f"{prefix}:v1:win:{{{window}}}:activity") for window in windows}
    return {window: {u.decode(): orjson.loads(v) for u, v in users.items()} for window, users in activity.items()}


def differences(expected: dict[str, dict], actual: dict[str, dict], limit: int = 5) -> list[str]:
    """A few human-readable differences, empty when equal."""
    out = []
    for window in sorted(set(expected) | set(actual)):
        want, got = expected.get(window, {}), actual.get(window, {})
        if want == got:
            continue
        for user in sorted(set(want) | set(got)):
            if want.get(user) != got.get(user):
                out.append(f"window {window} user {user}: expected {want.get(user)}, got {got.get(user)}")
                break
        if len(out) >= limit:
            break
    return out
