"""The four detectors over one window pane, split the way the pipeline spreads them.

Bot-likeness, bursts and microclusters judge one account each (an actor, a user's volumes, a
target), so `ShardDetectors` runs them for the accounts one shard owns, on a pane holding every
event those accounts are in (as actor or target) and the context before its end: what each shard
finds is exactly what the whole graph would find for its accounts. Lockstep needs the whole
window (pairs of actors), so its groups are found per window (`lockstep.find_groups`) and judged
against the groups of earlier windows where the window is scored.

Each detector reads only the pane, so a restart that replays the context flags exactly what the
uninterrupted run flagged. MIDAS-R is the one streaming detector: its sketches, sharded by target,
start afresh every `epoch` of event time (a day by default) and take in each slice once, in order,
as panes reach it; a restart rebuilds them from the start of the epoch, which the replayed context
covers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from clout.anomalies.bots import ActorHistory, detect_bots
from clout.anomalies.burst import Volume, detect_bursts
from clout.anomalies.config import Thresholds
from clout.anomalies.flag import DETECTORS, Flag, Group
from clout.anomalies.microclusters import EdgeScore, MidasR, account_key, microcluster_flags, shard_of
from clout.model.columns import EventColumns, empty
from clout.model.panes import Pane
from clout.model.windows import WindowPolicy, window_id

DAY_MS = 86_400_000
# Detectors whose flags name fake engagers: their engagement is left out of the clean score.
ENGAGER_DETECTORS = frozenset({"bot", "lockstep", "account"})


@dataclass(frozen=True)
class Findings:
    """A pane's flags and the lockstep groups they come from."""

    flags: list[Flag] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    def engagers_to_ignore(self) -> dict[str, float]:
        """actor -> weight 0 for the clean score: accounts flagged as fake engagers."""
        return {flag.user: 0.0 for flag in self.flags if flag.detector in ENGAGER_DETECTORS}


def context_needed_ms(thresholds: Thresholds, policy: WindowPolicy) -> int:
    """Event time before a window's end the detectors read: the burst baseline's windows, a day of
    actor history, and the MIDAS-R epoch the window starts in."""
    baseline = (thresholds.burst.baseline_windows + 1) * policy.size_ms
    return max(baseline, DAY_MS + policy.size_ms)


class EpochMidas:
    """MIDAS-R sharded by destination, restarted every epoch; keeps each slice's high-scoring edges."""

    def __init__(self, thresholds: Thresholds, shards: int, epoch_ms: int = DAY_MS, only: int | None = None) -> None:
        self.config = thresholds.midas
        self.shards = shards
        self.only = only  # feed just this shard's sketch (the pipeline's step for one account shard)
        self.epoch_ms = epoch_ms
        self.epoch: int | None = None
        self.fed_until: int | None = None  # end of the last slice taken in
        self.hot: dict[int, list[EdgeScore]] = {}  # slice start -> edges at or above the threshold
        self._sketches: list[MidasR] = []

    def feed_until(self, slices: Mapping[int, EventColumns], end_ms: int, slice_ms: int, first_start_ms: int) -> None:
        """Take in every slice not yet seen that ends by `end_ms`, oldest first (each slice's rows in
        their canonical order, see clout.model.panes)."""
        start = self.fed_until if self.fed_until is not None else first_start_ms - first_start_ms % self.epoch_ms
        for slice_start in range(start, end_ms, slice_ms):
            self._feed_slice(slice_start, slices.get(slice_start, empty()))
        self.fed_until = max(start, end_ms)
        for old in [s for s in self.hot if s < end_ms - self.epoch_ms - slice_ms]:
            del self.hot[old]

    def edges(self, start_ms: int, end_ms: int) -> list[EdgeScore]:
        return [e for s, edges in self.hot.items() if start_ms <= s < end_ms for e in edges]

    def memory_bytes(self) -> int:
        return sum(m.memory_bytes() for m in self._sketches)

    def _feed_slice(self, slice_start: int, events: EventColumns) -> None:
        epoch = slice_start // self.epoch_ms
        if epoch != self.epoch:
            self.epoch, self._sketches = epoch, [MidasR(self.config) for _ in range(self.shards)]
        hot: list[EdgeScore] = []
        if len(events):
            names = events.names
            keys = np.fromiter((account_key(n) for n in names), dtype=np.uint64, count=len(names))
            shard = np.fromiter((shard_of(n, self.shards) for n in names), dtype=np.int64, count=len(names))
            ticks_all = events.ts // (self.config.tick_s * 1000)
            for s in range(self.shards) if self.only is None else (self.only,):
                mine = np.flatnonzero(shard[events.target] == s)
                if not len(mine):
                    continue
                ticks = ticks_all[mine]
                scores = self._sketches[s].update_keys(keys[events.actor[mine]], keys[events.target[mine]], ticks)
                for i in np.flatnonzero(scores[:, 2] >= self.config.threshold).tolist():
                    row, (edge, source, destination) = mine[i], scores[i].tolist()
                    hot.append(EdgeScore(names[events.actor[row]], names[events.target[row]], int(ticks[i]),
                                         max(edge, source, destination), edge, source, destination))
        self.hot[slice_start] = hot


