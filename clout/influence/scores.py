"""Influence of every user in one window: reach, amplification and network influence, scored 1..100.

Plain numpy/scipy, no Beam: the pipeline's stateful step collects a window's events and calls these.
A window can hold a million interactions, so everything past reading the events is vectorised, and
every floating-point sum runs in one canonical order (edges sorted by target, engager, kind) so that
the same events give bit-identical results whatever their order or bundling. Formulas and their
reasons: docs/influence.md.
"""

from __future__ import annotations

import functools
import gc
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson
from scipy import sparse

from clout.model.columns import EventColumns, from_events
from clout.model.events import Event
from clout.model.kinds import KIND_ORDER

# Spreading content (repost, quote) is the strongest endorsement, a conversation (reply, mention)
# next; a like, a follow or a private message costs the engager least and reaches nobody else.
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {
    "repost": 3.0, "quote": 3.0, "reply": 2.0, "mention": 2.0, "message": 1.0, "like": 1.0, "follow": 1.0,
}
AMPLIFYING_KINDS = ("repost", "quote")
_AMPLIFYING = np.array([kind in AMPLIFYING_KINDS for kind in KIND_ORDER])


@dataclass(frozen=True)
class InfluenceConfig:
    """How influence is weighed. Kinds left out of `kind_weights` weigh 0 in the network (they still
    count for reach and amplification). The part weights are relative: they are divided by their sum.
    `score_decades`: the fewest tenfold steps of rarity the 1..100 scale spans (4: 25 points each)."""

    kind_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS), hash=False)
    damping: float = 0.85
    tol: float = 1e-6
    max_iter: int = 100
    reach_weight: float = 0.4
    amplification_weight: float = 0.2
    network_weight: float = 0.4
    score_decades: float = 4.0
    half_life_s: int = 86_400
    history_len: int = 96

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kind_weights) - set(KIND_ORDER))
        if unknown:
            raise ValueError(f"kind_weights: unknown kinds {unknown}; known: {list(KIND_ORDER)}")
        if not all(_finite_at_least(w, 0.0) for w in self.kind_weights.values()) or not any(
                w > 0 for w in self.kind_weights.values()):
            raise ValueError(f"kind_weights must be finite, >= 0 and not all 0: {dict(self.kind_weights)}")
        object.__setattr__(self, "kind_weights", {k: float(v) for k, v in self.kind_weights.items()})
        if not 0.0 < self.damping < 1.0:
            raise ValueError(f"damping must be in (0, 1), got {self.damping}")
        if not (_finite_at_least(self.tol, 0.0) and self.tol > 0):
            raise ValueError(f"tol must be > 0, got {self.tol}")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter}")
        parts = (self.reach_weight, self.amplification_weight, self.network_weight)
        if not all(_finite_at_least(w, 0.0) for w in parts) or sum(parts) <= 0:
            raise ValueError(f"part weights (reach, amplification, network) must be >= 0, sum > 0: {parts}")
        if not (_finite_at_least(self.score_decades, 0.0) and self.score_decades > 0):
            raise ValueError(f"score_decades must be > 0, got {self.score_decades}")
        if not (isinstance(self.half_life_s, int) and self.half_life_s > 0):
            raise ValueError(f"half_life_s must be a positive integer, got {self.half_life_s}")
        if not (isinstance(self.history_len, int) and self.history_len >= 1):
            raise ValueError(f"history_len must be an integer >= 1, got {self.history_len}")

    def kind_weight_array(self) -> np.ndarray:
        """Weights indexed like `Event.kind`."""
        return np.array([self.kind_weights.get(kind, 0.0) for kind in KIND_ORDER])


