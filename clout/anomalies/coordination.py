"""Coordination over a day or more: fast co-amplification pairs and co-target similarity bands.

Why: a campaign's accounts each look ordinary; what gives them away is that the same accounts keep
amplifying the same sources within seconds of each other (fast retweet, Pacheco et al. ICWSM 2021)
and keep engaging the same small set of accounts day after day (co-retweet / co-mention networks,
Luceri et al. WWW 2024). Both are kept bounded, per account shard:

* `co_actions`: per slice, the pairs of accounts that amplified the same target within
  `window_ms`, skipping targets amplified by more than `max_actors` accounts in the slice (a
  celebrity's audience is not a network).
* `PairTable`: a count-min sketch takes every pair's first sightings, and only pairs the sketch has
  seen before enter a bounded table of exact counts (the weakest evicted first), so one-off
  coincidences cost no table row. A shard keeps the pairs that involve one of its accounts.
* `band_keys`: LSH bands of each account's MinHash of its repeated targets. Two accounts share a
  band with probability J^rows (J: the Jaccard similarity of their repeated targets), so the number
  of accounts in the same band buckets, summed over shards, says who engages nearly the same accounts
  without any pairwise comparison across shards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from clout.model.columns import EventColumns
from clout.model.kinds import KIND_INDEX
from clout.model.sharding import mix64, stable_hash64

Pair = tuple[str, str]
AMPLIFY = np.array([KIND_INDEX["repost"], KIND_INDEX["quote"], KIND_INDEX["like"]])
BAND_ROWS = 2  # MinHash values per LSH band


def co_actions(columns: EventColumns, mine: np.ndarray | None = None, window_ms: int = 60_000,
               max_actors: int = 25) -> list[Pair]:
    """Pairs (sorted) of accounts amplifying the same target within `window_ms` of each other in this
    slice, each pair once per (target, slice). With `mine` (a boolean per row: the actor is one of
    the shard's accounts), only targets one of the shard's accounts amplified are looked at."""
    amplify = np.isin(columns.kind, AMPLIFY)
    if mine is not None:
        amplify &= np.isin(columns.target, columns.target[amplify & mine])
    rows = np.flatnonzero(amplify)
    if len(rows) < 2:
        return []
    target, ts, actor = columns.target[rows], columns.ts[rows], columns.actor[rows]
    order = np.lexsort((actor, ts, target))
    target, ts, actor = target[order], ts[order], actor[order]
    starts = np.flatnonzero(np.r_[True, target[1:] != target[:-1]])
    ends = np.r_[starts[1:], len(target)]
    names, pairs = columns.names, set()
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        if hi - lo < 2 or (hi - lo > max_actors and len(np.unique(actor[lo:hi])) > max_actors):
            continue
        pairs.update(_close_pairs(ts[lo:hi].tolist(), [names[a] for a in actor[lo:hi].tolist()], window_ms))
    return sorted(pairs)


def _close_pairs(ts: list[int], who: list[str], window_ms: int) -> set[Pair]:
    out = set()
    for i in range(len(ts)):
        j = i + 1
        while j < len(ts) and ts[j] - ts[i] <= window_ms:
            if who[j] != who[i]:
                x, y = who[i], who[j]
                out.add((x, y) if x < y else (y, x))
            j += 1
    return out


@dataclass
class PairTable:
    """Repeated fast co-amplification pairs: a count-min gate and a bounded table of exact counts."""

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

    def add(self, pairs: Iterable[Pair]) -> list[Pair]:
        """Count each pair once; returns the pairs seen for the second time just now (newly repeated:
        they enter the table)."""
        fresh = []
        for pair in pairs:
            if pair in self.table:
                self.table[pair] += 1
            else:
                fresh.append(pair)
        repeated = self._sighted(fresh)
        if len(self.table) > self.capacity:
            keep = sorted(self.table.items(), key=lambda kv: (-kv[1], kv[0]))[: self.capacity * 3 // 4]
            self.table = dict(keep)
        return repeated


    def _sighted(self, pairs: list[Pair]) -> list[Pair]:
        """Count first sightings in the sketch, one pair after the other; pairs the sketch has seen
        before enter the table. When no two of the pairs share a cell (almost always), one
        vectorised step gives exactly what the pair-by-pair loop gives."""
        if not pairs:
            return []
        cells = np.array([_cells(p, self.width, self.depth) for p in pairs], dtype=np.int64)  # (pairs, depth)
        flat = cells + np.arange(self.depth) * self.width
        if len(np.unique(flat)) == flat.size:
            self.sketch.reshape(-1)[flat.ravel()] += np.uint32(1)
            seen = self.sketch.reshape(-1)[flat].min(axis=1)
        else:
            seen = np.empty(len(pairs), dtype=np.int64)
            for i, row in enumerate(flat):
                self.sketch.reshape(-1)[row] += np.uint32(1)
                seen[i] = self.sketch.reshape(-1)[row].min()
        repeated = [p for p, n in zip(pairs, seen.tolist(), strict=True) if n >= 2]
        self.table.update((p, int(n)) for p, n in zip(pairs, seen.tolist(), strict=True) if n >= 2)
        return repeated


def _cells(pair: Pair, width: int, depth: int) -> list[int]:
    h = stable_hash64(pair[0] + "\x1f" + pair[1], seed=11)
    return [((h >> (16 * i)) ^ (h >> (7 * i + 3))) % width for i in range(depth)]


def band_keys(signatures: np.ndarray) -> np.ndarray:
    """(accounts, bands) 64-bit keys: band b's MinHash values hashed with b, the same on any process."""
    n, k = signatures.shape
    bands = k // BAND_ROWS
    sig = signatures[:, : bands * BAND_ROWS].astype(np.uint64).reshape(n, bands, BAND_ROWS)
    key = np.broadcast_to(np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15), (n, bands)).copy()
    for r in range(BAND_ROWS):
        key = mix64(key ^ sig[:, :, r])
    return key


def merge_counts(parts: Iterable[tuple[np.ndarray, np.ndarray]], min_count: int = 2,
                 max_count: int | None = None) -> dict[int, int]:
    """Sum (keys, counts) arrays from every shard; keep keys with min_count <= total <= max_count."""
    parts = [(k, c) for k, c in parts if len(k)]
    if not parts:
        return {}
    keys, inverse = np.unique(np.concatenate([k for k, _ in parts]), return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=np.concatenate([c for _, c in parts])).astype(np.int64)
    keep = total >= min_count
    if max_count is not None:
        keep &= total <= max_count
    return dict(zip(keys[keep].tolist(), total[keep].tolist(), strict=True))
