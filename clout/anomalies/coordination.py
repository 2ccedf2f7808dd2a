"""Coordination over a day or more: fast co-amplification pairs and shared repeated targets.

Why: a campaign's accounts each look ordinary; what gives them away is that the same accounts keep
amplifying the same sources within seconds of each other (fast retweet, Pacheco et al. ICWSM 2021)
and keep engaging the same small set of targets day after day (co-retweet / co-mention networks,
Luceri et al. WWW 2024). Both are kept bounded:

* `co_actions(columns)`: stateless per slice (key it by target shard): the pairs of accounts that
  amplified the same target within `window_ms`, skipping targets amplified by more than
  `max_actors` accounts in the slice (a celebrity's audience is not a network).
* `PairState` per account shard (of the pair's first account): a count-min sketch takes every
  pair's first sightings, and only pairs the sketch has seen before enter a bounded table of exact
  counts (capacity `capacity`, the weakest evicted first), so one-off coincidences cost no table row.
* `co_targeting(persistent)`: at verdict time, over every shard's `accounts.persistent_targets`
  (each account's top targets engaged on several days): per target, how many accounts engage it
  persistently (a campaign); per account, how many others share >= 2 such (non-celebrity) targets.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from clout.anomalies import accounts
from clout.anomalies.accounts import AMPLIFY, AccountState, Context
from clout.anomalies.columns import SliceColumns
from clout.model.sharding import shard_of, stable_hash64

Pair = tuple[str, str]


def co_actions(columns: SliceColumns, window_ms: int = 60_000, max_actors: int = 25) -> list[Pair]:
    """Pairs (sorted) of accounts amplifying the same target within `window_ms` of each other in this
    slice, each pair once per (target, slice)."""
    amplify = np.flatnonzero(np.isin(columns.kind, AMPLIFY))
    if len(amplify) < 2:
        return []
    target, ts, actor = columns.target[amplify], columns.ts[amplify], columns.actor[amplify]
    order = np.lexsort((ts, target))
    target, ts, actor = target[order], ts[order], actor[order]
    starts = np.flatnonzero(np.r_[True, target[1:] != target[:-1]])
    ends = np.r_[starts[1:], len(target)]
    names, pairs = columns.names, set()
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        if hi - lo < 2 or len(np.unique(actor[lo:hi])) > max_actors:
            continue
        t, a = ts[lo:hi].tolist(), actor[lo:hi].tolist()
        for i in range(len(t)):
            j = i + 1
            while j < len(t) and t[j] - t[i] <= window_ms:
                if a[j] != a[i]:
                    x, y = names[a[i]], names[a[j]]
                    pairs.add((x, y) if x < y else (y, x))
                j += 1
    return sorted(pairs)


@dataclass
class PairState:
    """Repeated fast co-amplification pairs whose first account is in this shard."""

    shard: int = 0
    shards: int = 1
    width: int = 1 << 16
    depth: int = 4
    capacity: int = 50_000
    sketch: np.ndarray = field(default=None)  # type: ignore[assignment]
    table: dict[Pair, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sketch is None:
            self.sketch = np.zeros((self.depth, self.width), dtype=np.uint32)

    def memory_bytes(self) -> int:
        return self.sketch.nbytes + sum(len(a) + len(b) + 120 for a, b in self.table)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        pairs = sorted(self.table)
        np.savez(buffer, meta=np.array([self.shard, self.shards, self.width, self.depth, self.capacity]),
                 sketch=self.sketch, a=np.array([p[0] for p in pairs], dtype=np.str_),
                 b=np.array([p[1] for p in pairs], dtype=np.str_),
                 n=np.array([self.table[p] for p in pairs], dtype=np.int64))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> PairState:
        with np.load(io.BytesIO(blob), allow_pickle=False) as d:
            shard, shards, width, depth, capacity = (int(x) for x in d["meta"])
            table = {(str(a), str(b)): int(n) for a, b, n in zip(d["a"], d["b"], d["n"], strict=True)}
            return cls(shard, shards, width, depth, capacity, d["sketch"].copy(), table)


def _cells(pair: Pair, width: int, depth: int) -> list[int]:
    h = stable_hash64(pair[0] + "\x1f" + pair[1], seed=11)
    return [((h >> (16 * i)) ^ (h >> (7 * i + 3))) % width for i in range(depth)]


def update_pairs(state: PairState, pairs: Iterable[Pair]) -> PairState:
    """Count this slice's pairs whose first account is in the shard (others are ignored)."""
    rows = np.arange(state.depth)
    for pair in pairs:
        if state.shards > 1 and shard_of(pair[0], state.shards) != state.shard:
            continue
        if pair in state.table:
            state.table[pair] += 1
            continue
        cells = _cells(pair, state.width, state.depth)
        state.sketch[rows, cells] += np.uint32(1)
        seen = int(state.sketch[rows, cells].min())
        if seen >= 2:
            state.table[pair] = seen
    if len(state.table) > state.capacity:
        keep = sorted(state.table.items(), key=lambda kv: (-kv[1], kv[0]))[: state.capacity * 3 // 4]
        state.table = dict(keep)
    return state


def fast_partners(states: Sequence[PairState], min_count: int = 3) -> dict[str, int]:
    """Per account: accounts it co-amplified fast with on >= min_count (target, slice) occasions."""
    partners: Counter[str] = Counter()
    for state in states:
        for (a, b), n in state.table.items():
            if n >= min_count:
                partners[a] += 1
                partners[b] += 1
    return dict(partners)


def co_targeting(persistent: Iterable[tuple[str, int]], max_engagers: int = 300, min_shared: int = 2
                 ) -> tuple[dict[str, int], dict[int, int]]:
    """(per account: others sharing >= min_shared persistent targets that at most max_engagers
    accounts engage; per target key: accounts engaging it persistently)."""
    engagers: dict[int, list[str]] = defaultdict(list)
    for account, key in persistent:
        engagers[key].append(account)
    campaign = {k: len(v) for k, v in engagers.items()}
    shared: Counter[Pair] = Counter()
    for who in engagers.values():
        if 2 <= len(who) <= max_engagers:
            shared.update(combinations(sorted(set(who)), 2))
    partners: Counter[str] = Counter()
    for (a, b), n in shared.items():
        if n >= min_shared:
            partners[a] += 1
            partners[b] += 1
    return dict(partners), campaign


def similar_partners(names: Sequence[str], signatures: np.ndarray, min_jaccard: float = 0.5, rows: int = 2,
                     max_bucket: int = 50) -> dict[str, int]:
    """Per account: others whose MinHash signatures agree on >= min_jaccard of their values, found by
    LSH banding (bands of `rows` values); buckets larger than max_bucket (a celebrity's audience) are
    skipped, which is what keeps the pair count bounded."""
    if len(names) < 2:
        return {}
    k = signatures.shape[1]
    found: set[tuple[int, int]] = set()
    for band in range(k // rows):
        part = signatures[:, band * rows:(band + 1) * rows]
        _, bucket = np.unique(part, axis=0, return_inverse=True)
        bucket = bucket.ravel()
        order = np.argsort(bucket, kind="stable")
        starts = np.flatnonzero(np.r_[True, bucket[order][1:] != bucket[order][:-1], True])
        for lo, hi in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=False):
            if 2 <= hi - lo <= max_bucket:
                members = order[lo:hi]
                sig = signatures[members]
                agree = (sig[:, None, :] == sig[None, :, :]).mean(axis=2)
                i, j = np.nonzero(np.triu(agree >= min_jaccard, 1))
                found.update(zip(members[i].tolist(), members[j].tolist(), strict=True))
    partners: Counter[str] = Counter()
    for i, j in found:
        partners[names[i]] += 1
        partners[names[j]] += 1
    return dict(partners)


def context_of(pair_states: Sequence[PairState], persistent: Iterable[tuple[str, int]],
               received: dict[int, int] | None = None,
               signed: tuple[Sequence[str], np.ndarray] | None = None) -> Context:
    """The cross-shard Context that accounts.verdicts reads. `received`: events received per target
    key (accounts.received_by_key), for the campaign share; `signed`: accounts.signatures of every shard."""
    co, campaign = co_targeting(persistent)
    received = received or {}
    share = {k: n / max(received.get(k, n), 1) for k, n in campaign.items()}
    similar = similar_partners(*signed) if signed is not None else {}
    return Context(fast_partners=fast_partners(pair_states), co_partners=co, similar=similar, campaign=campaign,
                   campaign_share=share)


def gather(states: Sequence[AccountState], pairs: Sequence[PairState]) -> Context:
    """The verdict-time combine across every account shard, once per due window: persistent targets,
    the campaign candidates' received counts, MinHash signatures and repeated fast pairs."""
    persistent = [p for s in states for p in accounts.persistent_targets(s)]
    keys = {k for _, k in persistent}
    received: dict[int, int] = {}
    for s in states:
        received.update(accounts.received_by_key(s, keys))
    signed = [accounts.signatures(s) for s in states]
    names = [a for n, _ in signed for a in n]
    sig = np.concatenate([g for _, g in signed]) if signed else np.zeros((0, accounts.MINHASH_K), np.uint32)
    return context_of(pairs, persistent, received, (names, sig))
