"""Long-horizon per-account evidence, in streaming form: one bounded state per account shard.

Why: behaviour that is unremarkable in any hour is unmistakable over days (steady amplification of
the same few accounts, activity with no human rhythm, replies sprayed at strangers who never answer).
So each account keeps a fixed-size record, updated one 15-minute slice at a time from numpy columns,
and `verdicts` reads it: no pass over raw history, the same input in the same slice order gives the
same state on any process (keys are crc32, shards are clout.model.sharding.shard_of).

The pipeline calls, per account shard (Beam state keyed by shard):

    state = AccountState.empty(shard, shards)          # or AccountState.from_bytes(blob)
    update(state, columns)                             # every slice, in time order
    verdicts(state, now_ms, context)                   # when a window is due; context from coordination.py
    state.forget_idle(before_ms); state.to_bytes()

Memory per account: about 200 bytes of numpy columns (see `AccountState.BYTES_PER_ACCOUNT`) plus
its name in the index; `forget_idle` keeps it to the accounts seen within the horizon.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clout.anomalies.columns import SliceColumns, shards_of_codes
from clout.model.kinds import KIND_INDEX, N_KINDS
from clout.model.sharding import mix64

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TOP_K = 8  # space-saving entries per account: its most engaged targets
MINHASH_K = 16  # MinHash values per account over its targets
MINHASH_SEEDS = np.array([0x9E3779B97F4A7C15 * (i + 1) % (1 << 64) for i in range(MINHASH_K)], dtype=np.uint64)
DAY_BITS = 32  # active-day bitmasks cover the last 32 days
AMPLIFY = np.array([KIND_INDEX["repost"], KIND_INDEX["quote"], KIND_INDEX["like"]])
ADDRESS = np.array([KIND_INDEX["mention"], KIND_INDEX["reply"], KIND_INDEX["message"]])


def name_key(name: str) -> int:
    """A target's 32-bit key in the top-K lists; crc32 is the same in every process."""
    return zlib.crc32(name.encode()) ^ 0x5BD1E995


