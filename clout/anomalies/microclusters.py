"""Edge-stream microclusters with MIDAS-R (Bhatia et al., "MIDAS: Microcluster-Based Detector of
Anomalies in Edge Streams", AAAI 2020).

For every edge (source -> destination) at tick t, MIDAS-R compares the current count `a` (this
tick, plus earlier ticks decayed by `decay` per tick) with the mean rate `s / t` of the total count
`s`, by the chi-squared statistic ((a - s/t) t)^2 / (s (t - 1)), for the edge, its source and its
destination; the edge's score is the largest of the three. Counts live in count-min sketches
(rows x buckets, minimum over rows), so memory is constant whatever the number of accounts.

Differences from the reference implementation, both deliberate: the current counts decay lazily,
per elapsed tick (the reference multiplies every cell once per new timestamp, which is the same
when every tick has traffic), and ticks count from the first one this instance saw. Hashes are
seeded blake2b and splitmix64, never Python's salted hash(), so every worker computes the same cells.

Sharding: route each edge by `shard_of(destination)`. A shard then holds exact-per-sketch counts
for its destinations and edges; its source counts only cover edges into its own destinations,
which weakens the source score but not the destination score that `microcluster_flags` relies on
("a target hit by a sudden burst of engagement from many sources").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from clout.anomalies.config import MidasConfig
from clout.anomalies.flag import Flag
from clout.model.events import Event
from clout.model.sharding import mix64, stable_hash64

PARTS = ("edge", "source", "destination")


def account_key(name: str) -> int:
    """The account's 64-bit key for the sketches, equal on every worker."""
    return stable_hash64(name)


def shard_of(destination: str, shards: int) -> int:
    """Which MIDAS-R shard scores edges into `destination`."""
    return stable_hash64(destination, seed=1) % shards


class EdgeScore(NamedTuple):
    """One scored edge: `score` is MIDAS-R's (the largest part), the parts are kept for the flags."""

    src: str
    dst: str
    tick: int
    score: float
    edge: float
    source: float
    destination: float


class _DecayingSketch:
    """Count-min sketch of current (decayed) and total counts; decay applied lazily per cell."""

    def __init__(self, rows: int, buckets: int, seeds: np.ndarray, decay: float) -> None:
        self.rows, self.buckets, self.seeds, self.decay = rows, buckets, seeds, decay
        self.current = np.zeros(rows * buckets, dtype=np.float64)
        self.stamp = np.zeros(rows * buckets, dtype=np.int64)  # tick of the cell's last update
        self.total = np.zeros(rows * buckets, dtype=np.float64)

    def cells(self, keys: np.ndarray) -> np.ndarray:
        """rows x n flat cell indices of the keys."""
        h = mix64(keys[None, :] ^ self.seeds[:, None])
        return (h % np.uint64(self.buckets)).astype(np.int64) + (np.arange(self.rows) * self.buckets)[:, None]

    def add(self, keys: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """Count keys (all at `tick`, in order); (current, total) estimate of each key after its own count."""
        cells = self.cells(keys)
        flat = cells.ravel()
        order = np.argsort(flat, kind="stable")
        sorted_cells = flat[order]
        first = np.concatenate([[True], sorted_cells[1:] != sorted_cells[:-1]])
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(flat)), 0))
        rank = np.empty(len(flat), dtype=np.float64)
        rank[order] = np.arange(len(flat)) - group_start + 1  # this key's position among same-cell keys
        base = self.current[flat] * self.decay ** (tick - self.stamp[flat]).astype(np.float64)
        current = (base + rank).reshape(cells.shape).min(axis=0)
        total = (self.total[flat] + rank).reshape(cells.shape).min(axis=0)
        unique = sorted_cells[first]
        counts = np.diff(np.concatenate([np.flatnonzero(first), [len(flat)]]))
        self.current[unique] = self.current[unique] * self.decay ** (tick - self.stamp[unique]) + counts
        self.stamp[unique] = tick
        self.total[unique] += counts
        return current, total

    @property
    def nbytes(self) -> int:
        return self.current.nbytes + self.stamp.nbytes + self.total.nbytes


def chi_squared(a: np.ndarray, s: np.ndarray, t: int) -> np.ndarray:
    """MIDAS's score: 0 on the first tick or for an unseen item."""
    if t <= 1:
        return np.zeros_like(a)
    return np.divide(((a - s / t) * t) ** 2, s * (t - 1), out=np.zeros_like(a), where=s > 0)


