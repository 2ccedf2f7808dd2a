"""Lockstep: groups of accounts acting on the same targets within seconds of each other, repeatedly.

CopyCatch (Beutel et al., WWW 2013) and SynchroTrap (Cao et al., CCS 2014) look for accounts whose
actions coincide on many targets; comparing every pair of accounts is quadratic, so candidates come
from MinHash signatures of each account's set of (target, time bucket) tokens and LSH banding:
accounts whose token sets overlap a lot share a band with high probability, unrelated ones rarely.
Buckets are 2 delta wide on two grids offset by delta, so two actions within delta of each other
always share a token. Candidates are then verified exactly: a pair is in lockstep when its members
acted within delta of each other on >= min_targets distinct targets; groups are the dense cores of
the verified graph (every member in lockstep with >= `density` of the others) with >= min_group
members. Every hash is seeded, so results do not depend on the process or PYTHONHASHSEED.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from clout.anomalies.bots import WindowColumns, window_columns
from clout.anomalies.config import LockstepConfig
from clout.anomalies.flag import Flag, Group, group_id
from clout.model.events import Event
from clout.model.sharding import mix64, stable_hash64

PRIME = np.uint64(4_294_967_311)  # smallest prime above 2**32: MinHash permutations h(x) = (a x + b) mod p
MASK32 = np.uint64(0xFFFFFFFF)


@dataclass
class LockstepResult:
    groups: list[Group]
    flags: list[Flag]
    stats: dict[str, float] = field(default_factory=dict)  # sizes of each stage, state memory in bytes


def _permutations(config: LockstepConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(config.seed))
    k = config.bands * config.rows
    a = rng.integers(1, 2**32, size=k, dtype=np.uint64)
    b = rng.integers(0, 2**32, size=k, dtype=np.uint64)
    return a, b


def _tokens(cols: WindowColumns, keep: np.ndarray, config: LockstepConfig) -> tuple[np.ndarray, np.ndarray]:
    """(actor, 32-bit token) of every kept event on both time grids, de-duplicated, sorted by actor."""
    events = np.flatnonzero(keep[cols.actor])
    width = int(2 * config.delta_s * 1000)
    ts, target = cols.ts[events], cols.target[events]
    distinct, inverse = np.unique(target, return_inverse=True)
    target_hash = np.array([stable_hash64(cols.names[t], config.seed) for t in distinct.tolist()],
                           dtype=np.uint64)[inverse]
    actor = np.concatenate([cols.actor[events]] * 2)
    grid = np.concatenate([ts // width * 2, (ts + width // 2) // width * 2 + 1]).astype(np.uint64)
    with np.errstate(over="ignore"):
        token = mix64(np.concatenate([target_hash] * 2) ^ mix64(grid)) & MASK32
    pairs = np.unique(np.stack([actor.astype(np.uint64), token]), axis=1)
    return pairs[0].astype(np.int64), pairs[1]


def _signatures(actor: np.ndarray, token: np.ndarray, config: LockstepConfig) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signature (bands x rows minima) of each actor's token set; actors in ascending code order."""
    a, b = _permutations(config)
    starts = np.flatnonzero(np.concatenate([[True], actor[1:] != actor[:-1]]))
    sig = np.empty((len(starts), len(a)), dtype=np.uint64)
    step = max(1, 4_000_000 // max(len(a), 1))  # bound the temporary (tokens x hashes) matrix
    for lo in range(0, len(starts), step):
        hi = min(lo + step, len(starts))
        t0 = starts[lo]
        t1 = starts[hi] if hi < len(starts) else len(token)
        hashed = (token[t0:t1, None] * a[None, :] + b[None, :]) % PRIME
        sig[lo:hi] = np.minimum.reduceat(hashed, starts[lo:hi] - t0, axis=0)
    return actor[starts], sig


def _candidate_pairs(sig: np.ndarray, rank: np.ndarray, config: LockstepConfig) -> set[tuple[int, int]]:
    """Pairs (row i < row j) that share at least one LSH band; an oversized bucket adds only the chain of
    its members in `rank` order (their names' order, so the result does not depend on event order)."""
    pairs: set[tuple[int, int]] = set()
    weights = mix64(np.arange(1, config.rows + 1, dtype=np.uint64))
    for band in range(config.bands):
        block = sig[:, band * config.rows:(band + 1) * config.rows]
        with np.errstate(over="ignore"):
            key = mix64((block * weights[None, :]).sum(axis=1, dtype=np.uint64) + np.uint64(band))
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        bounds = np.flatnonzero(np.concatenate([[True], sorted_key[1:] != sorted_key[:-1], [True]]))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if hi - lo < 2:
                continue
            members = sorted(order[lo:hi].tolist())
            if len(members) <= config.max_bucket:
                pairs.update((x, y) for i, x in enumerate(members) for y in members[i + 1:])
            else:
                chain = sorted(members, key=lambda row: rank[row])
                pairs.update((min(x, y), max(x, y)) for x, y in itertools.pairwise(chain))
    return pairs


def _times_by_target(cols: WindowColumns, actors: set[int]) -> dict[int, dict[int, list[int]]]:
    """actor -> target -> sorted action times, for the given actors only."""
    table: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    mask = np.isin(cols.actor, np.fromiter(actors, dtype=np.int64, count=len(actors)))
    idx = np.flatnonzero(mask)
    for a, t, ts in zip(cols.actor[idx].tolist(), cols.target[idx].tolist(), cols.ts[idx].tolist(), strict=True):
        table[a][t].append(ts)
    for per_target in table.values():
        for times in per_target.values():
            times.sort()
    return table


def _first_near(xs: list[int], ys: list[int], delta_ms: float) -> int | None:
    """The first x that lies within delta of some y (both sorted), if any."""
    for x in xs:
        i = bisect.bisect_left(ys, x - delta_ms)
        if i < len(ys) and ys[i] <= x + delta_ms:
            return x
    return None


def episodes(moments: Iterable[int], delta_ms: float) -> int:
    """Distinct moments: times within delta of an episode's first time belong to that episode.

    One post that names three accounts, reposted by two people, is three (target) edges each at one
    moment; counting moments keeps it from passing for lockstep on three targets.
    """
    count, start = 0, None
    for t in sorted(moments):
        if start is None or t - start > delta_ms:
            count, start = count + 1, t
    return count


def _lockstep_count(ta: dict[int, list[int]], tb: dict[int, list[int]], delta_ms: float) -> int:
    """Targets two accounts hit within delta of each other, counting targets hit at one moment once."""
    small, large = (ta, tb) if len(ta) <= len(tb) else (tb, ta)
    moments = [x for t, xs in small.items() if t in large and (x := _first_near(xs, large[t], delta_ms)) is not None]
    return min(len(moments), episodes(moments, delta_ms))


def _dense_cores(edges: list[tuple[int, int]], config: LockstepConfig) -> list[list[int]]:
    """Connected components of the verified graph, pruned until every member is linked to >= density
    of the others; cores smaller than min_group are dropped."""
    neighbours: dict[int, set[int]] = defaultdict(set)
    for x, y in edges:
        neighbours[x].add(y)
        neighbours[y].add(x)
    seen: set[int] = set()
    cores = []
    for start in sorted(neighbours):
        if start in seen:
            continue
        component, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node not in component:
                component.add(node)
                stack.extend(neighbours[node] - component)
        seen |= component
        while len(component) >= config.min_group:
            need = config.density * (len(component) - 1)
            weak = {n for n in component if len(neighbours[n] & component) < need}
            if not weak:
                break
            component -= weak
        if len(component) >= config.min_group:
            cores.append(sorted(component))
    return cores


def _group_targets(members: list[int], table: dict[int, dict[int, list[int]]], config: LockstepConfig
                   ) -> tuple[list[int], int, float, dict[int, int]]:
    """Targets that enough members hit within delta of another member, the distinct moments of those
    hits, the synchrony of the members' actions on them, and per member the targets it was in step on."""
    delta_ms = config.delta_s * 1000
    quorum = max(2, math.ceil(config.density * len(members)))
    per_target: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for m in members:
        for t, times in table[m].items():
            per_target[t].extend((ts, m) for ts in times)
    shared, moments, in_step, total = [], [], 0, 0
    member_targets: dict[int, int] = defaultdict(int)
    for t, actions in per_target.items():
        actions.sort()
        sync = [False] * len(actions)
        for i in range(len(actions)):
            j = i + 1
            while j < len(actions) and actions[j][0] - actions[i][0] <= delta_ms:
                if actions[j][1] != actions[i][1]:
                    sync[i] = sync[j] = True
                j += 1
        who = {m for (_, m), s in zip(actions, sync, strict=True) if s}
        if len(who) >= quorum:
            shared.append(t)
            moments.append(next(ts for (ts, _), s in zip(actions, sync, strict=True) if s))
            in_step += sum(sync)
            total += len(actions)
            for m in who:
                member_targets[m] += 1
    return sorted(shared), episodes(moments, delta_ms), (in_step / total if total else 0.0), member_targets


def group_score(size: int, targets: int, synchrony: float, config: LockstepConfig) -> float:
    """Synchrony times a saturating count of in-step actions: ~0.63 x synchrony for the smallest group
    the thresholds allow (min_group members on min_targets targets), towards synchrony for larger ones."""
    return synchrony * (1.0 - math.exp(-(size * targets) / (config.min_group * config.min_targets)))


def window_span(window: str) -> tuple[int, int]:
    """(start, end) in epoch seconds of a window id `<start>-<end>` (the Redis layout's window ids)."""
    start, _, end = window.partition("-")
    return int(start), int(end)


def recurrences(group: Group, earlier: Sequence[Group], config: LockstepConfig) -> int:
    """Earlier windows, ending before this group's window starts, that held a group sharing >= `overlap`
    of the smaller group's members: how often the same accounts were caught in lockstep before."""
    start, _ = window_span(group.window)
    members = set(group.members)
    seen = {
        g.window for g in earlier
        if window_span(g.window)[1] <= start
        and len(members.intersection(g.members)) >= config.overlap * min(len(members), len(g.members))
    }  # fmt: skip
    return len(seen)


def find_lockstep(
    events: Sequence[Event], window: str, config: LockstepConfig | None = None, earlier: Sequence[Group] = ()
) -> LockstepResult:
    """Coordination groups in one window's events, and flags for the members of recurring groups.

    Every group found is returned. Its members are flagged once the group recurs: `earlier` holds the
    groups found in the previous `config.memory_hours` (any windows; those overlapping this one are
    ignored), and the members are flagged when >= `config.recurrence` earlier windows held an overlapping
    group. With recurrence 0 members are flagged at first sight.
    """
    config = config or LockstepConfig()
    found = find_groups(events, window, config)
    return LockstepResult(found.groups, recurring_flags(found, earlier, config), found.stats)


@dataclass(frozen=True)
class WindowGroups:
    """One window's lockstep groups: a pure function of its events, so the window's own step finds
    them and the windows after it judge recurrence (`recurring_flags`) with the groups before them."""

    window: str
    groups: list[Group]
    stats: dict[str, float]
    in_step: dict[str, int]  # member -> shared targets it was in step on


def find_groups(events: Sequence[Event], window: str, config: LockstepConfig | None = None) -> WindowGroups:
    groups, stats, in_step = _groups(events, window, config or LockstepConfig())
    return WindowGroups(window, groups, stats, in_step)


def recurring_flags(found: WindowGroups, earlier: Sequence[Group], config: LockstepConfig | None = None
                    ) -> list[Flag]:
    """Flags for the members of the window's groups that overlap groups of >= `recurrence` earlier windows."""
    config = config or LockstepConfig()
    flags = []
    for group in found.groups:
        seen = recurrences(group, earlier, config)
        if seen < config.recurrence:
            continue
        reason = (f"acted within {config.delta_s:g} s of {len(group.members) - 1} other accounts on "
                  f"{len(group.targets)} shared targets (group {group.id}, synchrony {group.synchrony:.2f}), "
                  f"as in {seen} earlier windows")
        for name in group.members:
            evidence = {"group_size": len(group.members), "shared_targets": len(group.targets),
                        "synchrony": round(group.synchrony, 4), "member_targets_in_step": found.in_step[name],
                        "earlier_windows": seen, "delta_s": config.delta_s}
            flags.append(Flag(name, found.window, "lockstep", group.score, (reason,), evidence, group.id))
    found.stats["flags"] = float(len(flags))
    return flags


def _groups(events: Sequence[Event], window: str, config: LockstepConfig
            ) -> tuple[list[Group], dict[str, float], dict[str, int]]:
    """Verified groups of one window, stage sizes, and per member the shared targets it was in step on."""
    stats: dict[str, float] = {"events": float(len(events))}
    if not events:
        return [], stats, {}
    cols = window_columns(events)
    size = len(cols.names)
    distinct = np.bincount(np.unique(cols.actor * size + cols.target) // size, minlength=size)
    keep = distinct >= config.min_targets
    stats["actors"] = float(len(np.unique(cols.actor)))
    stats["candidates_prefiltered"] = float(keep.sum())
    if keep.sum() < config.min_group:
        return [], stats, {}
    actor, token = _tokens(cols, keep, config)
    codes, sig = _signatures(actor, token, config)
    names = [cols.names[c] for c in codes.tolist()]
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    pairs = _candidate_pairs(sig, rank, config)
    stats.update(tokens=float(len(token)), candidate_pairs=float(len(pairs)),
                 lsh_bytes=float(sig.nbytes + token.nbytes + actor.nbytes + 64 * len(pairs)))
    involved = {int(codes[i]) for pair in pairs for i in pair}
    table = _times_by_target(cols, involved) if involved else {}
    delta_ms = config.delta_s * 1000
    verified = [
        (int(codes[i]), int(codes[j])) for i, j in sorted(pairs)
        if _lockstep_count(table[int(codes[i])], table[int(codes[j])], delta_ms) >= config.min_targets
    ]  # fmt: skip
    stats["verified_pairs"] = float(len(verified))
    groups, in_step = [], {}
    for core in _dense_cores(verified, config):
        targets, moments, synchrony, member_targets = _group_targets(core, table, config)
        repeated = min(len(targets), moments)
        if repeated < config.min_targets:
            continue
        members = [cols.names[m] for m in core]
        score = group_score(len(core), repeated, synchrony, config)
        groups.append(Group(group_id(window, members), window, tuple(members),
                            tuple(cols.names[t] for t in targets), synchrony, score))
        in_step.update({cols.names[m]: member_targets.get(m, 0) for m in core})
    stats["groups"] = float(len(groups))
    return sorted(groups, key=lambda g: g.id), stats, in_step
