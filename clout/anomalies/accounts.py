"""Long-horizon per-account evidence, in streaming form: one bounded state per account shard.

Why: behaviour that is unremarkable in any hour is unmistakable over days (steady amplification of
the same few accounts, activity with no human rhythm, replies sprayed at strangers who never answer,
the same co-amplifiers again and again). So each account keeps a fixed-size record, updated one
15-minute slice at a time from `EventColumns`, and `clout.anomalies.verdicts` reads it: no pass over
raw history. Keys are crc32 of the names and rows are added in name order, so the same slices give
the same state bytes on any process, whatever the batch's codes; shards are
clout.model.sharding.shard_of.

Which rows a shard keeps: the actions *sent* by its accounts (actor-owned) and the actions they
*received* (target-owned). Two things read every row of the slice, so the caller passes the whole
slice to every shard: a count-min of every target's received events (replicated, the same in every
shard: it tells a celebrity from an ordinary account when the shard updates its actors' repeated
targets) and the fast co-amplification pairs that involve one of the shard's accounts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from clout.anomalies import coordination
from clout.anomalies.coordination import PairTable
from clout.model.columns import EventColumns
from clout.model.kinds import KIND_INDEX, N_KINDS
from clout.model.sharding import mix64

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TOP_K = 8  # space-saving entries per account: its most engaged targets
MINHASH_K = 16  # MinHash values per account over its repeated targets
MINHASH_SEEDS = np.array([0x9E3779B97F4A7C15 * (i + 1) % (1 << 64) for i in range(MINHASH_K)], dtype=np.uint64)
BLOOM_WORDS = 8  # 512-bit Bloom filter of the targets an account engaged (2 bits a target)
DAY_BITS = 32  # active-day bitmasks cover the last 32 days
POPULAR_WIDTH, POPULAR_DEPTH = 1 << 16, 4  # count-min of every target's received events
CELEBRITY = 200  # a target with this many received events so far is not evidence of a network
AMPLIFY = coordination.AMPLIFY
ADDRESS = np.array([KIND_INDEX["mention"], KIND_INDEX["reply"], KIND_INDEX["message"]])
FORMAT = 2  # to_bytes layout version


def crc_of_codes(names: Sequence[str], codes: np.ndarray) -> np.ndarray:
    """crc32 of each code's name (the same in every process), hashing each distinct name once."""
    unique, inverse = np.unique(codes, return_inverse=True)
    per = np.fromiter((zlib.crc32(names[int(c)].encode()) for c in unique), dtype=np.uint32, count=len(unique))
    return per[inverse.ravel()]


def name_key(name: str) -> int:
    """A target's 32-bit key in the top-K lists, sketches and Context."""
    return zlib.crc32(name.encode()) ^ 0x5BD1E995


def key_of_crc(crc: np.ndarray) -> np.ndarray:
    return crc ^ np.uint32(0x5BD1E995)


def popcount32(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(x, dtype=np.uint32)).astype(np.int64)


_COLUMNS: dict[str, tuple[type, tuple[int, ...], int]] = {  # name: (dtype, trailing shape, fill)
    "first_ms": (np.int64, (), np.iinfo(np.int64).max),
    "last_ms": (np.int64, (), -1),  # newest event as actor or target
    "last_sent_ms": (np.int64, (), -1),  # newest action: the accounts a window's verdicts judge
    "sent": (np.int32, (), 0),
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
    "bloom": (np.uint64, (BLOOM_WORDS,), 0),  # targets engaged so far: tells a repeat from a first
    "repeat": (np.int32, (), 0),  # actions on a target engaged before
    "minhash": (np.uint32, (MINHASH_K,), 0xFFFFFFFF),  # MinHash of repeated, non-celebrity targets
    "fast": (np.int32, (), 0),  # accounts it co-amplified within a minute on >= 2 occasions
}


