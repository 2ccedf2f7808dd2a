"""The independent recount: per window and user, from raw (actor, target, ts_ms, kind) tuples, in
plain Python. Deliberately shares no code with the pipeline (windows are recomputed from their
definition: [start, start + size) for every start that is a multiple of the period)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import networkx as nx
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


AMPLIFYING = {"repost", "quote"}


def recount_influence_parts(interactions: Iterable[Interaction], size_s: int = 3600,
                            period_s: int = 900) -> dict[str, dict[str, tuple[int, float]]]:
    """Per window and engaged user: (reach, amplification), self-engagement left out. Reach is the
    number of distinct other accounts that engaged; amplification the share of that engagement
    that spreads the user's content (reposts and quotes)."""
    size, period = size_s * 1000, period_s * 1000
    engagers: dict = defaultdict(lambda: defaultdict(set))
    received: dict = defaultdict(Counter)
    spread: dict = defaultdict(Counter)
    for actor, target, ts, kind in interactions:
        if actor == target:
            continue
        start = (ts // period) * period
        while start + size > ts:
            window = f"{start // 1000}-{(start + size) // 1000}"
            engagers[window][target].add(actor)
            received[window][target] += 1
            spread[window][target] += kind in AMPLIFYING
            start -= period
    return {window: {user: (len(actors), spread[window][user] / received[window][user])
                     for user, actors in users.items()}
            for window, users in engagers.items()}


# The influence definition's edge weights, restated here (like and follow and message weigh 1).
PAGERANK_WEIGHT = {"repost": 3.0, "quote": 3.0, "reply": 2.0, "mention": 2.0}


def networkx_pagerank(interactions: Iterable[Interaction], window: str) -> dict[str, float]:
    """networkx.pagerank of one window ("start-end" in seconds) on the weighted graph rebuilt from the raw
    interactions: every account a node, self-interactions no edge, with networkx's defaults (tolerance
    1e-6, 100 steps), as the pipeline's."""
    start, end = (int(x) * 1000 for x in window.split("-"))
    weights: dict[tuple[str, str], float] = defaultdict(float)
    graph = nx.DiGraph()
    for actor, target, ts, kind in interactions:
        if start <= ts < end:
            graph.add_nodes_from((actor, target))
            if actor != target:
                weights[actor, target] += PAGERANK_WEIGHT.get(kind, 1.0)
    graph.add_weighted_edges_from((a, t, w) for (a, t), w in weights.items())
    return nx.pagerank(graph, alpha=0.85, weight="weight")


def read_influence(client: redis.Redis, prefix: str) -> dict[str, dict[str, dict]]:
    windows = [w.decode() for w in client.zrange(f"{prefix}:v1:windows", 0, -1)]
    stored = {window: client.hgetall(f"{prefix}:v1:win:{{{window}}}:influence") for window in windows}
    return {window: {u.decode(): orjson.loads(v) for u, v in users.items()} for window, users in stored.items()}


def influence_differences(expected: dict[str, dict[str, tuple[int, float]]], actual: dict[str, dict[str, dict]],
                          limit: int = 5) -> list[str]:
    """Reach exactly, amplification to the 4 decimals Redis keeps, for every engaged user."""
    out = []
    for window in sorted(set(expected) | {w for w, users in actual.items() if any(u["reach"] for u in users.values())}):
        got = actual.get(window, {})
        for user, (reach, amplification) in sorted(expected.get(window, {}).items()):
            mine = got.get(user)
            if mine is None or mine["reach"] != reach or abs(mine["amplification"] - amplification) > 6e-5:
                out.append(f"window {window} user {user}: expected reach {reach} amplification {amplification:.4f}, "
                           f"got {mine and (mine['reach'], mine['amplification'])}")
                break
        unexpected = [u for u, v in got.items() if v["reach"] and u not in expected.get(window, {})]
        if unexpected:
            out.append(f"window {window}: reach without engagement for {unexpected[:3]}")
        if len(out) >= limit:
            break
    return out


def snapshot(client: redis.Redis, prefix: str) -> dict[str, object]:
    """Every result key under `prefix` (bookkeeping left out), with the prefix stripped, for comparing
    two runs. Stream entries are compared by content: their ids are arrival times."""
    out: dict[str, object] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        name = key.decode()[len(prefix):]
        kind = client.type(key).decode()
        if ":progress:" in name or ":announced:" in name or ":accounts:" in name:
            continue  # bookkeeping: names a group or a process; which flags were announced follows pane order
        if kind == "hash":
            out[name] = client.hgetall(key)
        elif kind == "zset":
            out[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "string":
            out[name] = client.get(key)
        elif kind == "stream":
            out[name] = sorted(tuple(sorted(fields.items())) for _, fields in client.xrange(key))
        else:
            out[name] = kind
    return out