def in_order(flags: Sequence[Flag]) -> list[Flag]:
    """A window's flags in one order whatever step and shard found them: by detector, then user."""
    rank = {name: i for i, name in enumerate(DETECTORS)}
    return sorted(flags, key=lambda f: (rank[f.detector], f.user))


class ShardDetectors:
    """Bot-likeness, bursts and microclusters for the accounts of one shard (of `shards`).

    The pane must hold every event in which one of the shard's accounts is actor or target; other
    accounts in it are seen partly, so their verdicts are dropped. One instance per shard, fed panes
    in time order (MIDAS-R's sketch for the shard's targets is a stream)."""

    def __init__(self, thresholds: Thresholds, policy: WindowPolicy, shard: int, shards: int) -> None:
        self.thresholds = thresholds
        self.policy = policy
        self.shard = shard
        self.shards = shards
        self.midas = EpochMidas(thresholds, shards, only=shard)
        self._volume_cache: dict[tuple[int, tuple[int, ...]], tuple[Counter[str], Counter[str]]] = {}

    def find(self, pane: Pane) -> list[Flag]:
        window = window_id(pane.start_ms, pane.end_ms)
        flags = detect_bots(pane.events, window, self._actor_history(pane), pane.end_ms, self.thresholds.bot)
        flags += self._bursts(pane, window)
        self.midas.feed_until(pane.slices, pane.end_ms, self.policy.slice_ms, pane.start_ms)
        flags += microcluster_flags(self.midas.edges(pane.start_ms, pane.end_ms), window, self.thresholds.midas)
        return in_order([f for f in flags if shard_of(f.user, self.shards) == self.shard])

    def _actor_history(self, pane: Pane) -> ActorHistory:
        """A day of the window's actors' activity, taken in slice by slice as the detector expects."""
        actors = set(pane.events.actor_names().tolist())
        history = ActorHistory()
        for slice_start in sorted(s for s in pane.slices if s >= pane.end_ms - DAY_MS):
            events = pane.slices[slice_start]
            if not len(events):
                continue
            involved = np.fromiter(map(actors.__contains__, events.names), dtype=bool, count=len(events.names))
            history.update(events.take(involved[events.actor] | involved[events.target]))
        return history

    def _bursts(self, pane: Pane, window: str) -> list[Flag]:
        """Volumes now against the earlier non-overlapping windows of the context."""
        size, back = self.policy.size_ms, self.thresholds.burst.baseline_windows
        received, sent = self._volumes(pane.slices, pane.start_ms)
        floor = self.thresholds.burst.min_volume  # below it nobody is flagged, whatever the baseline
        users = sorted(u for u in received.keys() | sent.keys() if max(received[u], sent[u]) >= floor)
        if not users:
            return []
        first = min(pane.slices, default=pane.start_ms)
        windows_back = min(back, max(0, (pane.start_ms - first) // size))
        past = [self._volumes(pane.slices, pane.start_ms - k * size) for k in range(windows_back, 0, -1)]
        history = {}
        for user in users:
            volumes = [Volume(r[user], s[user]) for r, s in past]
            if any(v.received or v.sent for v in volumes):  # missing users count 0 all along
                history[user] = volumes
        current = {u: Volume(received[u], sent[u]) for u in users}
        return detect_bursts(current, history, windows_back, window, self.thresholds.burst)

    def _volumes(self, slices: Mapping[int, EventColumns], start_ms: int) -> tuple[Counter[str], Counter[str]]:
        """(received, sent) per user in the window starting at `start_ms`; kept while its slices are
        unchanged, since each window is a baseline for the next `baseline_windows` panes."""
        starts = range(start_ms, start_ms + self.policy.size_ms, self.policy.slice_ms)
        key = (start_ms, tuple(len(slices[s]) if s in slices else 0 for s in starts))
        cached = self._volume_cache.get(key)
        if cached is None:
            received, sent = Counter(), Counter()
            for s in starts:
                if s in slices and len(slices[s]):
                    received.update(_counts(slices[s], slices[s].target))
                    sent.update(_counts(slices[s], slices[s].actor))
            cached = self._volume_cache[key] = (received, sent)
            for old in [k for k in self._volume_cache if k[0] < min(slices, default=start_ms)]:
                del self._volume_cache[old]
        return cached


def _counts(events: EventColumns, codes: np.ndarray) -> dict[str, int]:
    """How often each account appears in `codes` (one column of `events`)."""
    used, counts = np.unique(codes, return_counts=True)
    return dict(zip([events.names[c] for c in used.tolist()], counts.tolist(), strict=True))