class MidasR:
    """MIDAS-R over one shard of the edge stream; feed edges in (roughly) time order.

    A tick earlier than the newest one seen counts as the newest (the stream is scored as it
    arrives, never rewritten). State is three sketches: 3 x rows x buckets x 24 bytes.
    """

    def __init__(self, config: MidasConfig | None = None) -> None:
        self.config = config = config or MidasConfig()
        rng = np.random.Generator(np.random.PCG64(config.seed))
        seeds = rng.integers(0, 2**63, size=(3, config.rows), dtype=np.uint64)
        self._sketches = [_DecayingSketch(config.rows, config.buckets, s, config.decay) for s in seeds]
        self.first_tick: int | None = None
        self.tick = 0  # newest tick, counted from 1

    def update(self, src: str, dst: str, ts_bucket: int) -> float:
        """Score one edge at tick `ts_bucket` (e.g. event time // tick length); updates the sketches."""
        return float(self.update_keys(np.array([account_key(src)], dtype=np.uint64),
                                      np.array([account_key(dst)], dtype=np.uint64),
                                      np.array([ts_bucket], dtype=np.int64))[0].max())

    def update_many(self, srcs: Sequence[str], dsts: Sequence[str], ts_buckets: Sequence[int]) -> np.ndarray:
        """Scores of many edges in order (n x 3: edge, source, destination); same result as one by one."""
        src = np.fromiter((account_key(s) for s in srcs), dtype=np.uint64, count=len(srcs))
        dst = np.fromiter((account_key(d) for d in dsts), dtype=np.uint64, count=len(dsts))
        return self.update_keys(src, dst, np.asarray(ts_buckets, dtype=np.int64))

    def score_events(self, events: Sequence[Event]) -> list[EdgeScore]:
        """Score a batch of events (one shard's, in order), ticks from event time; what a DoFn calls."""
        ticks = [e.ts // (self.config.tick_s * 1000) for e in events]
        parts = self.update_many([e.actor for e in events], [e.target for e in events], ticks)
        return [EdgeScore(e.actor, e.target, t, max(p), *p)
                for e, t, p in zip(events, ticks, parts.tolist(), strict=True)]

    def update_keys(self, src: np.ndarray, dst: np.ndarray, ts_buckets: np.ndarray) -> np.ndarray:
        """As update_many, with account keys already computed (account_key)."""
        out = np.zeros((len(src), 3), dtype=np.float64)
        if not len(src):
            return out
        if self.first_tick is None:
            self.first_tick = int(ts_buckets[0]) - 1
        ticks = np.maximum.accumulate(np.maximum(ts_buckets - self.first_tick, self.tick))
        edge = mix64(src * np.uint64(0x9E3779B97F4A7C15) ^ mix64(dst))
        bounds = np.flatnonzero(np.concatenate([[True], ticks[1:] != ticks[:-1], [True]]))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            t = int(ticks[lo])
            for j, keys in enumerate((edge[lo:hi], src[lo:hi], dst[lo:hi])):
                current, total = self._sketches[j].add(keys, t)
                out[lo:hi, j] = chi_squared(current, total, t)
            self.tick = t
        return out

    def memory_bytes(self) -> int:
        return sum(s.nbytes for s in self._sketches)


def target_strength(sources: int, config: MidasConfig) -> float:
    """Distinct bursting sources mapped into [0, 1): 0.5 at min_sources, 0.75 at twice as many."""
    return 1.0 - 0.5 ** (sources / config.min_sources)


def microcluster_flags(scores: Iterable[EdgeScore], window: str, config: MidasConfig | None = None) -> list[Flag]:
    """Flags for targets that >= min_sources distinct sources reached with a destination score >= threshold.

    `scores` are a window's scored edges; edges whose destination score is below the threshold cannot
    contribute, so a caller may drop them before grouping by window.
    """
    config = config or MidasConfig()
    sources: dict[str, set[str]] = defaultdict(set)
    peak: dict[str, float] = defaultdict(float)
    edges: dict[str, int] = defaultdict(int)
    for e in scores:
        if e.destination >= config.threshold:
            sources[e.dst].add(e.src)
            edges[e.dst] += 1
            peak[e.dst] = max(peak[e.dst], e.destination)
    flags = []
    for target in sorted(sources):
        n = len(sources[target])
        if n < config.min_sources:
            continue
        reason = (f"burst of engagement from {n} distinct accounts ({edges[target]} interactions scored above "
                  f"{config.threshold:g}; peak MIDAS-R destination score {peak[target]:.0f})")
        evidence = {"sources": n, "edges": edges[target], "peak_score": round(peak[target], 2),
                    "threshold": config.threshold}
        flags.append(Flag(target, window, "microcluster", target_strength(n, config), (reason,), evidence))
    return flags