def _finite_at_least(value: float, low: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= low


class Parts(NamedTuple):
    """Each part as a percentile (0..1) among the window's active users: what the score is made of."""

    reach: float
    amplification: float
    network: float


_NO_PARTS = Parts(0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class UserInfluence:
    """One user's influence in one window. `raw` is the unrounded score (sorted-set scores);
    `rank` 1 is the best of the window (ties share a rank); `percentile` is 0 for inactive users."""

    score: int
    raw: float
    reach: int
    amplification: float
    network: float
    parts: Parts
    rank: int
    percentile: float
    platform: str

    def to_json(self, clean_score: float | None, final: bool) -> bytes:
        """The Influence JSON of clout/store/layout.py; fractions rounded for display, PageRank exact."""
        return orjson.dumps({**self.to_dict(clean_score), "final": final})

    def to_dict(self, clean_score: float | None) -> dict[str, Any]:
        """The Influence JSON's fields but `final` (a user's `latest` has none)."""
        return {
            "score": self.score, "reach": self.reach, "amplification": round(self.amplification, 4),
            "network": self.network,
            "parts": {name: round(value, 4) for name, value in self.parts._asdict().items()},
            "rank": self.rank, "percentile": round(self.percentile, 2), "platform": self.platform,
            "clean_score": None if clean_score is None else rounded_score(clean_score),
        }


def rounded_score(raw: float) -> int:
    """Half up, not Python's half-to-even, so 50.5 shows as 51 like any reader would expect."""
    return math.floor(raw + 0.5)


# ---------------------------------------------------------------------------------------------- PageRank

def pagerank(n_nodes: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, damping: float = 0.85,
             tol: float = 1e-6, max_iter: int = 100) -> np.ndarray:
    """networkx.pagerank's definition (personalization None, dangling mass spread uniformly), so the
    independent reference in the tests can check it: parallel edges add their weights, self-loops
    count as in networkx. Returns the last iterate if `max_iter` is reached without convergence
    rather than failing a window (the L1 change after k steps is at most 2·damping^k)."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    if not (src.shape == dst.shape == weight.shape):
        raise ValueError("src, dst and weight must have the same length")
    if len(weight) and not (np.all(np.isfinite(weight)) and weight.min() >= 0):
        raise ValueError("edge weights must be finite and >= 0")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n_nodes):
        raise ValueError(f"node ids must be in 0..{n_nodes - 1}")
    order = np.lexsort((weight, src, dst))  # canonical summation order: any edge order gives the same bits
    src, dst, weight = src[order], dst[order], weight[order]
    first = _run_starts(dst * n_nodes + src)
    total = np.add.reduceat(weight, first) if len(first) else weight
    return _pagerank_canonical(n_nodes, src[first], dst[first], total, damping, tol, max_iter)


def _pagerank_canonical(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, damping: float,
                        tol: float, max_iter: int, passed: np.ndarray | None = None) -> np.ndarray:
    """PageRank of distinct edges sorted by (dst, src): the transition matrix is built transposed,
    straight in CSR form (rows = engaged users), so one iteration is one sparse mat-vec.

    `passed` (per node, 0..1) is the share of its influence a down-weighted actor still passes on:
    the rest leaks rather than being spread over everyone as a dangling node's is, which would lift
    every other account and shift the scale the clean score is read on."""
    if n == 0:
        return np.zeros(0)
    live = weight > 0
    src, dst, weight = src[live], dst[live], weight[live]
    out_strength = np.bincount(src, weight, n)
    dangling = np.flatnonzero(out_strength == 0)
    inverse = np.zeros(n)
    np.divide(1.0, out_strength, out=inverse, where=out_strength > 0)
    indptr = np.concatenate(([0], np.cumsum(np.bincount(dst, minlength=n))))
    if passed is not None:
        inverse *= passed
    transition = sparse.csr_array((weight * inverse[src], src, indptr), shape=(n, n))
    uniform = 1.0 / n
    x = np.full(n, uniform)
    for _ in range(max_iter):
        last = x
        x = damping * (transition @ x + x[dangling].sum() * uniform) + (1.0 - damping) * uniform
        if np.abs(x - last).sum() < n * tol:  # networkx's stopping rule
            break
    return x


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal keys."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


# ------------------------------------------------------------------------------------- window measures

class _Window(NamedTuple):
    """The measured window, arrays indexed by user (users sorted by id)."""

    users: list[str]
    platforms: list[str]
    reach: np.ndarray  # distinct engagers whose weight is > 0
    weighted_reach: np.ndarray  # sum of the distinct engagers' weights (= reach without actor weights)
    amplification: np.ndarray
    network: np.ndarray
    active: np.ndarray  # received weighted engagement > 0


def _measure(events: Iterable[Event] | EventColumns, config: InfluenceConfig,
             actor_weight: Mapping[str, float] | None) -> _Window:
    cols = events if isinstance(events, EventColumns) else from_events(events)
    if not _canonical_names(cols):
        cols = cols.compact()
    users = list(cols.names)
    n, kinds_n = len(users), len(KIND_ORDER)
    index = dict(zip(users, range(n), strict=True))
    src, dst = cols.actor.astype(np.int64), cols.target.astype(np.int64)
    kinds = cols.kind.astype(np.int64)
    if len(kinds) and (kinds.min() < 0 or kinds.max() >= kinds_n):
        raise ValueError(f"event kind index out of range 0..{kinds_n - 1}")
    engager = _engager_weights(index, n, actor_weight)

    # One row per distinct (target, engager, kind), self-interactions left out, in canonical order.
    keep = src != dst
    key, count = np.unique((dst[keep] * n + src[keep]) * kinds_n + kinds[keep], return_counts=True)
    kind, pair = key % kinds_n, key // kinds_n
    s, d = pair % n, pair // n
    received = count * engager[s]
    total = np.bincount(d, received, n)
    amplifying = np.bincount(d, received * _AMPLIFYING[kind], n)
    amplification = np.zeros(n)
    np.divide(amplifying, total, out=amplification, where=total > 0)

    first = _run_starts(pair)  # one per distinct (target, engager)
    ps, pd = s[first], d[first]
    edge = count * config.kind_weight_array()[kind]
    network = _pagerank_canonical(n, ps, pd, np.add.reduceat(edge, first) if len(first) else edge,
                                  config.damping, config.tol, config.max_iter,
                                  engager if actor_weight is not None else None)
    return _Window(
        users=users, platforms=_platforms(cols, src, dst, n),
        reach=np.bincount(pd[engager[ps] > 0], minlength=n), weighted_reach=np.bincount(pd, engager[ps], n),
        amplification=amplification, network=network, active=total > 0)


def _canonical_names(cols: EventColumns) -> bool:
    """Names sorted, each used: what `concat` gives, so the users' order is the names' order."""
    names = np.asarray(cols.names, dtype=object)
    if len(names) > 1 and not np.all(names[:-1] < names[1:]):
        return False
    used = np.zeros(len(names), dtype=bool)
    used[cols.actor] = True
    used[cols.target] = True
    return bool(used.all())


def _engager_weights(index: dict[str, int], n: int, actor_weight: Mapping[str, float] | None) -> np.ndarray:
    weights = np.ones(n)
    for actor, weight in (actor_weight or {}).items():
        if not _finite_at_least(weight, 0.0) or weight > 1:
            raise ValueError(f"actor_weight[{actor!r}] must be in [0, 1], got {weight}")
        if actor in index:
            weights[index[actor]] = weight
    return weights


def _platforms(cols: EventColumns, src: np.ndarray, dst: np.ndarray, n: int) -> list[str]:
    """Each user's platform: the most frequent among the events they appear in (ties: the first by name)."""
    distinct, code = np.unique(np.asarray(cols.platforms, dtype=object)[cols.platform], return_inverse=True)
    if len(distinct) <= 1:
        return distinct.tolist() * n
    per_user = np.bincount(np.concatenate((src, dst)) * len(distinct) + np.concatenate((code, code)),
                           minlength=n * len(distinct)).reshape(n, len(distinct))
    return [distinct[i] for i in per_user.argmax(axis=1).tolist()]


# ------------------------------------------------------------------------------------------- the score

class _Scale(NamedTuple):
    """Sorted values of a window's active users: the scale scores are calibrated on."""

    reach: np.ndarray
    amplification: np.ndarray
    network: np.ndarray
    combined: np.ndarray


def _percentiles(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile in 0..1: the share of the reference below each value, ties counted half.
    Distribution-free, so a stable stream gives stable parts however skewed the raw figures are."""
    if len(sorted_reference) == 0:
        return np.zeros(len(values))
    below = np.searchsorted(sorted_reference, values, side="left")
    at_most = np.searchsorted(sorted_reference, values, side="right")
    return (below + at_most) / (2.0 * len(sorted_reference))


def _rarity(p: np.ndarray, n: int) -> np.ndarray:
    """log10(1 / top fraction): 0 at the bottom, +1 for each tenfold rarer. The top fraction is
    floored at half a place among n (where the best of n mid-ranked values lies), so a clean value
    beyond the whole raw scale reads as the raw top, not as infinitely rare."""
    return -np.log10(np.maximum(1.0 - p, 0.5 / max(n, 1)))


def _combined(reach: np.ndarray, amplification: np.ndarray, network: np.ndarray, n: int,
              config: InfluenceConfig) -> np.ndarray:
    """Weighted mean of the parts' rarities, not of their percentiles: the top 0.01 % in reach or
    network outweighs a share of reposts many small accounts tie at, as it should."""
    total = config.reach_weight + config.amplification_weight + config.network_weight
    return (config.reach_weight * _rarity(reach, n) + config.amplification_weight * _rarity(amplification, n)
            + config.network_weight * _rarity(network, n)) / total


def _log_scaled(q: np.ndarray, n: int, config: InfluenceConfig) -> np.ndarray:
    """1..100 by rarity: 1 + 99·rarity(q) / D, D = max(score_decades, log10(2n)): 99/D points per
    tenfold rarer; 100 only for the best of a window of over 5,000 active users (D = 4)."""
    decades = max(config.score_decades, math.log10(2 * max(n, 1)))
    return np.minimum(100.0, 1.0 + 99.0 * _rarity(q, n) / decades)  # min: log10(2n) in two roundings


def _scored(window: _Window, config: InfluenceConfig,
            scale: _Scale | None) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """(raw score, parts, combined percentile q) of every user; active users are calibrated on
    `scale`, or on the window itself if None; inactive users get raw 1, parts 0 and q 0."""
    active = np.flatnonzero(window.active)
    values = (window.weighted_reach[active], window.amplification[active], window.network[active])
    references = scale[:3] if scale is not None else tuple(np.sort(v) for v in values)
    n_ref = len(references[0])
    active_parts = [_percentiles(r, v) for r, v in zip(references, values, strict=True)]
    combined = _combined(*active_parts, n_ref, config)
    q_active = _percentiles(scale.combined if scale is not None else np.sort(combined), combined)
    n = len(window.users)
    raw, q = np.ones(n), np.zeros(n)
    raw[active], q[active] = _log_scaled(q_active, n_ref, config), q_active
    parts = tuple(np.zeros(n) for _ in range(3))
    for full, part in zip(parts, active_parts, strict=True):
        full[active] = part
    return raw, parts, q


def window_influence(events: Iterable[Event] | EventColumns, config: InfluenceConfig,
                     actor_weight: Mapping[str, float] | None = None) -> InfluenceTable:
    """Influence of every user who appears in the window's events (as actor or target).

    Self-interactions are left out. The n active users (received >= 1 engagement from someone else)
    are scored against each other, which needs no assumption about the figures' distribution:
      p_x    = mid-rank percentile of part x (reach, amplification, network) among them, in 0..1;
      r(p)   = log10(1 / max(1 - p, 1/(2n)))   (rarity: +1 per tenfold rarer);
      c      = (w_r·r(p_reach) + w_a·r(p_amp) + w_n·r(p_net)) / (w_r + w_a + w_n);
      q      = mid-rank percentile of c among them;  percentile = 100·q;
      score  = 1 + 99·r(q) / D,  D = max(score_decades, log10(2n)).
    With D = 4 (raw): median 8.45, top 10 % 25.75, top 1 % 50.5, top 0.1 % 75.25, top 0.01 % 100. Users who received
    nothing score 1. `actor_weight` (0..1, default 1) scales each engagement of that actor in all
    three parts (0 removes it; in PageRank the actor passes on only that share of its influence).
    """
    with _collector_paused():
        window = _measure(events, config, actor_weight)
        raw, parts, q = _scored(window, config, None)
        ordered = np.sort(raw)
        rank = len(raw) - np.searchsorted(ordered, raw, side="right") + 1  # 1 + users strictly better
        return _results(window, raw, parts, q, rank)


def _results(window: _Window, raw: np.ndarray, parts: tuple[np.ndarray, ...], q: np.ndarray,
             rank: np.ndarray) -> InfluenceTable:
    return InfluenceTable(list(window.users), raw, window.reach, window.amplification, window.network, *parts,
                          rank, q, list(window.platforms), np.asarray(window.active, dtype=bool))


class InfluenceTable(Mapping[str, UserInfluence]):
    """Every user's influence in one window: a mapping user -> UserInfluence kept as columns.

    A window has tens of thousands of users, and its figures travel between the pipeline's steps
    and wait in their state until the window is scored. As columns they pickle as a few arrays and
    hold a few bytes per user; as objects, unpickling them was a seventh of a whole replay's time.
    An object is built when a user is looked up; `rows()` builds them all, for the one step that
    writes every user."""

    __slots__ = ("_columns", "_index")

    def __init__(self, users: list[str], raw: np.ndarray, reach: np.ndarray, amplification: np.ndarray,
                 network: np.ndarray, part_reach: np.ndarray, part_amplification: np.ndarray,
                 part_network: np.ndarray, rank: np.ndarray, q: np.ndarray, platforms: list[str],
                 active: np.ndarray) -> None:
        self._columns = (users, raw, reach, amplification, network, part_reach, part_amplification, part_network,
                         rank, q, platforms, active)
        self._index: dict[str, int] | None = None

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return InfluenceTable, self._columns

    def __getitem__(self, user: str) -> UserInfluence:
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self._columns[0])}
        return self._row(*(column[self._index[user]] for column in self._columns))

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns[0])

    def __len__(self) -> int:
        return len(self._columns[0])

    def rows(self) -> dict[str, UserInfluence]:
        """Every user's object, built afresh (the table keeps only its columns)."""
        return self._rows_at(np.arange(len(self)))

    def receiving_rows(self) -> dict[str, UserInfluence]:
        """The objects of the users who received engagement (reach > 0), the only ones a window writes:
        most of a window's users only act, and building their objects was most of the cost of `rows`."""
        return self._rows_at(np.flatnonzero(np.asarray(self._columns[2]) > 0))

    def _rows_at(self, at: np.ndarray) -> dict[str, UserInfluence]:
        users, raw, reach, amp, net, p_reach, p_amp, p_net, rank, q, platforms, active = self._columns
        picked = at.tolist()
        return {user: self._row(user, *values) for user, *values in zip(
            [users[i] for i in picked], raw[at].tolist(), reach[at].tolist(), amp[at].tolist(), net[at].tolist(),
            p_reach[at].tolist(), p_amp[at].tolist(), p_net[at].tolist(), rank[at].tolist(), q[at].tolist(),
            [platforms[i] for i in picked], active[at].tolist(), strict=True)}

    @staticmethod
    def _row(user: str, raw: float, reach: int, amplification: float, network: float, part_reach: float,
             part_amplification: float, part_network: float, rank: int, q: float, platform: str,
             active: bool) -> UserInfluence:
        parts = Parts(float(part_reach), float(part_amplification), float(part_network)) if active else _NO_PARTS
        return UserInfluence(score=rounded_score(float(raw)), raw=float(raw), reach=int(reach),
                             amplification=float(amplification), network=float(network), parts=parts,
                             rank=int(rank), percentile=100.0 * float(q), platform=platform)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while a window's results are built. They are hundreds
    of thousands of small acyclic objects (reference counting frees them), but each batch of them
    would trigger collections that traverse every live object, the window's million events included:
    a third of a 1M-edge window's time in bench/graph.py. The previous state is restored."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def clean_influence(events: Iterable[Event] | EventColumns, config: InfluenceConfig, raw: Mapping[str, UserInfluence],
                    actor_weight: Mapping[str, float]) -> dict[str, float]:
    """Unrounded clean score (1..100) of every user in the events, flagged actors' engagement
    down-weighted by `actor_weight`, read on the RAW window's scale (`raw` = window_influence of the
    same events without actor weights), so an account inflated by flagged engagers falls against
    everyone else's unchanged scores instead of being re-ranked among a cleaned window alone.

    Reach and amplification are local: the clean values are placed among the raw active users' raw
    values. PageRank values only compare within one graph (removing engagement moves every value a
    little), so the clean network value is placed among the clean network values of the same raw
    active users. q is then read among the raw active users' combined values.
    """
    with _collector_paused():
        window = _measure(events, config, actor_weight)
    index = dict(zip(window.users, range(len(window.users)), strict=True))
    active = [(user, info) for user, info in raw.items() if info.reach > 0]
    combined = _combined(*(np.array([getattr(info.parts, name) for _, info in active]) for name in Parts._fields),
                         len(active), config)
    scale = _Scale(np.sort(np.array([float(info.reach) for _, info in active])),
                   np.sort(np.array([info.amplification for _, info in active])),
                   np.sort(window.network[[index[user] for user, _ in active if user in index]]), np.sort(combined))
    scores, _, _ = _scored(window, config, scale)
    return dict(zip(window.users, scores.tolist(), strict=True))


# ------------------------------------------------------------------------------------------ long term

def long_term_score(history: Iterable[tuple[int, float]], now_end_s: int, period_s: int, half_life_s: int,
                    history_len: int) -> float:
    """Time-decayed mean of the last `history_len` window scores, absent windows counting 0:
    L = Σ_e s_e·2^(-(now - e)/h) / Σ_{k<history_len} 2^(-k·period/h) over the entries with
    0 <= now - e < history_len·period (the last entry of a window end wins; later ends are ignored,
    so a recomputed older window sees the history as of its time). A reputation so builds over a
    half-life and survives a quiet hour: with 15-min windows and h = 24 h, four missing windows cost ~6 %.
    A pure function of the history: whatever order the pipeline wrote the entries in, the same
    entries give the same score, bit for bit (sums in a fixed order, math.fsum)."""
    if period_s <= 0 or half_life_s <= 0 or history_len < 1:
        raise ValueError(f"need period_s > 0, half_life_s > 0, history_len >= 1: {period_s}, {half_life_s}, "
                         f"{history_len}")
    horizon = history_len * period_s
    by_end = {end: score for end, score in history if 0 <= now_end_s - end < horizon}
    total = math.fsum(by_end[end] * 2.0 ** (-(now_end_s - end) / half_life_s) for end in sorted(by_end))
    return total / full_weight(period_s, half_life_s, history_len)


@functools.lru_cache(maxsize=16)
def full_weight(period_s: int, half_life_s: int, history_len: int) -> float:
    """The weight of a history with every window present (the long-term score's denominator)."""
    return math.fsum(2.0 ** (-k * period_s / half_life_s) for k in range(history_len))


__all__ = ["AMPLIFYING_KINDS", "DEFAULT_KIND_WEIGHTS", "InfluenceConfig", "Parts", "UserInfluence",
           "clean_influence", "full_weight", "long_term_score", "pagerank", "rounded_score", "window_influence"]