def keys_of_codes(names: Sequence[str], codes: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(codes, return_inverse=True)
    per = np.fromiter((name_key(names[int(c)]) for c in unique), dtype=np.uint32, count=len(unique))
    return per[inverse]


def popcount32(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(x, dtype=np.uint32)).astype(np.int64)


_COLUMNS: dict[str, tuple[type, tuple[int, ...], int]] = {  # name: (dtype, trailing shape, fill)
    "first_ms": (np.int64, (), np.iinfo(np.int64).max),
    "last_ms": (np.int64, (), -1),  # newest event as actor or target
    "kinds": (np.int32, (N_KINDS,), 0),  # actions sent, by kind
    "received": (np.int32, (), 0),
    "recip": (np.int32, (), 0),  # received from one of the account's own top targets
    "hod": (np.uint16, (24,), 0),  # actions by hour of day (UTC)
    "dow": (np.uint16, (7,), 0),  # actions by day of week
    "days": (np.uint32, (), 0),  # bit i: active i days before last_day
    "last_day": (np.int32, (), -1),
    "top_key": (np.uint32, (TOP_K,), 0),
    "top_count": (np.uint32, (TOP_K,), 0),
    "top_err": (np.uint32, (TOP_K,), 0),  # space-saving's inherited count: count - err is a guaranteed lower bound
    "top_days": (np.uint32, (TOP_K,), 0),  # per entry: days bitmask, bit i = i days before top_last
    "top_last": (np.int32, (TOP_K,), -1),
    "minhash": (np.uint32, (MINHASH_K,), 0xFFFFFFFF),  # MinHash of every target engaged (co-target similarity)
}


@dataclass
class AccountState:
    """Per-account columns of one account shard; row i is the account `names[i]`."""

    shard: int
    shards: int
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    cols: dict[str, np.ndarray] = field(default_factory=dict)

    BYTES_PER_ACCOUNT = sum(np.dtype(t).itemsize * int(np.prod(s)) for t, s, _ in _COLUMNS.values())

    @classmethod
    def empty(cls, shard: int = 0, shards: int = 1) -> AccountState:
        cols = {k: np.full((0, *s), f, dtype=t) for k, (t, s, f) in _COLUMNS.items()}
        return cls(shard, shards, [], {}, cols)

    def __len__(self) -> int:
        return len(self.names)

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in self.cols.values()) + sum(len(n) + 90 for n in self.names)

    def rows_of(self, names: Sequence[str], codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Row of each code's account, adding unseen accounts (first seen = their earliest ts here)."""
        unique, inverse = np.unique(codes, return_inverse=True)
        index, start = self.index, len(self.names)
        per = np.empty(len(unique), dtype=np.int64)
        for i, c in enumerate(unique.tolist()):
            name = names[c]
            row = index.get(name)
            if row is None:
                row = index[name] = len(self.names)
                self.names.append(name)
            per[i] = row
        if len(self.names) > start:
            self._grow(len(self.names))
        rows = per[inverse]
        np.minimum.at(self.cols["first_ms"], rows, ts)
        np.maximum.at(self.cols["last_ms"], rows, ts)
        return rows

    def _grow(self, size: int) -> None:
        old = len(self.cols["first_ms"])
        if size <= old:
            return
        extra = max(size, int(old * 1.5) + 256) - old
        for k, (t, s, f) in _COLUMNS.items():
            self.cols[k] = np.concatenate([self.cols[k], np.full((extra, *s), f, dtype=t)])

    def forget_idle(self, before_ms: int) -> int:
        """Drop accounts not seen since `before_ms` (bounded memory); returns how many were dropped."""
        n = len(self.names)
        keep = np.flatnonzero(self.cols["last_ms"][:n] >= before_ms)
        self.cols = {k: v[keep] for k, v in self.cols.items()}
        self.names = [self.names[i] for i in keep.tolist()]
        self.index = {name: i for i, name in enumerate(self.names)}
        return n - len(keep)

    def to_bytes(self) -> bytes:
        """numpy .npz of the columns and names: restores bit for bit on any process."""
        n = len(self.names)
        buffer = io.BytesIO()
        arrays = {k: v[:n] for k, v in self.cols.items()}
        np.savez(buffer, shard=np.array([self.shard, self.shards]), names=np.array(self.names, dtype=np.str_),
                 **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> AccountState:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            shard, shards = (int(x) for x in data["shard"])
            names = [str(x) for x in data["names"]]
            cols = {k: data[k].copy() for k in _COLUMNS}
        return cls(shard, shards, names, {name: i for i, name in enumerate(names)}, cols)


# --------------------------------------------------------------------------- update


def update(state: AccountState, columns: SliceColumns) -> AccountState:
    """Fold one slice into the shard's accounts: the slice's actions by accounts of this shard (sent
    side) and the actions they received (received side). Rows of other shards are ignored, so the
    whole slice or just this shard's rows may be passed. Slices in time order."""
    if not len(columns):
        return state
    names = columns.names
    mine_sent = np.flatnonzero(shards_of_codes(names, columns.actor, state.shards) == state.shard)
    mine_received = np.flatnonzero(shards_of_codes(names, columns.target, state.shards) == state.shard)
    if len(mine_sent):
        _sent(state, columns.take(mine_sent))
    if len(mine_received):
        _received(state, columns.take(mine_received))
    return state


def _sent(state: AccountState, s: SliceColumns) -> None:
    c = state.cols
    rows = state.rows_of(s.names, s.actor, s.ts)
    np.add.at(c["kinds"], (rows, s.kind.astype(np.int64)), 1)
    hour = (s.ts // HOUR_MS) % 24
    day = s.ts // DAY_MS
    np.add.at(c["hod"], (rows, hour), 1)
    np.add.at(c["dow"], (rows, day % 7), 1)
    for d in np.unique(day).tolist():
        who = np.unique(rows[day == d])
        c["days"][who], c["last_day"][who] = _mark_day(c["days"][who], c["last_day"][who], d)
    keys = keys_of_codes(s.names, s.target)
    _top_targets(state, rows, keys, day)
    np.minimum.at(c["minhash"], rows, minhash_values(keys))


def minhash_values(keys: np.ndarray) -> np.ndarray:
    """MINHASH_K 32-bit hashes of each target key (rows: keys), the same on every process."""
    mixed = mix64(keys.astype(np.uint64)[:, None] ^ MINHASH_SEEDS[None, :])
    return (mixed >> np.uint64(32)).astype(np.uint32)


def distinct_estimate(signatures: np.ndarray) -> np.ndarray:
    """Distinct targets behind MinHash signatures: k / sum of the normalised minima, minus 1."""
    u = (signatures.astype(np.float64) + 1.0) / 4294967296.0
    return np.where(signatures[:, 0] == 0xFFFFFFFF, 0.0, MINHASH_K / np.maximum(u.sum(axis=1), 1e-12) - 1.0)


def _mark_day(bits: np.ndarray, last: np.ndarray, day: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligned day bitmasks: bit 0 is the last active day; a newer day shifts the mask."""
    shift = day - last.astype(np.int64)
    newer = shift > 0
    out = bits.astype(np.uint64)
    out[newer] = np.where(shift[newer] >= DAY_BITS, 0, out[newer] << np.minimum(shift[newer], DAY_BITS).astype(
        np.uint64))
    older = (shift < 0) & (shift > -DAY_BITS)
    out[older] |= np.uint64(1) << (-shift[older]).astype(np.uint64)
    out[newer | (shift == 0) | (last < 0)] |= np.uint64(1)
    out &= np.uint64(0xFFFFFFFF)
    return out.astype(np.uint32), np.maximum(last, day).astype(np.int32)


def _top_targets(state: AccountState, rows: np.ndarray, keys: np.ndarray, day: np.ndarray) -> None:
    """Space-saving top-K of each account's targets (Metwally et al.): a new target replaces the smallest
    entry and inherits its count as `top_err`, so a target engaged more often than 1/K of the time is
    never lost and count - err is a guaranteed lower bound; each entry keeps the days it was engaged."""
    c = state.cols
    combined = np.stack([rows, keys.astype(np.int64), day], axis=1)
    pairs, counts = np.unique(combined, axis=0, return_counts=True)
    top_key, top_count, top_days, top_last = c["top_key"], c["top_count"], c["top_days"], c["top_last"]
    row_p, key_p, day_p = pairs[:, 0], pairs[:, 1].astype(np.uint32), pairs[:, 2]
    at = np.arange(len(row_p))
    rank = at - np.maximum.accumulate(np.where(np.r_[True, row_p[1:] != row_p[:-1]], at, 0))
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        # round r: each account's r-th (target, day) of the slice, so accounts go in parallel and each
        # account's own pairs in order, exactly as one pair at a time would
        sel = np.flatnonzero(rank == r)
        row, key, day, n = row_p[sel], key_p[sel], day_p[sel], counts[sel].astype(np.uint32)
        hit = (top_key[row] == key[:, None]) & (top_count[row] > 0)
        found = hit.any(axis=1)
        j = np.where(found, hit.argmax(axis=1), top_count[row].argmin(axis=1))
        new_row, new_j = row[~found], j[~found]
        top_key[new_row, new_j] = key[~found]
        top_days[new_row, new_j], top_last[new_row, new_j] = 0, -1
        c["top_err"][new_row, new_j] = top_count[new_row, new_j]  # inherits the evicted count, as space-saving
        top_count[row, j] += n
        top_days[row, j], top_last[row, j] = _mark_day(top_days[row, j], top_last[row, j], day)


def _received(state: AccountState, s: SliceColumns) -> None:
    c = state.cols
    rows = state.rows_of(s.names, s.target, s.ts)
    np.add.at(c["received"], rows, 1)
    from_key = keys_of_codes(s.names, s.actor)
    back = ((c["top_key"][rows] == from_key[:, None]) & (c["top_count"][rows] > 0)).any(axis=1)
    np.add.at(c["recip"], rows[back], 1)


# --------------------------------------------------------------------------- features and verdicts


@dataclass(frozen=True)
class VerdictConfig:
    """Ramps (human value -> bot value) of the evidence, and the flag threshold. Chosen on the
    development half of `clout eval` only (docs/anomalies.md has the figures)."""

    threshold: float = 0.05  # `clout eval` picks it on development: lowest with <= 0.4 % FP there
    min_actions: int = 20  # below this an account gets no verdict: no evidence is not suspicion
    amplify_share: tuple[float, float] = (0.7, 0.9)
    active_days: tuple[float, float] = (2.0, 4.0)
    steady_actions: tuple[float, float] = (25.0, 60.0)
    concentration: tuple[float, float] = (0.3, 0.6)  # share of actions to the top-8 targets (guaranteed counts)
    rhythm_entropy: tuple[float, float] = (0.86, 0.95)  # hour-of-day entropy / log 24
    hours_active: tuple[float, float] = (18.0, 22.0)
    spray_targets_share: tuple[float, float] = (0.45, 0.25)  # top-8 share: low = many distinct targets
    reciprocity: tuple[float, float] = (0.1, 0.02)
    fresh_days: tuple[float, float] = (3.0, 1.5)  # in-stream age, for accounts seen after the stream began
    fresh_rate: tuple[float, float] = (15.0, 40.0)  # actions per day since first seen
    campaign_engagers: tuple[float, float] = (6.0, 15.0)  # accounts persistently engaging the same target
    persistence_days: tuple[float, float] = (2.0, 3.0)  # days the account engaged the campaign target
    fast_partners: tuple[float, float] = (1.0, 3.0)  # accounts it repeatedly amplified within seconds of
    co_partners: tuple[float, float] = (2.0, 5.0)  # accounts sharing >= 2 repeated targets with it
    similar_partners: tuple[float, float] = (2.0, 5.0)  # accounts whose targets' MinHash Jaccard is >= 0.5
    campaign_share: tuple[float, float] = (0.02, 0.05)  # a target's persistent engagers per event it received
    stream_start_ms: int = -1  # fresh-account evidence only for accounts first seen a day after this


@dataclass(frozen=True)
class Verdict:
    account: str
    score: float
    flagged: bool
    reasons: tuple[str, ...]


@dataclass
class Context:
    """Cross-shard evidence for the verdicts (coordination.py computes it): per account, partners in
    repeated fast co-amplification and in shared repeated targets; per target key, how many accounts
    engage it persistently."""

    fast_partners: dict[str, int] = field(default_factory=dict)
    co_partners: dict[str, int] = field(default_factory=dict)
    similar: dict[str, int] = field(default_factory=dict)  # accounts with MinHash target similarity >= 0.5
    campaign: dict[int, int] = field(default_factory=dict)
    campaign_share: dict[int, float] = field(default_factory=dict)  # persistent engagers / events received


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 at the human value `lo`, 1 at the bot value `hi` (either order), linear between."""
    return np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _entropy(hist: np.ndarray) -> np.ndarray:
    total = hist.sum(axis=1, keepdims=True).astype(np.float64)
    p = np.divide(hist, total, out=np.zeros(hist.shape), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(hist.shape[1])


def features(state: AccountState, now_ms: int) -> dict[str, np.ndarray]:
    """Every account's long-horizon numbers, as arrays over the state's rows."""
    n_rows = len(state.names)
    c = {k: v[:n_rows] for k, v in state.cols.items()}
    sent = c["kinds"].sum(axis=1).astype(np.float64)
    safe = np.maximum(sent, 1.0)
    now_day = now_ms // DAY_MS
    shift = np.clip(now_day - c["last_day"].astype(np.int64), 0, DAY_BITS)
    recent_days = np.where(shift >= DAY_BITS, 0, (c["days"].astype(np.uint64) << shift.astype(np.uint64))
                           & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    guaranteed = (c["top_count"] - c["top_err"]).astype(np.int64)
    top = np.argmax(guaranteed, axis=1)
    rows = np.arange(n_rows)
    age_days = np.maximum(now_ms - c["first_ms"], HOUR_MS) / DAY_MS
    return {
        "sent": sent,
        "amplify_share": c["kinds"][:, AMPLIFY].sum(axis=1) / safe,
        "address_share": c["kinds"][:, ADDRESS].sum(axis=1) / safe,
        "active_days": popcount32(recent_days).astype(np.float64),
        "rhythm_entropy": _entropy(c["hod"]),
        "weekly_entropy": _entropy(c["dow"]),
        "hours_active": (c["hod"] > 0).sum(axis=1).astype(np.float64),
        "top_share": guaranteed.sum(axis=1) / safe,
        "top1_share": guaranteed.max(axis=1) / safe,
        "top1_key": c["top_key"][rows, top],
        "top_keys": c["top_key"],
        "top_counts": guaranteed,
        "top_days_all": popcount32(c["top_days"]).astype(np.float64),
        "top1_days": popcount32(c["top_days"][rows, top]).astype(np.float64),
        "reciprocity": c["recip"] / np.maximum(c["received"], 1),
        "received": c["received"].astype(np.float64),
        "age_days": age_days,
        "first_ms": c["first_ms"],
        "rate": sent / np.maximum(age_days, 0.25),
    }


def persistent_targets(state: AccountState, min_days: int = 2, min_count: int = 3) -> list[tuple[str, int]]:
    """(account, target key) for every top-K target the account engaged on >= min_days days and
    >= min_count times: the input of the campaign and co-targeting evidence (coordination.py)."""
    n = len(state.names)
    c = state.cols
    days = popcount32(c["top_days"][:n])
    keep = (days >= min_days) & (c["top_count"][:n] - c["top_err"][:n] >= min_count)
    rows, slots = np.nonzero(keep)
    keys = c["top_key"][:n][rows, slots]
    return [(state.names[r], int(k)) for r, k in zip(rows.tolist(), keys.tolist(), strict=True)]


def signatures(state: AccountState, min_actions: int = 10, min_distinct: float = 8.0
               ) -> tuple[list[str], np.ndarray]:
    """(accounts, MinHash signatures) of the accounts with enough actions and distinct targets to
    compare: the input of coordination.similar_partners."""
    n = len(state.names)
    sig = state.cols["minhash"][:n]
    sent = state.cols["kinds"][:n].sum(axis=1)
    keep = np.flatnonzero((sent >= min_actions) & (distinct_estimate(sig) >= min_distinct))
    return [state.names[i] for i in keep.tolist()], sig[keep]


def evidence(f: dict[str, np.ndarray], context: Context, names: Sequence[str], config: VerdictConfig
             ) -> dict[str, np.ndarray]:
    """Each behaviour's strength in [0, 1] per account: products of ramps, so every part must hold."""
    cf = config
    enough = (f["sent"] >= cf.min_actions).astype(np.float64)
    steady = ramp(f["active_days"], *cf.active_days) * ramp(f["sent"], *cf.steady_actions)
    fresh_ok = f["first_ms"] >= cf.stream_start_ms + DAY_MS if cf.stream_start_ms >= 0 else np.ones(len(names), bool)
    fast = np.fromiter((context.fast_partners.get(a, 0) for a in names), dtype=np.float64, count=len(names))
    co = np.fromiter((context.co_partners.get(a, 0) for a in names), dtype=np.float64, count=len(names))
    campaign_ev, _ = _campaign(f, context, cf)
    similar = np.fromiter((context.similar.get(a, 0) for a in names), dtype=np.float64, count=len(names))
    return {
        "steady amplification": enough * steady * ramp(f["amplify_share"], *cf.amplify_share)
        * ramp(f["top_share"], *cf.concentration),
        "no human rhythm": enough * steady * ramp(f["rhythm_entropy"], *cf.rhythm_entropy)
        * ramp(f["hours_active"], *cf.hours_active),
        "sprayed at strangers": enough * steady * ramp(f["address_share"], *cf.amplify_share)
        * ramp(f["top_share"], *cf.spray_targets_share) * ramp(f["reciprocity"], *cf.reciprocity),
        "fresh amplifier": enough * fresh_ok * ramp(f["age_days"], *cf.fresh_days) * ramp(f["rate"], *cf.fresh_rate)
        * ramp(f["amplify_share"], *cf.amplify_share) * ramp(f["top_share"], *cf.concentration),
        "campaign on one target": campaign_ev,
        "fast co-amplification": ramp(fast, *cf.fast_partners),
        "shared targets": ramp(co, *cf.co_partners),
        "similar targets": ramp(similar, *cf.similar_partners),
    }


def _campaign(f: dict[str, np.ndarray], context: Context, cf: VerdictConfig) -> tuple[np.ndarray, np.ndarray]:
    """(evidence, entry) per account: its strongest top-K target that many accounts engage
    persistently, weighted by how much of that target's traffic they are and by the account's own
    persistence (days) and commitment (share of its actions) to it."""
    keys, n = f["top_keys"], len(f["sent"])
    best, entry = np.zeros(n), np.zeros(n, dtype=np.int64)
    if not context.campaign or not n:
        return best, entry
    known = np.fromiter(context.campaign, dtype=np.uint32, count=len(context.campaign))
    rows, slots = np.nonzero(np.isin(keys, known) & (f["top_counts"] > 0))
    if not len(rows):
        return best, entry
    k = keys[rows, slots].tolist()
    count = np.array([context.campaign[x] for x in k], dtype=np.float64)
    share = np.array([context.campaign_share.get(x, 0.0) for x in k])
    days = f["top_days_all"][rows, slots]
    commit = f["top_counts"][rows, slots] / np.maximum(f["sent"][rows], 1)
    ev = (ramp(count, *cf.campaign_engagers) * ramp(share, *cf.campaign_share) * ramp(days, *cf.persistence_days)
          * ramp(commit, 0.05, 0.15))
    order = np.lexsort((ev, rows))  # per row, the strongest entry last
    last = np.r_[rows[order][1:] != rows[order][:-1], True]
    best[rows[order][last]] = ev[order][last]
    entry[rows[order][last]] = slots[order][last]
    return best, entry


def _reason(behaviour: str, i: int, f: dict[str, np.ndarray], context: Context, name: str) -> str:
    n, days = int(f["sent"][i]), int(f["active_days"][i])
    if behaviour == "steady amplification":
        return (f"steady amplification: {f['amplify_share'][i]:.0%} of {n} actions are reposts over {days} days, "
                f"{f['top_share'][i]:.0%} to its top 8 accounts")
    if behaviour == "no human rhythm":
        return (f"no human rhythm: active in {int(f['hours_active'][i])} of 24 hours of the day over {days} days "
                f"(entropy {f['rhythm_entropy'][i]:.2f})")
    if behaviour == "sprayed at strangers":
        return (f"sprayed at strangers: {f['address_share'][i]:.0%} of {n} actions are mentions/replies, only "
                f"{f['top_share'][i]:.0%} to its top 8 accounts, {f['reciprocity'][i]:.0%} answered")
    if behaviour == "fresh amplifier":
        return (f"fresh amplifier: {n} actions ({f['rate'][i]:.0f} a day) in the {f['age_days'][i]:.1f} days since "
                f"first seen, {f['amplify_share'][i]:.0%} reposts")
    if behaviour == "campaign on one target":
        _, entry = _campaign({k: v[i:i + 1] for k, v in f.items()}, context, VerdictConfig())
        key, days = int(f["top_keys"][i, entry[0]]), int(f["top_days_all"][i, entry[0]])
        return (f"campaign on one target: engaged one account on {days} days, one of "
                f"{context.campaign.get(key, 0)} accounts doing so ({context.campaign_share.get(key, 0):.2f} per "
                "event it received)")
    if behaviour == "fast co-amplification":
        return (f"fast co-amplification: repeatedly amplified the same accounts within seconds of "
                f"{context.fast_partners.get(name, 0)} other accounts")
    if behaviour == "similar targets":
        return (f"similar targets: engages nearly the same set of accounts (MinHash Jaccard >= 0.5) as "
                f"{context.similar.get(name, 0)} others")
    return f"shared targets: repeatedly engages the same accounts as {context.co_partners.get(name, 0)} others"


def scores(state: AccountState, now_ms: int, context: Context | None = None,
           config: VerdictConfig | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(score per row, evidence per behaviour, features): the score is the noisy-or of the behaviours."""
    config, context = config or VerdictConfig(), context or Context()
    f = features(state, now_ms)
    ev = evidence(f, context, state.names, config)
    score = 1.0 - np.prod([1.0 - e for e in ev.values()], axis=0) if state.names else np.zeros(0)
    return score, ev, f


def verdicts(state: AccountState, now_ms: int, context: Context | None = None, config: VerdictConfig | None = None,
             min_score: float = 0.0) -> list[Verdict]:
    """Accounts whose accumulated score reaches `min_score` (default: every account with evidence),
    flagged at the threshold, with a reason for each behaviour that contributes at least 0.1."""
    config, context = config or VerdictConfig(), context or Context()
    score, ev, f = scores(state, now_ms, context, config)
    out = []
    for i in np.flatnonzero((score > 0) & (score >= min_score)).tolist():
        name = state.names[i]
        reasons = tuple(_reason(b, i, f, context, name) for b, e in ev.items() if e[i] >= 0.1)
        out.append(Verdict(name, round(float(score[i]), 4), bool(score[i] >= config.threshold), reasons))
    return out


def received_by_key(state: AccountState, keys: set[int]) -> dict[int, int]:
    """Events received by the shard's accounts whose target key is in `keys` (campaign candidates)."""
    n = len(state.names)
    mine = keys_of_codes(state.names, np.arange(n)) if n else np.zeros(0, np.uint32)
    hit = np.flatnonzero(np.isin(mine, np.fromiter(keys, dtype=np.uint32, count=len(keys))))
    return {int(mine[i]): int(state.cols["received"][i]) for i in hit.tolist()}
