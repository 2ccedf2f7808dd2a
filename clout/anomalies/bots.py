"""Bot-likeness per actor: a transparent weighted score of behavioural features.

One hour of events says little about round-the-clock activity or newness, so the window's events
are read beside `ActorHistory`, a constant-size per-account record the pipeline keeps across
windows (hour-of-day histogram, first seen, running inter-event gap statistics, totals sent and
received). Every feature becomes a sub-score in [0, 1] by a linear ramp between a human value and
a bot value (BotConfig); the bot score is their weighted mean, and the reasons name each feature
whose sub-score reached 0.5, with its number. A feature without enough data scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from clout.anomalies.config import BotConfig
from clout.anomalies.flag import Flag
from clout.model.columns import EventColumns
from clout.model.events import Event
from clout.model.kinds import KIND_INDEX

HOUR_MS = 3_600_000
AMPLIFY_KINDS = np.array([KIND_INDEX["repost"], KIND_INDEX["like"]])
SAME_ACTION_MS = 1000  # gaps shorter than this are one action recorded as several edges (RT + MT)


class ActorHistory:
    """Per-account context that outlives a window, in growable columns (constant size per account).

    Call `update` once with each period's events (the newest slice of the window about to be
    scored), periods in time order. Gaps between an account's consecutive actions are folded into
    a running mean and variance (Chan et al.'s parallel update), so no event is kept.
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self.hours = np.zeros((0, 24), dtype=np.int32)
        self.first_seen = np.zeros(0, dtype=np.int64)
        self.last_action = np.zeros(0, dtype=np.int64)  # -1: never acted
        self.gaps = np.zeros(0, dtype=np.int64)
        self.gap_mean = np.zeros(0, dtype=np.float64)  # seconds
        self.gap_m2 = np.zeros(0, dtype=np.float64)
        self.sent = np.zeros(0, dtype=np.int64)
        self.received = np.zeros(0, dtype=np.int64)
        self.last_seen = np.zeros(0, dtype=np.int64)  # newest event time as actor or target

    def __len__(self) -> int:
        return len(self._index)

    def rows(self, accounts: Sequence[str]) -> np.ndarray:
        """Row of each account, -1 for accounts never seen."""
        get = self._index.get
        return np.fromiter((get(a, -1) for a in accounts), dtype=np.int64, count=len(accounts))

    def _rows_adding(self, accounts: Sequence[str], ts: np.ndarray) -> np.ndarray:
        index = self._index
        start = len(index)
        rows = np.fromiter((index.setdefault(a, len(index)) for a in accounts), dtype=np.int64, count=len(accounts))
        if len(index) > start:
            self._grow(len(index))
            fresh = rows >= start
            np.minimum.at(self.first_seen, rows[fresh], ts[fresh])
        return rows

    def _rows_of_codes(self, events: EventColumns) -> tuple[np.ndarray, np.ndarray]:
        """Rows of each event's actor and target, looked up once per account rather than per event.
        An account new here is first seen at its earliest event as actor, or as target if it never
        acts here (as `_rows_adding` over the actors, then the targets, has it)."""
        index, start = self._index, len(self._index)
        used = np.unique(np.concatenate([events.actor, events.target])).tolist()
        names = events.names
        rows_of = np.full(len(names), -1, dtype=np.int64)
        rows_of[used] = np.fromiter((index.setdefault(names[c], len(index)) for c in used), dtype=np.int64,
                                    count=len(used))
        actor, target = rows_of[events.actor], rows_of[events.target]
        if len(index) > start:
            self._grow(len(index))
            fresh_actor = actor >= start
            np.minimum.at(self.first_seen, actor[fresh_actor], events.ts[fresh_actor])
            acted = np.zeros(len(index) - start, dtype=bool)
            acted[actor[fresh_actor] - start] = True
            fresh_target = target >= start
            fresh_target[fresh_target] = ~acted[target[fresh_target] - start]
            np.minimum.at(self.first_seen, target[fresh_target], events.ts[fresh_target])
        return actor, target

    def _grow(self, size: int) -> None:
        old = len(self.first_seen)
        if size <= old:
            return
        cap = max(size, int(old * 1.5) + 1024)
        extra = cap - old

        def pad(a: np.ndarray, fill: float) -> np.ndarray:
            return np.concatenate([a, np.full((extra, *a.shape[1:]), fill, dtype=a.dtype)])

        self.hours = pad(self.hours, 0)
        self.first_seen = pad(self.first_seen, np.iinfo(np.int64).max)
        self.last_action = pad(self.last_action, -1)
        self.gaps, self.gap_mean, self.gap_m2 = pad(self.gaps, 0), pad(self.gap_mean, 0), pad(self.gap_m2, 0)
        self.sent, self.received = pad(self.sent, 0), pad(self.received, 0)
        self.last_seen = pad(self.last_seen, -1)

    def _columns(self) -> tuple[str, ...]:
        return ("hours", "first_seen", "last_action", "gaps", "gap_mean", "gap_m2", "sent", "received", "last_seen")

    def forget_idle(self, before_ms: int) -> int:
        """Drop accounts not seen (as actor or target) since `before_ms`, so memory follows the active
        population rather than everyone ever seen; returns how many were dropped."""
        names = list(self._index)
        rows = np.fromiter(self._index.values(), dtype=np.int64, count=len(names))
        keep = self.last_seen[rows] >= before_ms
        for column in self._columns():
            setattr(self, column, getattr(self, column)[rows[keep]])
        self._index = {name: i for i, name in enumerate(n for n, k in zip(names, keep.tolist(), strict=True) if k)}
        return int((~keep).sum())

    def update(self, events: Sequence[Event] | EventColumns) -> None:
        """Take in one period's events (any order within it; periods in time order)."""
        if not len(events):
            return
        if isinstance(events, EventColumns):
            ts = events.ts
            actor, target = self._rows_of_codes(events)
        else:
            ts_list, actors, targets, _, _ = zip(*events, strict=True)
            ts = np.asarray(ts_list, dtype=np.int64)
            actor = self._rows_adding(actors, ts)
            target = self._rows_adding(targets, ts)
        np.add.at(self.hours, (actor, (ts // HOUR_MS) % 24), 1)
        np.add.at(self.sent, actor, 1)
        np.add.at(self.received, target, 1)
        np.maximum.at(self.last_seen, np.concatenate([actor, target]), np.concatenate([ts, ts]))
        self._fold_gaps(actor, ts)

    def _fold_gaps(self, actor: np.ndarray, ts: np.ndarray) -> None:
        order = np.lexsort((ts, actor))
        a, t = actor[order], ts[order]
        first = np.ones(len(a), dtype=bool)
        first[1:] = a[1:] != a[:-1]
        previous = np.empty_like(t)
        previous[1:] = t[:-1]
        previous[first] = self.last_action[a[first]]
        gap = t - previous
        valid = (previous >= 0) & (gap >= SAME_ACTION_MS)
        seconds = gap[valid] / 1000.0
        who = a[valid]
        if len(who):
            # Sums per account over the accounts that acted (not the whole table: a slice touches few),
            # adding in the same order as before, so the figures are the same to the last bit.
            touched, slot, counts = np.unique(who, return_inverse=True, return_counts=True)
            nb = counts.astype(np.float64)
            mean_b = np.bincount(slot, weights=seconds) / nb
            m2_b = np.bincount(slot, weights=(seconds - mean_b[slot]) ** 2)
            na = self.gaps[touched].astype(np.float64)
            delta = mean_b - self.gap_mean[touched]
            total = na + nb
            self.gap_mean[touched] += delta * nb / total
            self.gap_m2[touched] += m2_b + delta**2 * na * nb / total
            self.gaps[touched] += counts
        np.maximum.at(self.last_action, a, t)

    def memory_bytes(self) -> int:
        """Columns (with their spare capacity) plus ~100 B per account for the index entry and key."""
        return sum(getattr(self, c).nbytes for c in self._columns()) + 100 * len(self._index)


class BotScore(NamedTuple):
    actor: str
    score: float
    events: int
    features: dict[str, float]  # the numbers (evidence)
    parts: dict[str, float]  # feature name -> sub-score in [0, 1]


def _ramp(x: np.ndarray, zero_at: float, one_at: float) -> np.ndarray:
    """0 at the human value, 1 at the bot value, linear between; works in either direction."""
    return np.clip((x - zero_at) / (one_at - zero_at), 0.0, 1.0)


def _encode(values: Sequence[str], index: dict[str, int]) -> np.ndarray:
    return np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))


class WindowColumns(NamedTuple):
    """A window's events as columns; accounts (actors and targets) are codes into `names`."""

    names: list[str]
    actor: np.ndarray
    target: np.ndarray
    ts: np.ndarray
    kind: np.ndarray


def window_columns(events: Sequence[Event] | EventColumns) -> WindowColumns:
    if isinstance(events, EventColumns):
        return WindowColumns(list(events.names), events.actor.astype(np.int64), events.target.astype(np.int64),
                             events.ts, events.kind.astype(np.int64))
    ts, actors, targets, kinds, _ = zip(*events, strict=True)
    index: dict[str, int] = {}
    actor = _encode(actors, index)
    target = _encode(targets, index)
    return WindowColumns(list(index), actor, target, np.asarray(ts, dtype=np.int64), np.asarray(kinds))


def _window_gap_cv(actor: np.ndarray, ts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per account: CV of gaps between its actions in the window, and the number of gaps."""
    order = np.lexsort((ts, actor))
    a, t = actor[order], ts[order]
    same = a[1:] == a[:-1]
    gap = (t[1:] - t[:-1]) / 1000.0
    keep = same & (gap * 1000 >= SAME_ACTION_MS)
    who, g = a[1:][keep], gap[keep]
    n = np.bincount(who, minlength=size).astype(np.float64)
    s = np.bincount(who, weights=g, minlength=size)
    mean = np.divide(s, n, out=np.zeros(size), where=n > 0)
    var = np.bincount(who, weights=(g - mean[who]) ** 2, minlength=size)
    var = np.divide(var, n - 1, out=np.zeros(size), where=n > 1)
    cv = np.divide(np.sqrt(var), mean, out=np.full(size, np.nan), where=mean > 0)
    return cv, n


def _features(cols: WindowColumns, history: ActorHistory | None, now_ms: int, config: BotConfig
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Accounts scored (codes) and each raw feature per scored account (NaN: not enough data).

    With a history, an actor is scored once it has `min_events` actions in all (a slow but steady
    bot has few per window); without one, it needs them in the window.
    """
    size = len(cols.names)
    events = np.bincount(cols.actor, minlength=size)
    scored = np.flatnonzero(events >= (1 if history is not None else config.min_events))
    rows = history.rows([cols.names[c] for c in scored]) if history is not None else None
    if rows is not None:
        known = rows >= 0
        keep = np.zeros(len(scored), dtype=bool)
        keep[known] = history.sent[rows[known]] >= config.min_events  # type: ignore[union-attr]
        scored, rows = scored[keep], rows[keep]
    pairs = np.unique(cols.actor * size + cols.target)
    distinct = np.bincount(pairs // size, minlength=size)
    amplify = np.bincount(cols.actor, weights=np.isin(cols.kind, AMPLIFY_KINDS), minlength=size)
    cv, ngaps = _window_gap_cv(cols.actor, cols.ts, size)
    received_w = np.bincount(cols.target, minlength=size)
    f = {
        "events": events[scored].astype(np.float64),
        "rate_per_h": events[scored] / config.window_hours,
        "gap_cv": np.where(ngaps[scored] >= config.min_gaps, cv[scored], np.nan),
        "gaps": ngaps[scored],
        "distinct_targets": distinct[scored].astype(np.float64),
        "target_diversity": distinct[scored] / events[scored],
        "amplify_share": amplify[scored] / events[scored],
        "received": received_w[scored].astype(np.float64),
        "sent": events[scored].astype(np.float64),
    }
    f["reciprocity"] = f["received"] / f["sent"]
    nan = np.full(len(scored), np.nan)
    f["hour_entropy"], f["hour_events"], f["age_h"] = nan, nan.copy(), nan.copy()
    if history is not None and rows is not None:
        _history_features(f, rows, history, now_ms, config)
    return scored, f


def _history_features(f: dict[str, np.ndarray], rows: np.ndarray, history: ActorHistory, now_ms: int,
                      config: BotConfig) -> None:
    """Replace window-only figures by the longer view: rate sustained since first seen, gaps, hours,
    reciprocity over the whole history."""
    hours = history.hours[rows].astype(np.float64)
    total = hours.sum(axis=1)
    p = hours / np.maximum(total, 1)[:, None]
    # Miller-Madow: the plug-in entropy of N samples is biased low by about (occupied bins - 1) / 2N
    occupied = (hours > 0).sum(axis=1)
    entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(axis=1) + (occupied - 1) / (2 * np.maximum(total, 1))
    entropy = np.minimum(entropy / math.log(24), 1.0)
    age_h = np.maximum((now_ms - history.first_seen[rows]) / HOUR_MS, 0.0)
    enough = (total >= config.min_hour_events) & (age_h >= config.min_history_hours)
    f["hour_entropy"] = np.where(enough, entropy, np.nan)
    f["hour_events"] = total
    f["age_h"] = age_h
    sent = history.sent[rows].astype(np.float64)
    f["rate_per_h"] = sent / np.maximum(age_h, config.window_hours)
    gaps = history.gaps[rows]
    std = np.sqrt(np.divide(history.gap_m2[rows], gaps - 1, out=np.zeros(len(rows)), where=gaps > 1))
    mean = history.gap_mean[rows]
    cv = np.divide(std, mean, out=np.full(len(rows), np.nan), where=mean > 0)
    f["gap_cv"] = np.where(gaps >= config.min_gaps, cv, np.nan)
    f["gaps"] = gaps.astype(np.float64)
    f["received"] = history.received[rows].astype(np.float64)
    f["sent"] = sent
    f["reciprocity"] = f["received"] / np.maximum(sent, 1)


def _parts(f: dict[str, np.ndarray], config: BotConfig) -> dict[str, np.ndarray]:
    def ramp(x: np.ndarray, zero_at: float, one_at: float) -> np.ndarray:
        return np.where(np.isnan(x), 0.0, _ramp(np.nan_to_num(x), zero_at, one_at))

    return {
        "rate": ramp(f["rate_per_h"], config.rate_human, config.rate_bot),
        "regularity": ramp(f["gap_cv"], config.cv_human, config.cv_bot) * np.minimum(f["gaps"] / config.full_gaps, 1),
        "round_the_clock": ramp(f["hour_entropy"], config.entropy_human, config.entropy_bot),
        "diversity": ramp(f["target_diversity"], config.diversity_human, config.diversity_bot),
        "amplify_only": ramp(f["amplify_share"], config.amplify_human, config.amplify_bot),
        "no_reciprocity": ramp(f["reciprocity"], config.reciprocity_human, config.reciprocity_bot),
        "new_account": ramp(f["age_h"], config.new_human_hours, config.new_bot_hours),
    }


def bot_scores(
    events: Sequence[Event],
    history: ActorHistory | None = None,
    now_ms: int | None = None,
    config: BotConfig | None = None,
) -> list[BotScore]:
    """Bot score of every actor of `events` (one window) with at least `min_events` actions so far.

    `history` (optional) must already include these events; `now_ms` is the window's end (default:
    the newest event). Without history, rate, regularity and reciprocity come from the window alone
    and round-the-clock activity and newness are not scored.
    """
    config = config or BotConfig()
    if not events:
        return []
    cols = window_columns(events)
    now = int(cols.ts.max()) if now_ms is None else now_ms
    scored, f = _features(cols, history, now, config)
    parts = _parts(f, config)
    total = sum(config.weights.get(name, 0.0) * sub for name, sub in parts.items())
    out = []
    for i, code in enumerate(scored.tolist()):
        features = {k: float(v[i]) for k, v in f.items() if not np.isnan(v[i])}
        out.append(BotScore(cols.names[code], float(total[i]), int(f["events"][i]), features,
                            {k: float(v[i]) for k, v in parts.items()}))
    return out


def detect_bots(
    events: Sequence[Event],
    window: str,
    history: ActorHistory | None = None,
    now_ms: int | None = None,
    config: BotConfig | None = None,
) -> list[Flag]:
    """Flags for actors whose bot score reaches the threshold (see bot_scores)."""
    config = config or BotConfig()
    flags = []
    for s in bot_scores(events, history, now_ms, config):
        if s.score >= config.threshold:
            reasons = tuple(_REASONS[name](s.features) for name, sub in s.parts.items() if sub >= 0.5)
            evidence = {**{k: round(v, 4) for k, v in s.features.items()},
                        **{f"part_{k}": round(v, 4) for k, v in s.parts.items()}}
            flags.append(Flag(s.actor, window, "bot", min(1.0, s.score), reasons, evidence))
    return flags


def _text(template: str) -> Callable[[Mapping[str, float]], str]:
    return lambda f: template.format_map(_Defaulting(f))


class _Defaulting(dict):
    def __missing__(self, key: str) -> float:
        return float("nan")


_REASONS: Mapping[str, Callable[[Mapping[str, float]], str]] = {
    "rate": _text("high rate: {rate_per_h:.1f} actions per hour sustained"),
    "regularity": _text("clockwork timing: inter-event gaps vary by {gap_cv:.2g} of their mean over {gaps:.0f} "
                        "gaps (people: about 1 or more)"),
    "round_the_clock": _text("active round the clock: hour-of-day entropy {hour_entropy:.2f} of the maximum over "
                             "{hour_events:.0f} actions"),
    "diversity": _text("few targets: {distinct_targets:.0f} distinct targets in {events:.0f} actions"),
    "amplify_only": _text("amplifies only: {amplify_share:.0%} of actions are reposts or likes"),
    "no_reciprocity": _text("nobody engages back: {received:.0f} interactions received for {sent:.0f} sent"),
    "new_account": _text("new account: first seen {age_h:.1f} h ago"),
}