@dataclass
class AccountState:
    """Per-account columns of one account shard (row i is the account `names[i]`), the replicated
    target-popularity count-min and the shard's fast co-amplification pairs."""

    shard: int
    shards: int
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    cols: dict[str, np.ndarray] = field(default_factory=dict)
    popular: np.ndarray = field(default_factory=lambda: np.zeros((POPULAR_DEPTH, POPULAR_WIDTH), np.uint32))
    pairs: PairTable = field(default_factory=PairTable)

    BYTES_PER_ACCOUNT = sum(np.dtype(t).itemsize * int(np.prod(s)) for t, s, _ in _COLUMNS.values())

    @classmethod
    def empty(cls, shard: int = 0, shards: int = 1) -> AccountState:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not one of {shards} shards")
        cols = {k: np.full((0, *s), f, dtype=t) for k, (t, s, f) in _COLUMNS.items()}
        return cls(shard, shards, [], {}, cols)

    def __len__(self) -> int:
        return len(self.names)

    def view(self, name: str) -> np.ndarray:
        """Column `name` over the live rows (the arrays are over-allocated as the shard grows)."""
        return self.cols[name][: len(self.names)]

    def memory_bytes(self) -> int:
        columns = sum(a.nbytes for a in self.cols.values())
        return columns + sum(len(n) + 90 for n in self.names) + self.popular.nbytes + self.pairs.memory_bytes()

    def rows_of(self, names: Sequence[str], codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Row of each code's account, adding unseen accounts in name order (so rows do not depend on
        the batch's codes); first and last seen are updated from `ts`."""
        unique, inverse = np.unique(codes, return_inverse=True)
        index = self.index
        wanted = [names[c] for c in unique.tolist()]
        found = [index.get(name, -1) for name in wanted]
        new = sorted(name for name, r in zip(wanted, found, strict=True) if r < 0)
        if new:
            start = len(self.names)
            self.names.extend(new)
            index.update((name, start + i) for i, name in enumerate(new))
            self._grow(len(self.names))
            found = [r if r >= 0 else index[name] for name, r in zip(wanted, found, strict=True)]
        rows = np.asarray(found, dtype=np.int64)[inverse.ravel()]
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
        keep = np.flatnonzero(self.view("last_ms") >= before_ms)
        self.cols = {k: v[keep] for k, v in self.cols.items()}
        self.names = [self.names[i] for i in keep.tolist()]
        self.index = {name: i for i, name in enumerate(self.names)}
        return n - len(keep)

    def popularity(self, keys: np.ndarray) -> np.ndarray:
        """Count-min estimate of the events each target key has received (never below the truth)."""
        cells = _popular_cells(keys)
        return self.popular[np.arange(POPULAR_DEPTH)[:, None], cells].min(axis=0)

    def to_bytes(self) -> bytes:
        """Columns, names, sketches and pair table in a fixed layout: equal states, equal bytes."""
        n = len(self.names)
        pairs = sorted(self.pairs.table)
        arrays = {**{k: v[:n] for k, v in self.cols.items()}, "popular": self.popular,
                  "pair_sketch": self.pairs.sketch,
                  "pair_n": np.array([self.pairs.table[p] for p in pairs], dtype=np.int64)}
        strings = {"names": self.names, "pair_a": [p[0] for p in pairs], "pair_b": [p[1] for p in pairs]}
        meta = {"format": FORMAT, "shard": self.shard, "shards": self.shards, "capacity": self.pairs.capacity}
        return _pack(meta, arrays, strings)

    @classmethod
    def from_bytes(cls, blob: bytes) -> AccountState:
        meta, arrays, strings = _unpack(blob)
        if meta.get("format") != FORMAT:
            raise ValueError(f"account state format {meta.get('format')!r}, expected {FORMAT}: rebuild it")
        cols = {k: arrays[k] for k in _COLUMNS}
        sketch = arrays["pair_sketch"]
        table = dict(zip(zip(strings["pair_a"], strings["pair_b"], strict=True), arrays["pair_n"].tolist(),
                         strict=True))
        pairs = PairTable(sketch.shape[1], sketch.shape[0], int(meta["capacity"]), sketch, table)
        names = strings["names"]
        return cls(int(meta["shard"]), int(meta["shards"]), names, {a: i for i, a in enumerate(names)}, cols,
                   arrays["popular"], pairs)


def _pack(meta: dict, arrays: dict[str, np.ndarray], strings: dict[str, list[str]]) -> bytes:
    """Header (JSON: meta, each array's dtype and shape, each string list's byte lengths) + raw bytes."""
    encoded = {k: [s.encode() for s in v] for k, v in strings.items()}
    header = {"meta": meta,
              "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()],
              "strings": [[k, [len(b) for b in v]] for k, v in encoded.items()]}
    head = orjson.dumps(header)
    body = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
    text = b"".join(b for v in encoded.values() for b in v)
    return len(head).to_bytes(8, "little") + head + body + text


def _unpack(blob: bytes) -> tuple[dict, dict[str, np.ndarray], dict[str, list[str]]]:
    size = int.from_bytes(blob[:8], "little")
    header = orjson.loads(blob[8:8 + size])
    at, arrays = 8 + size, {}
    for name, dtype, shape in header["arrays"]:
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        arrays[name] = np.frombuffer(blob, dtype=dt, count=count, offset=at).reshape(shape).copy()
        at += count * dt.itemsize
    strings = {}
    for name, lengths in header["strings"]:
        out = []
        for n in lengths:
            out.append(blob[at:at + n].decode())
            at += n
        strings[name] = out
    return header["meta"], arrays, strings


def _popular_cells(keys: np.ndarray) -> np.ndarray:
    mixed = mix64(keys.astype(np.uint64))
    return np.stack([((mixed >> np.uint64(16 * i)) % np.uint64(POPULAR_WIDTH)).astype(np.int64)
                     for i in range(POPULAR_DEPTH)])


# --------------------------------------------------------------------------- update


def update(state: AccountState, events: EventColumns) -> AccountState:
    """Fold one slice into the shard: the whole slice's targets into the popularity count-min, the
    actions sent by the shard's accounts, the actions they received, and the fast co-amplification
    pairs that involve them. Pass every event of the slice (see the module docstring); slices in
    time order."""
    if not len(events):
        return state
    both = crc_of_codes(events.names, np.concatenate([events.actor, events.target]))
    actor_crc, target_crc = both[:len(events)], both[len(events):]
    target_keys = key_of_crc(target_crc)
    flat = (_popular_cells(target_keys) + np.arange(POPULAR_DEPTH)[:, None] * POPULAR_WIDTH).ravel()
    np.add.at(state.popular.reshape(-1), flat, np.uint32(1))
    mine_sent = (actor_crc % state.shards) == state.shard
    mine_received = (target_crc % state.shards) == state.shard
    if mine_sent.any():
        _sent(state, events.take(np.flatnonzero(mine_sent)), target_keys[mine_sent])
    if mine_received.any():
        _received(state, events.take(np.flatnonzero(mine_received)), key_of_crc(actor_crc[mine_received]))
    _fast_pairs(state, events, mine_sent)
    return state


def _sent(state: AccountState, s: EventColumns, keys: np.ndarray) -> None:
    c = state.cols
    rows = state.rows_of(s.names, s.actor, s.ts)
    np.add.at(c["sent"], rows, 1)
    np.maximum.at(c["last_sent_ms"], rows, s.ts)
    _count_at(c["kinds"], rows, s.kind.astype(np.int64))
    hour = (s.ts // HOUR_MS) % 24
    day = s.ts // DAY_MS
    _count_at(c["hod"], rows, hour)
    _count_at(c["dow"], rows, day % 7)
    for d in np.unique(day).tolist():
        who = np.unique(rows[day == d])
        c["days"][who], c["last_day"][who] = _mark_day(c["days"][who], c["last_day"][who], d)
    _top_targets(state, rows, keys, day)
    _repeats(state, rows, keys)


def _count_at(table: np.ndarray, rows: np.ndarray, column: np.ndarray) -> None:
    """table[rows, column] += 1 for every pair, repeats included (np.add.at on the flat view: faster)."""
    np.add.at(table.reshape(-1), rows * table.shape[1] + column, 1)


def minhash_values(keys: np.ndarray) -> np.ndarray:
    """MINHASH_K 32-bit hashes of each target key (rows: keys), the same on every process."""
    mixed = mix64(keys.astype(np.uint64)[:, None] ^ MINHASH_SEEDS[None, :])
    return (mixed >> np.uint64(32)).astype(np.uint32)


def _bloom_bits(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(word, bit) of each key's two Bloom positions."""
    h = mix64(keys.astype(np.uint64) ^ np.uint64(0xB10011))
    a = (h & np.uint64(511)).astype(np.int64)
    b = ((h >> np.uint64(9)) & np.uint64(511)).astype(np.int64)
    one = np.uint64(1)
    return a // 64, one << (a % 64).astype(np.uint64), b // 64, one << (b % 64).astype(np.uint64)


def _seen_before(bloom: np.ndarray, row: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Whether each (row, key) is in the row's Bloom filter (false positives possible, no false negatives)."""
    wa, ba, wb, bb = _bloom_bits(key)
    return ((bloom[row, wa] & ba) != 0) & ((bloom[row, wb] & bb) != 0)


def _repeats(state: AccountState, rows: np.ndarray, keys: np.ndarray) -> None:
    """Count actions on targets the account engaged before (its Bloom filter says which), and put the
    repeated targets that are not celebrities into its MinHash: what a network of accounts shares."""
    c = state.cols
    pairs, counts = _unique_rows(rows, keys.astype(np.int64))
    row, key = pairs[:, 0], pairs[:, 1].astype(np.uint32)
    bloom = c["bloom"]
    before = _seen_before(bloom, row, key)
    wa, ba, wb, bb = _bloom_bits(key)
    np.add.at(c["repeat"], row, counts - 1 + before)
    np.bitwise_or.at(bloom, (row, wa), ba)
    np.bitwise_or.at(bloom, (row, wb), bb)
    repeated = (before | (counts >= 2)) & (state.popularity(key) < CELEBRITY)
    if repeated.any():
        np.minimum.at(c["minhash"], row[repeated], minhash_values(key[repeated]))


def distinct_targets(state: AccountState, rows: np.ndarray) -> np.ndarray:
    """Distinct targets engaged, estimated from the Bloom filter's fill (-m/k ln(1 - fill))."""
    bits = np.bitwise_count(state.cols["bloom"][rows]).sum(axis=1).astype(np.float64)
    m = 64.0 * BLOOM_WORDS
    return -m / 2 * np.log(np.maximum(1.0 - bits / m, 1.0 / m))


def _unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the stacked int64 columns, sorted by the first column, then the next (as
    np.unique(axis=0), without its structured-array detour), and how often each occurs."""
    order = np.lexsort(columns[::-1])
    stacked = np.stack([c[order] for c in columns], axis=1)
    starts = np.flatnonzero(np.r_[True, (stacked[1:] != stacked[:-1]).any(axis=1)]) if len(stacked) else \
        np.zeros(0, np.int64)
    return stacked[starts], np.diff(np.r_[starts, len(stacked)])


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
    """Filtered space-saving top-K of each account's targets (Metwally et al.; the filter as in Homem
    and Carvalho): a target replaces the smallest entry and inherits its count as `top_err`, so a
    target engaged more often than 1/K of the time is never lost and count - err is a guaranteed
    lower bound; but once the K entries are taken, only a target the account engaged before (its
    Bloom filter) or engages twice in the slice may replace one, so one-off actions (camouflage)
    do not churn the entries. Each entry keeps the days it was engaged. Call before `_repeats`."""
    c = state.cols
    pairs, counts = _unique_rows(rows, keys.astype(np.int64), day)
    top_key, top_count, top_days, top_last = c["top_key"], c["top_count"], c["top_days"], c["top_last"]
    row_p, key_p, day_p = pairs[:, 0], pairs[:, 1].astype(np.uint32), pairs[:, 2]
    admitted = _seen_before(c["bloom"], row_p, key_p) | (counts >= 2)
    at = np.arange(len(row_p))
    rank = at - np.maximum.accumulate(np.where(np.r_[True, row_p[1:] != row_p[:-1]], at, 0))
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        # round r: each account's r-th (target, day) of the slice, so accounts go in parallel and each
        # account's own pairs in order, exactly as one pair at a time would
        sel = np.flatnonzero(rank == r)
        hit = (top_key[row_p[sel]] == key_p[sel, None]) & (top_count[row_p[sel]] > 0)
        found = hit.any(axis=1)
        free = top_count[row_p[sel]].min(axis=1) == 0
        keep = found | free | admitted[sel]
        sel, hit, found = sel[keep], hit[keep], found[keep]
        row, key, day, n = row_p[sel], key_p[sel], day_p[sel], counts[sel].astype(np.uint32)
        j = np.where(found, hit.argmax(axis=1), top_count[row].argmin(axis=1))
        new_row, new_j = row[~found], j[~found]
        top_key[new_row, new_j] = key[~found]
        top_days[new_row, new_j], top_last[new_row, new_j] = 0, -1
        c["top_err"][new_row, new_j] = top_count[new_row, new_j]  # inherits the evicted count, as space-saving
        top_count[row, j] += n
        top_days[row, j], top_last[row, j] = _mark_day(top_days[row, j], top_last[row, j], day)


def _received(state: AccountState, s: EventColumns, from_keys: np.ndarray) -> None:
    c = state.cols
    rows = state.rows_of(s.names, s.target, s.ts)
    np.add.at(c["received"], rows, 1)
    back = ((c["top_key"][rows] == from_keys[:, None]) & (c["top_count"][rows] > 0)).any(axis=1)
    np.add.at(c["recip"], rows[back], 1)


def _fast_pairs(state: AccountState, events: EventColumns, mine: np.ndarray) -> None:
    """Count the slice's fast co-amplification pairs that involve one of the shard's accounts; an
    account's `fast` grows by one when a pair it is in is seen a second time."""
    if not mine.any():
        return
    pairs = coordination.co_actions(events, mine)
    own = state.index
    if state.shards > 1:
        pairs = [p for p in pairs if p[0] in own or p[1] in own]
    for a, b in state.pairs.add(pairs):
        for who in (a, b):
            row = own.get(who)
            if row is not None:
                state.cols["fast"][row] += 1
